/*
 * live.c - the liveness table and the bans (see live.h).
 */
#include "sw.h"

#include <stdio.h>
#include <string.h>

#include "live.h"

void
sw_live_init(struct sw_live *lv, const uint8_t self[32], int dead_ms, int pub_every, int ban_ms,
             const struct sw_live_ops *ops, void *arg)
{
    memset(lv, 0, sizeof(*lv));
    memcpy(lv->self, self, 32);
    lv->dead_ms = dead_ms;
    lv->pub_every = pub_every;
    lv->ban_ms = ban_ms;
    lv->ops = ops;
    lv->arg = arg;
}

struct sw_live_peer *
sw_live_find(struct sw_live *lv, const uint8_t *pk)
{
    for (int i = 0; i < SW_LIVE_MAX; i++)
        if (lv->peer[i].used && !memcmp(lv->peer[i].pk, pk, 32))
            return &lv->peer[i];
    return NULL;
}

struct sw_live_peer *
sw_live_get(struct sw_live *lv, const uint8_t *pk)
{
    struct sw_live_peer *p = sw_live_find(lv, pk), *old = NULL;
    uint32_t gen;

    if (p)
        return p;
    for (int i = 0; i < SW_LIVE_MAX && !p; i++) {
        struct sw_live_peer *x = &lv->peer[i];
        if (!x->used)
            p = x;
        else if (!x->ping_busy && !x->probe_busy && (!old || x->seen_ms < old->seen_ms))
            old = x;
    }
    if (!p && !(p = old))
        return NULL;
    gen = p->gen + 1;
    memset(p, 0, sizeof(*p));
    p->gen = gen;
    p->used = true;
    memcpy(p->pk, pk, 32);
    return p;
}

void
sw_live_declare_dead(struct sw_live *lv, struct sw_live_peer *p, const char *why)
{
    char who[13], f[640], q[512];

    if (p->dead || p->left)
        return;
    p->dead = true;
    lv->deaths++;
    snprintf(f, sizeof(f), "\"node\":\"%s\",\"stage\":%d,\"why\":%s", sw_proto_who(who, p->pk),
             p->stage, sw_json_str(q, sizeof(q), why));
    sw_log_event(SW_LOG_WARN, "declared_dead", f, "node %s of stage %d declared dead: %s", who,
                 p->stage, why);
    if (lv->ops->dead)
        lv->ops->dead(lv->arg, p->pk, p->stage, why);
}

void
sw_live_probe(struct sw_live *lv, uint64_t now, struct sw_live_peer *p, const char *ep)
{
    if (p->probe_busy || p->dead || p->left || !lv->ops->probe)
        return;
    if (ep != p->ep)
        snprintf(p->ep, sizeof(p->ep), "%s", ep);
    p->probe_busy = true;
    p->probe_ms = now;
    lv->ops->probe(lv->arg, p->pk, ep, (uint64_t)lv->dead_ms / 3);
}

void
sw_live_probed(struct sw_live *lv, const uint8_t *pk, bool refused)
{
    struct sw_live_peer *p = sw_live_find(lv, pk);

    if (!p)
        return;
    p->probe_busy = false;
    if (refused)
        sw_live_declare_dead(lv, p, "its port is closed");
}

/* One record of a scan: liveness by its version (see live.h). */
static void
judge(struct sw_live *lv, uint64_t now, const struct sw_peer_rec *r, uint64_t probe_every)
{
    struct sw_live_peer *p = sw_live_get(lv, r->pk);
    bool me = !memcmp(r->pk, lv->self, 32);
    char who[13];

    if (!p)
        return;
    if (!p->seq_ms) { /* first sight: trust the record's age */
        p->seq = r->seq;
        p->seq_ms = SW_MIN(r->heard_ms, now);
    } else if (r->seq != p->seq) {
        p->seq = r->seq;
        p->seq_ms = p->alive_ms = now;
        p->left = false;
        if (p->dead) {
            p->dead = false;
            p->ping_fails = 0;
            sw_log(SW_LOG_INFO, "node %s of stage %d is alive again", sw_proto_who(who, p->pk),
                   r->stage);
        }
    }
    p->stage = r->stage;
    p->seen_ms = now;
    if (me || r->state == SW_REC_DONE)
        return;
    if (now - p->seq_ms > (uint64_t)lv->dead_ms) {
        char why[64];
        snprintf(why, sizeof(why), "no record refresh for %llu ms",
                 (unsigned long long)(now - p->seq_ms));
        sw_live_declare_dead(lv, p, why);
    } else if (now - p->seq_ms > (uint64_t)lv->pub_every && now - p->probe_ms >= probe_every) {
        sw_live_probe(lv, now, p, r->ep); /* a refresh is late: is the process still there? */
    }
}

int
sw_live_scan(struct sw_live *lv, uint64_t now, const struct sw_peer_rec *recs, int n,
             const uint8_t (*gone)[32], int ngone, uint64_t probe_every, struct sw_peer_rec *out)
{
    char who[13];
    int k = 0;

    for (int i = 0; i < ngone; i++) {
        struct sw_live_peer *p = sw_live_find(lv, gone[i]);
        if (p && !p->left && !p->dead) {
            p->left = true;
            sw_log(SW_LOG_INFO, "node %s of stage %d left", sw_proto_who(who, p->pk), p->stage);
        }
    }
    for (int i = 0; i < n; i++) {
        struct sw_live_peer *p;
        bool me = !memcmp(recs[i].pk, lv->self, 32);
        judge(lv, now, &recs[i], probe_every);
        p = sw_live_find(lv, recs[i].pk);
        if (!me && ((p && (p->dead || p->left)) || sw_live_banned(lv, recs[i].pk, now)))
            continue;
        out[k++] = recs[i];
    }
    return k;
}

void
sw_live_ping(struct sw_live *lv, uint64_t now, const uint8_t *pk, const char *ep, int stage,
             uint64_t every)
{
    struct sw_live_peer *p = sw_live_get(lv, pk);
    uint64_t tag;

    if (!p || p->ping_busy || (p->ping_ms && now - p->ping_ms < every) || !lv->ops->ping)
        return;
    p->stage = stage;
    p->ping_ms = now;
    snprintf(p->ep, sizeof(p->ep), "%s", ep);
    tag = (uint64_t)p->gen << 16 | (uint64_t)(p - lv->peer);
    if (lv->ops->ping(lv->arg, ep, (uint64_t)lv->dead_ms / 3, tag) == 0)
        p->ping_busy = true;
}

void
sw_live_pong(struct sw_live *lv, uint64_t now, uint64_t tag, int status, const uint8_t *from)
{
    uint64_t idx = tag & 0xffff;
    struct sw_live_peer *p;
    char why[64];

    if (idx >= SW_LIVE_MAX)
        return;
    p = &lv->peer[idx];
    if (!p->used || p->gen != (uint32_t)(tag >> 16) || !p->ping_busy)
        return; /* its slot went to another node meanwhile */
    p->ping_busy = false;
    if (status == 0) {
        p->ping_fails = 0;
        if (from && !memcmp(from, p->pk, 32))
            p->alive_ms = now;
        return;
    }
    if (p->ping_fails == 0 && p->ep[0])
        sw_live_probe(lv, now, p, p->ep);
    if (++p->ping_fails >= 2) {
        snprintf(why, sizeof(why), "no answer to %d pings of %d ms", p->ping_fails,
                 lv->dead_ms / 3);
        sw_live_declare_dead(lv, p, why);
    }
}

bool
sw_live_banned(const struct sw_live *lv, const uint8_t *pk, uint64_t now)
{
    for (int i = 0; i < SW_LIVE_MAX_BANS; i++)
        if (lv->ban[i].until_ms > now && !memcmp(lv->ban[i].pk, pk, 32))
            return true;
    return false;
}

void
sw_live_ban(struct sw_live *lv, const uint8_t *pk, uint64_t now, const char *why)
{
    int b = 0;
    char who[13];

    if (lv->ban_ms <= 0 || !memcmp(pk, lv->self, 32) || sw_live_banned(lv, pk, now))
        return;
    for (int i = 1; i < SW_LIVE_MAX_BANS; i++)
        if (lv->ban[i].until_ms < lv->ban[b].until_ms)
            b = i;
    memcpy(lv->ban[b].pk, pk, 32);
    lv->ban[b].until_ms = now + (uint64_t)lv->ban_ms;
    lv->bans_total++;
    sw_log(SW_LOG_WARN, "banned peer %s for %d s: %s", sw_proto_who(who, pk), lv->ban_ms / 1000,
           why);
}

bool
sw_live_gone(struct sw_live *lv, const uint8_t *pk, uint64_t now)
{
    struct sw_live_peer *p;

    if (!memcmp(pk, lv->self, 32))
        return false;
    p = sw_live_find(lv, pk);
    return sw_live_banned(lv, pk, now) || (p && (p->dead || p->left));
}

bool
sw_live_trusted(struct sw_live *lv, const uint8_t *pk)
{
    struct sw_live_peer *p = sw_live_find(lv, pk);

    return p && p->alive_ms && !p->dead && !p->left;
}
