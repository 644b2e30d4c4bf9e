#!/bin/sh
# t0312: t0311 with int4 partial gradients ([wire] gradients = int4,
# swarm.conf(5)): each partial in blockwise int4 (7.1 x fewer bytes than
# float32, half of int8's), with the same error feedback; the replicas stay
# bit-identical and the losses near swarmsim's with exact gradients.
GRAD_CODEC=int4
GRAD_TOL=0.05
. "${TEST_SRCDIR:-$(dirname "$0")}/t0311-grad-int8.sh"
