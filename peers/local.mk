# peers/: swarmd, swarmctl and what a node does.
