/*
 * status.c - stage records and the run summary (see status.h).
 */
#include "sw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "node.h"
#include "status.h"

static const char *const rec_keys[] = {"pk", "ep", "stage", "state", "step", "tps", "cap", "loss",
                                       "norm", "hash", "rec", "age", "step_age", NULL};

const char *
sw_status_state_name(int state)
{
    static const char *const names[] = {"syncing", "training", "leaving", "done"};
    return state >= 0 && state <= SW_NODE_DONE ? names[state] : "?";
}

void
sw_status_rec_pack(msgpack_packer *pk, const struct sw_peer_rec *r, bool dir_form, uint64_t now)
{
    msgpack_pack_map(pk, dir_form ? 13 : 10);
    if (dir_form) {
        sw_proto_pack_key(pk, "pk");
        sw_proto_pack_bin(pk, r->pk, 32);
        sw_proto_pack_key(pk, "age");
        msgpack_pack_uint64(pk, now - r->heard_ms);
        sw_proto_pack_key(pk, "step_age");
        msgpack_pack_uint64(pk, now - r->step_ms);
    }
    sw_proto_pack_key(pk, "ep");
    sw_proto_pack_str(pk, r->ep);
    sw_proto_pack_key(pk, "stage");
    msgpack_pack_uint32(pk, (uint32_t)r->stage);
    sw_proto_pack_key(pk, "state");
    msgpack_pack_uint32(pk, (uint32_t)r->state);
    sw_proto_pack_key(pk, "step");
    msgpack_pack_uint64(pk, r->step);
    sw_proto_pack_key(pk, "tps");
    msgpack_pack_double(pk, r->tps);
    sw_proto_pack_key(pk, "cap");
    msgpack_pack_double(pk, r->cap);
    sw_proto_pack_key(pk, "loss");
    msgpack_pack_double(pk, r->loss);
    sw_proto_pack_key(pk, "norm");
    msgpack_pack_double(pk, r->norm);
    sw_proto_pack_key(pk, "hash");
    sw_proto_pack_str(pk, r->hash[0] ? r->hash : "-");
    sw_proto_pack_key(pk, "rec");
    msgpack_pack_uint64(pk, r->recoveries);
}

int
sw_status_rec_unpack(const msgpack_object *o, struct sw_peer_rec *r, bool dir_form, int S,
                     uint64_t now)
{
    uint64_t u, stage, state, age = 0, sage = 0;
    size_t len = 32;
    const uint8_t *p;
    char hash[40];

    memset(r, 0, sizeof(*r));
    if (!sw_proto_only(o, rec_keys))
        return -SW_EMSG;
    if (dir_form) {
        if (sw_proto_get_bin(o, "pk", &p, &len) < 0 || sw_proto_get_u64(o, "age", &age) < 0 ||
            sw_proto_get_u64(o, "step_age", &sage) < 0)
            return -SW_EMSG;
        memcpy(r->pk, p, 32);
    } else if (sw_proto_get(o, "pk") || sw_proto_get(o, "age") || sw_proto_get(o, "step_age")) {
        return -SW_EMSG;
    }
    if (sw_proto_get_str(o, "ep", r->ep, sizeof(r->ep)) < 0 ||
        sw_proto_get_u64(o, "stage", &stage) < 0 || stage >= (uint64_t)S ||
        sw_proto_get_u64(o, "state", &state) < 0 || state > SW_NODE_DONE ||
        sw_proto_get_u64(o, "step", &r->step) < 0 || sw_proto_get_f64(o, "tps", &r->tps) < 0 ||
        sw_proto_get_f64(o, "cap", &r->cap) < 0 || sw_proto_get_f64(o, "loss", &r->loss) < 0 ||
        sw_proto_get_f64(o, "norm", &r->norm) < 0 ||
        sw_proto_get_str(o, "hash", hash, sizeof(hash)) < 0 ||
        sw_proto_get_u64(o, "rec", &u) < 0)
        return -SW_EMSG;
    if (!isfinite(r->tps) || !isfinite(r->cap) || !isfinite(r->loss) || !isfinite(r->norm))
        return -SW_EMSG;
    snprintf(r->hash, sizeof(r->hash), "%.16s", hash);
    r->stage = (int)stage;
    r->state = (int)state;
    r->recoveries = u;
    r->heard_ms = now - SW_MIN(age, now);
    r->step_ms = now - SW_MIN(sage, now);
    return 0;
}

int
sw_status_summarize(const struct sw_peer_rec *recs, int n, int S, uint64_t run_step, int steps,
                    uint64_t now, struct sw_stage_summary *sum)
{
    bool finished = run_step >= (uint64_t)steps;
    int health = SW_HEALTH_OK, best = -1;

    for (int s = 0; s < S; s++) {
        struct sw_stage_summary *x = &sum[s];
        uint64_t freshest_step_age = UINT64_MAX;
        bool any_training = false;

        memset(x, 0, sizeof(*x));
        x->loss = -1;
        x->last_heard_s = -1;
        for (int i = 0; i < n; i++) {
            const struct sw_peer_rec *r = &recs[i];
            double age = (double)(now - r->heard_ms) / 1000.0;
            if (r->stage != s || r->state == SW_NODE_LEAVING)
                continue;
            x->nodes++;
            if (r->step > x->step)
                x->step = r->step;
            if (r->loss >= 0 && s == S - 1)
                x->loss = r->loss;
            x->tps += r->tps;
            x->cap += r->cap;
            x->recoveries += r->recoveries;
            if (x->last_heard_s < 0 || age < x->last_heard_s)
                x->last_heard_s = age;
            if (now - r->step_ms < freshest_step_age)
                freshest_step_age = now - r->step_ms;
            any_training |= r->state == SW_NODE_TRAINING || r->state == SW_NODE_DONE;
        }
        if (x->nodes == 0) {
            x->state = finished ? "done" : "empty";
        } else if (finished || x->step >= (uint64_t)steps) {
            x->state = "done";
        } else if (!any_training) {
            x->state = "syncing";
        } else if (freshest_step_age > SW_STATUS_STALL_MS) {
            x->state = "stalled";
        } else {
            x->state = "ok";
        }
        if (!finished && (x->nodes == 0 || !strcmp(x->state, "stalled")))
            health = SW_HEALTH_DEGRADED;
        if (x->nodes > 0 && (best < 0 || x->cap < sum[best].cap))
            best = s;
    }
    if (best >= 0 && !finished)
        sum[best].bottleneck = true;
    return health;
}
