#!/bin/sh
# t0305: a microbatch whose activations are larger than one message
# (issue 13, item 1).  66560 tokens a microbatch (1040 sequences of 64) of
# a narrow model (d_model 64, 2 blocks, 2 stages): each FWD carries 17.3 MB
# of float32 activations and targets and each BWD 17.0 MB of gradients,
# above SW_WIRE_MAX_PAYLOAD (16 MiB), so both go in pieces of 8 MiB
# (swarm-protocol(7), FWD and BWD).  On the code before, the step stalled
# for good ("message too large").  The losses must equal swarmsim's for the
# same model and batch to 1e-5 relative: the pieces were put together right.
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..3"
STEPS=3
M_SEQ_LEN=64
M_BATCH=1040
M_MICRO=1
M_MODEL="d_model = 64
ffn_hidden = 192
n_heads = 4
n_kv_heads = 4
n_layers = 2"
write_manifest "$TMP/run.conf" $STEPS 2
sign_manifest "$TMP/run.conf"
start_boot "$TMP/run.conf"
start_swarm n 0 1
wait_all 300 $SWARM_NODES
ok $? "2 stages, microbatches of 66560 tokens (FWD and BWD of 17 MB): $STEPS steps, exit 0"

cat >"$TMP/config.json" <<EOT
{"hidden_size": 64, "intermediate_size": 192, "num_attention_heads": 4,
 "num_key_value_heads": 4, "num_hidden_layers": 2, "vocab_size": 256,
 "max_position_embeddings": 64, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
 "tie_word_embeddings": false}
EOT
"$SWARMSIM" train --config "$TMP/config.json" --stages 2 --steps "$STEPS" --seed 1337 \
    --batch "$M_BATCH" --seq-len "$M_SEQ_LEN" --micro "$M_MICRO" --lr 3e-3 --warmup 5 \
    --data "$DATA" --threads 1 --sample-tokens 0 --eval-every 0 --out "$TMP/sim" \
    --log-level warn >"$TMP/sim.log" 2>&1
ok $? "swarmsim train of the same model and batch ran"
match_sim "$TMP/sim" $STEPS "$TMP/n1.log"
ok $? "the swarm's losses equal swarmsim's to 1e-5 relative"
