/*
 * status.c - stage records and the run summary (see status.h).
 */
#include "sw.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "status.h"

static const char *const rec_keys[] = {"ver", "ep", "stage", "state", "step", "step_age", "ttl",
                                       "tps", "cap", "loss", "norm", "hash", "rec",
                                       "rec_method", "rec_from", "rec_bytes", "rec_ms", "mv", "nd",
                                       "cert", "rch", "rly", "blk", NULL};

const char *
sw_status_state_name(int state)
{
    static const char *const names[] = {"syncing", "training", "leaving", "done", "joining"};
    return state >= 0 && state <= SW_REC_JOINING ? names[state] : "?";
}

/* Copies src into dst[cap] as sw_proto_str() accepts it: cut, and '_' for what it refuses. */
static void
copy_clean(char *dst, size_t cap, const char *src)
{
    size_t i;

    for (i = 0; src && src[i] && i + 1 < cap; i++)
        dst[i] = src[i] > ' ' && src[i] <= '~' ? src[i] : '_';
    dst[i] = '\0';
}

void
sw_status_rec_set_recovery(struct sw_peer_rec *r, const char *method, const char *from,
                           uint64_t bytes, double seconds)
{
    if (!method || !method[0]) {
        r->rec_method[0] = r->rec_from[0] = '\0';
        r->rec_bytes = r->rec_ms = 0;
        return;
    }
    copy_clean(r->rec_method, sizeof(r->rec_method), method);
    copy_clean(r->rec_from, sizeof(r->rec_from), from && from[0] ? from : "-");
    r->rec_bytes = bytes;
    r->rec_ms = isfinite(seconds) && seconds > 0 ? (uint64_t)(seconds * 1000 + 0.5) : 0;
}

void
sw_status_stage_key(uint8_t key[32], const uint8_t run[32], int stage)
{
    crypto_generichash_state h;
    uint8_t le[4] = {(uint8_t)stage, (uint8_t)(stage >> 8), (uint8_t)(stage >> 16),
                     (uint8_t)(stage >> 24)};

    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, run, 32);
    crypto_generichash_update(&h, (const uint8_t *)"stage", 5);
    crypto_generichash_update(&h, le, 4);
    crypto_generichash_final(&h, key, 32);
}

void
sw_status_rec_pack(msgpack_packer *pk, const struct sw_peer_rec *r, uint32_t ttl_s,
                   uint64_t step_age_ms)
{
    bool rec = r->rec_method[0] != '\0';

    msgpack_pack_map(pk, (rec ? 17 : 13) + (r->moving > 0) + (r->need > 0) + (r->cert_len > 0) +
                             (r->reach > 0) + r->relay + (r->blk_ms > 0));
    sw_proto_pack_key(pk, "ver");
    msgpack_pack_uint32(pk, SW_STATUS_REC_VERSION);
    sw_proto_pack_key(pk, "ep");
    sw_proto_pack_str(pk, r->ep);
    sw_proto_pack_key(pk, "stage");
    msgpack_pack_uint32(pk, (uint32_t)r->stage);
    sw_proto_pack_key(pk, "state");
    msgpack_pack_uint32(pk, (uint32_t)r->state);
    sw_proto_pack_key(pk, "step");
    msgpack_pack_uint64(pk, r->step);
    sw_proto_pack_key(pk, "step_age");
    msgpack_pack_uint64(pk, step_age_ms);
    sw_proto_pack_key(pk, "ttl");
    msgpack_pack_uint32(pk, ttl_s);
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
    if (rec) {
        sw_proto_pack_key(pk, "rec_method");
        sw_proto_pack_str(pk, r->rec_method);
        sw_proto_pack_key(pk, "rec_from");
        sw_proto_pack_str(pk, r->rec_from);
        sw_proto_pack_key(pk, "rec_bytes");
        msgpack_pack_uint64(pk, r->rec_bytes);
        sw_proto_pack_key(pk, "rec_ms");
        msgpack_pack_uint64(pk, r->rec_ms);
    }
    if (r->moving > 0) {
        sw_proto_pack_key(pk, "mv");
        msgpack_pack_uint32(pk, (uint32_t)(r->moving - 1));
    }
    if (r->need > 0) {
        sw_proto_pack_key(pk, "nd");
        msgpack_pack_uint32(pk, (uint32_t)(r->need - 1));
    }
    if (r->cert_len > 0) {
        sw_proto_pack_key(pk, "cert");
        sw_proto_pack_bin(pk, r->cert, r->cert_len);
    }
    if (r->reach > 0) {
        sw_proto_pack_key(pk, "rch");
        msgpack_pack_uint32(pk, (uint32_t)(r->reach - 1));
    }
    if (r->relay) {
        sw_proto_pack_key(pk, "rly");
        msgpack_pack_uint32(pk, 1);
    }
    if (r->blk_ms > 0) {
        sw_proto_pack_key(pk, "blk");
        msgpack_pack_uint32(pk, r->blk_ms);
    }
}

int
sw_status_rec_unpack(const msgpack_object *o, struct sw_peer_rec *r, int S, uint32_t ttl_left_s,
                     uint64_t now)
{
    uint64_t u, ver, stage, state, sage, ttl, age;
    char hash[40];

    if (!sw_proto_only(o, rec_keys))
        return -SW_EMSG;
    if (sw_proto_get_u64(o, "ver", &ver) < 0 || ver != SW_STATUS_REC_VERSION ||
        sw_proto_get_str(o, "ep", r->ep, sizeof(r->ep)) < 0 ||
        sw_proto_get_u64(o, "stage", &stage) < 0 || stage >= (uint64_t)S ||
        sw_proto_get_u64(o, "state", &state) < 0 || state > SW_REC_JOINING ||
        sw_proto_get_u64(o, "step", &r->step) < 0 ||
        sw_proto_get_u64(o, "step_age", &sage) < 0 || sw_proto_get_u64(o, "ttl", &ttl) < 0 ||
        sw_proto_get_f64(o, "tps", &r->tps) < 0 ||
        sw_proto_get_f64(o, "cap", &r->cap) < 0 || sw_proto_get_f64(o, "loss", &r->loss) < 0 ||
        sw_proto_get_f64(o, "norm", &r->norm) < 0 ||
        sw_proto_get_str(o, "hash", hash, sizeof(hash)) < 0 ||
        sw_proto_get_u64(o, "rec", &u) < 0)
        return -SW_EMSG;
    if (!isfinite(r->tps) || !isfinite(r->cap) || !isfinite(r->loss) || !isfinite(r->norm))
        return -SW_EMSG;
    /* the last recovery: optional (older records), but all four keys or none */
    r->rec_method[0] = r->rec_from[0] = '\0';
    r->rec_bytes = r->rec_ms = 0;
    if (sw_proto_get(o, "rec_method") || sw_proto_get(o, "rec_from") ||
        sw_proto_get(o, "rec_bytes") || sw_proto_get(o, "rec_ms")) {
        if (sw_proto_get_str(o, "rec_method", r->rec_method, sizeof(r->rec_method)) < 0 ||
            !r->rec_method[0] ||
            sw_proto_get_str(o, "rec_from", r->rec_from, sizeof(r->rec_from)) < 0 ||
            sw_proto_get_u64(o, "rec_bytes", &r->rec_bytes) < 0 ||
            sw_proto_get_u64(o, "rec_ms", &r->rec_ms) < 0)
            return -SW_EMSG;
    }
    r->moving = 0;
    if (sw_proto_get(o, "mv")) {
        if (sw_proto_get_u64(o, "mv", &u) < 0 || u >= (uint64_t)S)
            return -SW_EMSG;
        r->moving = (int)u + 1;
    }
    r->need = 0;
    if (sw_proto_get(o, "nd")) {
        if (sw_proto_get_u64(o, "nd", &u) < 0 || u >= (uint64_t)S)
            return -SW_EMSG;
        r->need = (int)u + 1;
    }
    r->reach = 0;
    if (sw_proto_get(o, "rch")) {
        if (sw_proto_get_u64(o, "rch", &u) < 0 || u > 2)
            return -SW_EMSG;
        r->reach = (int)u + 1;
    }
    r->blk_ms = 0;
    if (sw_proto_get(o, "blk")) {
        if (sw_proto_get_u64(o, "blk", &u) < 0 || u > SW_STATUS_BLK_MAX_MS)
            return -SW_EMSG;
        r->blk_ms = (uint32_t)u;
    }
    r->relay = false;
    if (sw_proto_get(o, "rly")) {
        if (sw_proto_get_u64(o, "rly", &u) < 0 || u != 1)
            return -SW_EMSG;
        r->relay = true;
    }
    r->cert = NULL;
    r->cert_len = 0;
    if (sw_proto_get(o, "cert")) {
        size_t n = 0;
        if (sw_proto_get_bin(o, "cert", &r->cert, &n) < 0 || n == 0 || n > SW_STATUS_CERT_MAX)
            return -SW_EMSG;
        r->cert_len = n;
    }
    if (sw_proto_get_u64(o, "rec", &u) < 0)
        return -SW_EMSG;
    snprintf(r->hash, sizeof(r->hash), "%.16s", hash);
    r->stage = (int)stage;
    r->state = (int)state;
    r->recoveries = u;
    /* seconds since publication, as far as the DHT's rounded ttl tells */
    age = ttl > ttl_left_s ? (ttl - ttl_left_s) * 1000 : 0;
    r->heard_ms = now - SW_MIN(age, now);
    r->step_ms = r->heard_ms - SW_MIN(sage, r->heard_ms);
    return 0;
}

int
sw_status_rec_from_dht(const struct sw_dht_record *d, int stage, int S, uint64_t now,
                       struct sw_peer_rec *r)
{
    msgpack_unpacked u;
    int err;

    memset(r, 0, sizeof(*r));
    msgpack_unpacked_init(&u);
    err = sw_wire_unpack(d->val, d->val_len, &u);
    if (err == 0)
        err = sw_status_rec_unpack(&u.data, r, S, d->ttl_s, now);
    msgpack_unpacked_destroy(&u);
    if (err < 0)
        return -SW_EMSG;
    if (r->stage != stage)
        return -SW_EMSG; /* published under another stage's key */
    memcpy(r->pk, d->pub, 32);
    r->seq = d->seq;
    return 0;
}

/* ---- scan ---- */

int
sw_status_scan_init(struct sw_status_scan *sc, struct sw_dhtnode *dht, const uint8_t run[32],
                    int S)
{
    memset(sc, 0, sizeof(*sc));
    sc->dht = dht;
    sc->S = S;
    sc->keys = sw_calloc((size_t)S, sizeof(*sc->keys));
    sc->slots = sw_calloc((size_t)S, sizeof(*sc->slots));
    sc->answered = sw_calloc((size_t)S, sizeof(*sc->answered));
    if (!sc->keys || !sc->slots || !sc->answered) {
        sw_status_scan_release(sc);
        return -SW_ENOMEM;
    }
    for (int s = 0; s < S; s++) {
        sw_status_stage_key(sc->keys[s], run, s);
        sc->slots[s].sc = sc;
        sc->slots[s].stage = s;
    }
    return 0;
}

void
sw_status_scan_release(struct sw_status_scan *sc)
{
    sw_free(sc->keys);
    sw_free(sc->slots);
    sw_free(sc->answered);
    sc->keys = NULL;
    sc->slots = NULL;
    sc->answered = NULL;
}

static int
cmp_rec(const void *a, const void *b)
{
    const struct sw_peer_rec *x = a, *y = b;
    if (x->stage != y->stage)
        return x->stage - y->stage;
    return memcmp(x->pk, y->pk, 32);
}

static void
on_scan_get(void *arg, int status, const struct sw_dht_record *recs, size_t n,
            const struct sw_dht_lookup_info *info)
{
    struct sw_status_scan_slot *slot = arg;
    struct sw_status_scan *sc = slot->sc;
    uint64_t now = sw_now_ms();

    (void)info;
    if (sc->cut) { /* abandoned by sw_status_scan_cut */
        if (--sc->left == 0)
            sc->cut = false;
        return;
    }
    if (status < 0 && sc->status == 0)
        sc->status = status;
    sc->answered[slot->stage] = status == 0;
    for (size_t i = 0; status == 0 && i < n; i++) {
        struct sw_peer_rec r;
        int j;

        if (sw_status_rec_from_dht(&recs[i], slot->stage, sc->S, now, &r) < 0) {
            sc->bad++;
            SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "dropped a malformed stage %d record",
                               slot->stage);
            continue;
        }
        /* unadmitted: neither its step nor its key count (admit.h) */
        if (sc->admit && !sc->admit(sc->admit_arg, &r)) {
            /* as if it left: a node revoked mid-run is waited for no more */
            if (sc->ngone < SW_PROTO_MAX_NODES)
                memcpy(sc->gone[sc->ngone++], r.pk, 32);
            sc->unadmitted++;
            SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "dropped a stage %d record of %s: no valid "
                               "certificate", slot->stage, sw_proto_who((char[13]){0}, r.pk));
            continue;
        }
        r.cert = NULL; /* it pointed into the DHT's record, gone after this call */
        r.cert_len = 0;
        if (r.step > sc->max_step)
            sc->max_step = r.step;
        if (r.state == SW_REC_LEAVING) {
            if (sc->ngone < SW_PROTO_MAX_NODES)
                memcpy(sc->gone[sc->ngone++], r.pk, 32);
            continue;
        }
        for (j = 0; j < sc->n; j++)
            if (!memcmp(sc->recs[j].pk, r.pk, 32))
                break;
        if (j < sc->n) {
            /* the same key on two stages (it moved, trainer.h): keep the
             * newer, by the publisher's version (ages are whole seconds) */
            if (r.seq > sc->recs[j].seq ||
                (r.seq == sc->recs[j].seq && r.heard_ms > sc->recs[j].heard_ms))
                sc->recs[j] = r;
        } else if (sc->n < SW_PROTO_MAX_NODES) {
            sc->recs[sc->n++] = r;
        }
    }
    if (--sc->left > 0)
        return;
    sc->pending = false;
    qsort(sc->recs, (size_t)sc->n, sizeof(sc->recs[0]), cmp_rec);
    sc->cb(sc->arg, sc->status, sc->recs, sc->n, sc->max_step);
}

void
sw_status_scan_cut(struct sw_status_scan *sc)
{
    if (!sc->pending)
        return;
    sc->pending = false;
    sc->cut = true; /* on_scan_get drops the sc->left gets still out */
    if (sc->status == 0)
        sc->status = -SW_ETIMEDOUT;
    qsort(sc->recs, (size_t)sc->n, sizeof(sc->recs[0]), cmp_rec);
    sc->cb(sc->arg, sc->status, sc->recs, sc->n, sc->max_step);
}

int
sw_status_scan_start(struct sw_status_scan *sc, sw_status_scan_cb *cb, void *arg)
{
    int err;

    if (sc->pending || sc->cut)
        return -SW_EAGAIN;
    sc->cb = cb;
    sc->arg = arg;
    sc->n = 0;
    sc->ngone = 0;
    sc->status = 0;
    sc->max_step = 0;
    sc->left = sc->S;
    sc->pending = true;
    memset(sc->answered, 0, (size_t)sc->S * sizeof(*sc->answered));
    for (int s = 0; s < sc->S; s++) {
        if ((err = sw_dhtnode_get(sc->dht, sc->keys[s], on_scan_get, &sc->slots[s])) < 0) {
            /* the gets already started still report; count this one as done */
            if (sc->status == 0)
                sc->status = err;
            if (--sc->left == 0) {
                sc->pending = false;
                return err;
            }
        }
    }
    return 0;
}

int
sw_status_summarize(const struct sw_peer_rec *recs, int n, int S, uint64_t run_step, int steps,
                    uint64_t now, const bool *answered, struct sw_stage_summary *sum)
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
            if (r->stage != s || r->state == SW_REC_LEAVING ||
                (r->state != SW_REC_DONE && now - r->heard_ms > SW_STATUS_STALE_MS))
                continue; /* left, or dead: no refresh for too long */
            if (r->unproven) {
                x->unproven++; /* a claim: nothing it says is counted */
                continue;
            }
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
            any_training |= sw_rec_has_state(r->state);
        }
        if (x->nodes == 0) {
            x->state = finished ? "done" : answered && !answered[s] ? "unknown" : "empty";
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

/* ---- the end record ---- */

static const char *const end_keys[] = {"ver", "step", "loss", "cert", NULL};

void
sw_status_end_key(uint8_t key[32], const uint8_t run[32])
{
    crypto_generichash_state h;

    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, run, 32);
    crypto_generichash_update(&h, (const uint8_t *)"end", 3);
    crypto_generichash_final(&h, key, 32);
}

void
sw_status_end_pack(msgpack_packer *pk, const struct sw_run_end *e)
{
    msgpack_pack_map(pk, 3 + (e->cert_len > 0));
    sw_proto_pack_key(pk, "ver");
    msgpack_pack_uint32(pk, 1);
    sw_proto_pack_key(pk, "step");
    msgpack_pack_uint64(pk, e->step);
    sw_proto_pack_key(pk, "loss");
    msgpack_pack_double(pk, e->loss >= 0 && isfinite(e->loss) ? e->loss : -1);
    if (e->cert_len > 0) {
        sw_proto_pack_key(pk, "cert");
        sw_proto_pack_bin(pk, e->cert, e->cert_len);
    }
}

int
sw_status_end_from_dht(const struct sw_dht_record *d, struct sw_run_end *e)
{
    msgpack_unpacked u;
    uint64_t ver;
    size_t n = 0;
    int err = -SW_EMSG;

    memset(e, 0, sizeof(*e));
    msgpack_unpacked_init(&u);
    if (sw_wire_unpack(d->val, d->val_len, &u) == 0 && sw_proto_only(&u.data, end_keys) &&
        sw_proto_get_u64(&u.data, "ver", &ver) == 0 && ver == 1 &&
        sw_proto_get_u64(&u.data, "step", &e->step) == 0 &&
        sw_proto_get_f64(&u.data, "loss", &e->loss) == 0 && isfinite(e->loss) &&
        (!sw_proto_get(&u.data, "cert") ||
         (sw_proto_get_bin(&u.data, "cert", &e->cert, &n) == 0 && n > 0 &&
          n <= SW_STATUS_CERT_MAX)))
        err = 0;
    e->cert_len = e->cert ? n : 0;
    msgpack_unpacked_destroy(&u);
    if (e->loss < 0)
        e->loss = -1;
    return err;
}

static void
on_end_put(void *arg, int status, unsigned n_stored, const struct sw_dht_lookup_info *info)
{
    (void)arg;
    (void)info;
    if (status < 0 && status != -SW_ECANCELED)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 10000, "cannot publish the end record: %s",
                           sw_strerror(status));
    else if (status == 0)
        sw_log(SW_LOG_DEBUG, "end record stored on %u nodes", n_stored);
}

int
sw_status_end_publish(struct sw_dhtnode *dht, const uint8_t run[32], const uint8_t *sk,
                      const struct sw_run_end *e, uint64_t seq)
{
    uint8_t val[64 + SW_STATUS_CERT_MAX];
    struct sw_wire_buf b;
    msgpack_packer pk;
    struct sw_dht_record r;

    sw_wire_buf_init(&b, val, sizeof(val));
    sw_wire_buf_packer(&pk, &b);
    sw_status_end_pack(&pk, e);
    if (b.overflow)
        return -SW_ETOOBIG;
    memset(&r, 0, sizeof(r));
    sw_status_end_key(r.key, run);
    r.seq = seq;
    r.ttl_s = SW_STATUS_END_TTL_S;
    r.val = val;
    r.val_len = b.len;
    sw_dht_record_sign(&r, sk);
    return sw_dhtnode_put(dht, &r, on_end_put, NULL); /* the record is copied */
}
