#!/bin/sh
# t0303: CheckFree+ with an embedding and an LM head over 16 MiB (issue 13,
# item 1).  A 4-stage run signed with recovery.mode = checkfree+ on a wide
# model (d_model 1024, a vocabulary of 8192: embedding and head of 32 MiB
# each, stages of 81 MiB at the boundaries): stage 0 pushes its embedding
# to stage 1 and stage 3 its final norm and head to stage 2 after every
# update, in REPLICA pieces (the manifest used to be refused: "the LM head
# replica exceeds the 16 MiB message payload").  kill -9 the node of stage
# 0: a newcomer with --stage auto rebuilds it from stage 1's blocks and the
# 32 MiB embedding replica, and the loss 20 steps later is finite and below
# its value at the failure.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..3"
M_SEQ_LEN=16
M_MODEL="d_model = 1024
vocab_size = 8192
ffn_hidden = 2816
n_heads = 8
n_kv_heads = 8
n_layers = 4"
write_manifest "$TMP/run.conf" 100000 4 "[recovery]
mode = checkfree+"
sign_manifest "$TMP/run.conf"
ok $? "a checkfree+ manifest with a 32 MiB embedding and head is signed"
start_boot "$TMP/run.conf"
# --dead-ms 10000: see t0302 (a node busy with big tensors misses record
# refreshes on 2 loaded cores; false deaths are not what this test is about)
start_swarm n 0 1 2 3 -- --dead-ms 10000

wait_steps 300 "$TMP/n3.log" 8
kill -9 "$P0"
fail=$(last_step "$TMP/n3.log")
echo "# node of stage 0 killed after step $fail"
wait_for 40 has_event "$TMP/n1.log" declared_dead stage=0
start_node "$TMP/new0.log" auto --dead-ms 10000
wait_for 120 has_event "$TMP/new0.log" recovery stage=0 method=checkfree+; rc=$?
msgs "$TMP/new0.log" | grep "chose stage\|recovery:" | sed 's/^/# /' | cut -c1-240
[ $rc -eq 0 ] && has_event "$TMP/new0.log" recovery stage=0 method=checkfree+ replica=embedding
ok $? "a newcomer rebuilt stage 0 from stage 1's blocks and its 32 MiB embedding replica"
wait_steps 300 "$TMP/n3.log" $((fail + 20))
loss_fell "$TMP/n3.log" "$TMP/n3.log" "$fail"
ok $? "20 steps after the rebuild the loss is finite and below its value at the failure"
