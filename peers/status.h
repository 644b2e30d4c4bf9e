/*
 * status.h - stage records (what a node announces, what the directory
 * returns) and the run summary that swarmctl status prints.
 *
 * A record is a msgpack map (swarm-protocol(7), PEER MESSAGES):
 *   ep str, stage uint, state uint (0 syncing, 1 training, 2 leaving, 3 done),
 *   step uint (steps completed), tps float (tokens/s through the node),
 *   cap float (tokens/s of compute time), loss float (last stage; -1: none),
 *   norm float (pre-clip gradient norm), hash str (16 hex digits of the
 *   parameters' BLAKE2b-256), rec uint (recoveries)
 * and in DIR replies also pk bin32, age uint (ms since heard), step_age uint
 * (ms since its step last changed).
 */
#ifndef SW_STATUS_H
#define SW_STATUS_H

#include "sw.h"

#include <msgpack.h>
#include <stdio.h>

#include "proto.h"

struct sw_peer_rec {
    uint8_t pk[32];
    char ep[SW_PROTO_EP_MAX];
    int stage, state;
    uint64_t step, recoveries;
    double tps, cap, loss, norm;
    char hash[17];
    uint64_t heard_ms;  /* local clock (DIR: now - age) */
    uint64_t step_ms;   /* when step last changed */
};

void sw_status_rec_pack(msgpack_packer *pk, const struct sw_peer_rec *r, bool dir_form,
                        uint64_t now);
int sw_status_rec_unpack(const msgpack_object *o, struct sw_peer_rec *r, bool dir_form, int S,
                         uint64_t now) SW_WARN_UNUSED;
const char *sw_status_state_name(int state);

struct sw_stage_summary {
    int nodes;
    uint64_t step;          /* highest step among the stage's nodes */
    double loss;            /* last stage; < 0 none */
    double tps, cap;        /* sums over the nodes */
    double last_heard_s;    /* freshest record's age; < 0 no node */
    uint64_t recoveries;
    bool bottleneck;        /* lowest capacity among non-empty stages */
    const char *state;      /* "ok", "empty", "stalled", "syncing", "done" */
};

enum sw_health { SW_HEALTH_OK = 0, SW_HEALTH_DEGRADED = 1, SW_HEALTH_UNREACHABLE = 2 };

#define SW_STATUS_STALL_MS 30000

/* Fill sum[S] from the records; returns the health (finished runs are OK). */
int sw_status_summarize(const struct sw_peer_rec *recs, int n, int S, uint64_t run_step,
                        int steps, uint64_t now, struct sw_stage_summary *sum);

#endif
