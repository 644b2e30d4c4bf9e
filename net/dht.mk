# net/: the Kademlia DHT (sans-I/O core and its glue).
