#!/bin/sh
# t0304: the activation codecs of the signed manifest ([wire] activations,
# swarm.conf(5); issue 13, item 3).  For bf16, int8 and int4, 4 stages in 4
# processes on loopback train 24 steps with their FWD and BWD payloads in
# that codec, and follow swarmsim train --act-codec with the same codec to
# <= 1e-5 relative per step (swarmsim encodes and decodes at its stage
# boundaries with the same code); int8 once more under checkfree+, whose
# swapped routes send a microbatch through 6 hops.  Each codec's losses
# differ from fp32's (the codec is really applied, on both sides).
. "${TEST_SRCDIR:-$(dirname "$0")}/peers-lib.sh"
echo "1..8"
STEPS=24

# sim DIR CODEC [RECOVERY]: swarmsim train on the tests' manifest
sim() {
    "$SWARMSIM" train --preset tiny --stages 4 --steps $STEPS --seed 1337 --batch 4 --seq-len 32 \
        --micro 4 --lr 3e-3 --warmup 5 --data "$DATA" --threads 1 --sample-tokens 0 \
        --eval-every 0 --out "$1" --log-level warn --act-codec "$2" --recovery "${3:-none}" \
        >"$1.log" 2>&1
}
# differs SIM_A SIM_B: some step's loss differs by more than 1e-6 relative
differs() {
    paste -d, "$1/train.csv" "$2/train.csv" | tail -n +2 |
        awk -F, -v n="$(head -n 1 "$1/train.csv" | awk -F, '{ print NF }')" '{
            a = $2; b = $(n + 2); d = (a - b) / b; if (d < 0) d = -d; if (d > m) m = d }
            END { printf "# largest relative difference to fp32: %.3g\n", m; exit !(m > 1e-6) }'
}
# run NAME CODEC [RECOVERY]: the swarm, then swarmsim, then the comparison
run() {
    local name=$1 codec=$2 rec=${3:-} extra=""
    [ -n "$rec" ] && extra="[recovery]
mode = $rec"
    write_manifest "$TMP/$name.conf" $STEPS 4 "[wire]
activations = $codec
$extra"
    sign_manifest "$TMP/$name.conf"
    start_boot "$TMP/$name.conf"
    start_swarm "$name-" 0 1 2 3
    wait_all 90 $SWARM_NODES
    ok $? "$name: 4 nodes trained $STEPS steps with $codec activations and exited 0"
    kill "$BOOT_PID" 2>/dev/null
    sim "$TMP/sim-$name" "$codec" "${rec:-none}" && sim "$TMP/fp32-$name" fp32 "${rec:-none}" &&
        match_sim "$TMP/sim-$name" $STEPS "$TMP/$name-3.log" &&
        differs "$TMP/sim-$name" "$TMP/fp32-$name"
    ok $? "$name: the swarm's losses equal swarmsim --act-codec $codec's, which are not fp32's"
}

run bf16 bf16
run int8 int8
run int4 int4
run int8plus int8 checkfree+
