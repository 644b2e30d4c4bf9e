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

/* p's death (or return) goes to the debug log only (live.h, Deaths in the log). */
static bool
quiet(const struct sw_live *lv, const struct sw_live_peer *p)
{
    return p->dead_log_ms && lv->now_ms - p->dead_log_ms < SW_LIVE_DEAD_LOG_MS;
}

void
sw_live_declare_dead(struct sw_live *lv, struct sw_live_peer *p, const char *why)
{
    char who[13], f[640], q[512];

    if (p->dead || p->left)
        return;
    p->dead = true;
    lv->deaths++;
    sw_proto_who(who, p->pk);
    if (quiet(lv, p)) { /* see Deaths in the log */
        lv->deaths_quiet++;
        sw_log(SW_LOG_DEBUG, "node %s of stage %d declared dead again: %s", who, p->stage, why);
    } else {
        p->dead_log_ms = SW_MAX(lv->now_ms, 1);
        snprintf(f, sizeof(f), "\"node\":\"%s\",\"stage\":%d,\"why\":%s", who, p->stage,
                 sw_json_str(q, sizeof(q), why));
        sw_log_event(SW_LOG_WARN, "declared_dead", f, "node %s of stage %d declared dead: %s",
                     who, p->stage, why);
    }
    if (lv->ops->dead)
        lv->ops->dead(lv->arg, p->pk, p->stage, why);
}

/* A ping's timeout for p: a third of the dead time, plus how long its loop
 * may be held by a block of compute (its record's "blk": live.h, Busy nodes). */
static uint64_t
ping_timeout(const struct sw_live *lv, const struct sw_live_peer *p)
{
    return (uint64_t)lv->dead_ms / 3 + p->blk_ms;
}

/* A probe of p's port connected lately: a process listens there (live.h, Busy nodes). */
static bool
listening(const struct sw_live_peer *p, uint64_t now)
{
    return p->conn_ms && now - p->conn_ms <= SW_LIVE_BUSY_MS;
}

/* How much longer than dead_ms p may be silent now: its blk, and
 * SW_LIVE_BUSY_MS more while it is listening (live.h, Busy nodes). */
static uint64_t
busy_grace(const struct sw_live_peer *p, uint64_t now)
{
    return p->blk_ms + (listening(p, now) ? SW_LIVE_BUSY_MS : 0);
}

void
sw_live_connected(struct sw_live *lv, const uint8_t *pk, uint64_t now)
{
    struct sw_live_peer *p = sw_live_find(lv, pk);

    if (p)
        p->conn_ms = now;
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
    bool me = !memcmp(r->pk, lv->self, 32), past_due;
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
            /* back: a proof that failed while it was cut off is tried anew
             * (sim --harsh 476: a newcomer never counted a node that came
             * back, and gave its stage up as lost) */
            p->dead = false;
            p->ping_fails = p->prove_fails = 0;
            p->prove_next_ms = 0;
            sw_log(quiet(lv, p) ? SW_LOG_DEBUG : SW_LOG_INFO, "node %s of stage %d is alive "
                   "again", sw_proto_who(who, p->pk), r->stage);
        }
    }
    p->stage = r->stage;
    p->seen_ms = now;
    p->blk_ms = r->blk_ms;
    if (me || r->state == SW_REC_DONE)
        return;
    /* a block of compute delays its refresh as much; a node that says it
     * blocks is probed once in this silence before it is judged by age (a
     * reader that scans seldom may see it late only once it is past due) */
    past_due = now - p->seq_ms > (uint64_t)lv->dead_ms + busy_grace(p, now);
    if (past_due && p->blk_ms > 0 && p->probe_ms <= p->seq_ms && lv->ops->probe && r->ep[0]) {
        sw_live_probe(lv, now, p, r->ep);
    } else if (past_due) {
        char why[64];
        snprintf(why, sizeof(why), "no record refresh for %llu ms",
                 (unsigned long long)(now - p->seq_ms));
        sw_live_declare_dead(lv, p, why);
    } else if (now - p->seq_ms > (uint64_t)lv->pub_every + p->blk_ms &&
               now - p->probe_ms >= probe_every) {
        sw_live_probe(lv, now, p, r->ep); /* a refresh is late: is the process still there? */
    }
}

int
sw_live_scan(struct sw_live *lv, uint64_t now, const struct sw_peer_rec *recs, int n,
             const uint8_t (*gone)[32], int ngone, uint64_t probe_every, struct sw_peer_rec *out)
{
    char who[13];
    int k = 0;

    lv->now_ms = now;

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
    /* forget the unproven nodes whose records are gone (expired or pushed
     * out): a flood of fake records leaves nothing behind */
    for (int i = 0; i < SW_LIVE_MAX; i++) {
        struct sw_live_peer *p = &lv->peer[i];
        if (p->used && !p->proven && !p->ping_busy && !p->probe_busy &&
            now - p->seen_ms > (uint64_t)lv->dead_ms) {
            uint32_t gen = p->gen + 1;
            memset(p, 0, sizeof(*p));
            p->gen = gen;
        }
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
    if (lv->ops->ping(lv->arg, ep, ping_timeout(lv, p), tag) == 0)
        p->ping_busy = true;
}

void
sw_live_pong(struct sw_live *lv, uint64_t now, uint64_t tag, int status, const uint8_t *from)
{
    uint64_t idx = tag & 0xffff;
    struct sw_live_peer *p;
    char why[64];

    lv->now_ms = now;
    if (idx >= SW_LIVE_MAX)
        return;
    p = &lv->peer[idx];
    if (!p->used || p->gen != (uint32_t)(tag >> 16) || !p->ping_busy)
        return; /* its slot went to another node meanwhile */
    p->ping_busy = false;
    if (p->proving) {
        /* a proof's ping: only the record's own key answering counts, and
         * a failure never makes a node that was not counted dead */
        p->proving = false;
        if (status == 0 && from && !memcmp(from, p->pk, 32)) {
            p->proven = true;
            memcpy(p->pep, p->ep, sizeof(p->pep));
            p->prove_fails = 0;
            p->ping_fails = 0;
            p->alive_ms = now;
            lv->proofs++;
        } else {
            uint64_t wait = (uint64_t)SW_MAX(lv->dead_ms / 3, 1) << SW_MIN(p->prove_fails, 10);
            p->prove_fails++;
            p->prove_next_ms = now + SW_MIN(wait, (uint64_t)SW_LIVE_PROVE_BACKOFF_MS);
            lv->proof_fails++;
        }
        return;
    }
    if (status == 0) {
        p->ping_fails = 0;
        if (from && !memcmp(from, p->pk, 32)) {
            p->alive_ms = now;
            if (!p->proven || strcmp(p->pep, p->ep)) { /* an answer there is a proof too */
                p->proven = true;
                memcpy(p->pep, p->ep, sizeof(p->pep));
                lv->proofs++;
            }
        }
        return;
    }
    /* again after each miss while its port connected lately (not while one is under way) */
    if (p->ep[0] && (p->ping_fails == 0 || p->conn_ms))
        sw_live_probe(lv, now, p, p->ep);
    /* a node whose port connects lately is busy, not gone: dead only once
     * its silence outlasts the grace too (live.h, Busy nodes) */
    if (++p->ping_fails >= 2 &&
        (!listening(p, now) ||
         now - SW_MAX(p->alive_ms, p->seq_ms) > (uint64_t)lv->dead_ms + busy_grace(p, now))) {
        snprintf(why, sizeof(why), "no answer to %d pings of %llu ms", p->ping_fails,
                 (unsigned long long)ping_timeout(lv, p));
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

    return p && p->proven && !p->dead && !p->left;
}

bool
sw_live_proven(struct sw_live *lv, const uint8_t *pk, const char *ep)
{
    struct sw_live_peer *p;

    if (!memcmp(pk, lv->self, 32))
        return true;
    p = sw_live_find(lv, pk);
    return p && p->proven && !strcmp(p->pep, ep);
}

bool
sw_live_proving(struct sw_live *lv, const uint8_t *pk, const char *ep, uint64_t now)
{
    struct sw_live_peer *p = sw_live_find(lv, pk);

    return p && !sw_live_proven(lv, pk, ep) && !sw_live_gone(lv, pk, now) &&
           p->prove_fails < SW_LIVE_PROVE_TRIES;
}

int
sw_live_prove(struct sw_live *lv, uint64_t now, const struct sw_peer_rec *recs, int n)
{
    int busy = 0, first = 0, start = n ? lv->prove_at % n : 0;

    for (int i = 0; i < SW_LIVE_MAX; i++)
        busy += lv->peer[i].used && lv->peer[i].proving;
    for (int j = 0; j < n; j++) {
        /* a round starts where the last one ended: no record waits behind
         * a crowd that is always tried first */
        int i = (start + j) % n;
        const struct sw_peer_rec *r = &recs[i];
        struct sw_live_peer *p;
        uint64_t tag;
        if (!memcmp(r->pk, lv->self, 32) || sw_live_proven(lv, r->pk, r->ep) ||
            sw_live_banned(lv, r->pk, now) || !(p = sw_live_get(lv, r->pk)) || p->dead ||
            p->left)
            continue;
        /* another endpoint is another claim (an outbound-only node's "key:" one after its
         * direct one): its backoff starts over */
        if (p->ep[0] && strcmp(p->ep, r->ep) != 0 && !p->ping_busy) {
            p->prove_fails = 0;
            p->prove_next_ms = 0;
        }
        if (p->prove_fails < SW_LIVE_PROVE_TRIES)
            first++;
        if (p->ping_busy || busy >= SW_LIVE_PROVE_MAX || now < p->prove_next_ms ||
            !lv->ops->ping)
            continue;
        p->stage = r->stage;
        snprintf(p->ep, sizeof(p->ep), "%s", r->ep);
        tag = (uint64_t)p->gen << 16 | (uint64_t)(p - lv->peer);
        p->blk_ms = r->blk_ms;
        if (lv->ops->ping(lv->arg, r->ep, ping_timeout(lv, p), tag) == 0) {
            p->ping_busy = p->proving = true;
            p->ping_ms = now;
            busy++;
            lv->prove_at = (i + 1) % n;
        } else {
            p->prove_fails++;
            p->prove_next_ms = now + (uint64_t)SW_MAX(lv->dead_ms / 3, 1);
        }
    }
    return first;
}

void
sw_live_attest(struct sw_live *lv, const uint8_t *pk, int stage, uint64_t step, const char *hash)
{
    struct sw_live_attest *a;

    if (!hash || strlen(hash) != 16)
        return;
    for (int i = 0; i < lv->natt; i++) {
        a = &lv->att[i];
        if (a->stage == stage && a->step == step && !memcmp(a->pk, pk, 32) &&
            !strcmp(a->hash, hash))
            return; /* said already */
    }
    a = &lv->att[lv->att_at];
    lv->att_at = (lv->att_at + 1) % SW_LIVE_ATTEST;
    if (lv->natt < SW_LIVE_ATTEST)
        lv->natt++;
    memcpy(a->pk, pk, 32);
    a->stage = stage;
    a->step = step;
    snprintf(a->hash, sizeof(a->hash), "%s", hash);
}

/* The attestations of (stage, step) by others than src: agree 1, disagree 0. */
static bool
attest_any(const struct sw_live *lv, const uint8_t *src, int stage, uint64_t step,
           const char *hash, bool agree)
{
    for (int i = 0; i < lv->natt; i++) {
        const struct sw_live_attest *a = &lv->att[i];
        if (a->stage == stage && a->step == step && (!src || memcmp(a->pk, src, 32)) &&
            !strcmp(a->hash, hash) == agree)
            return true;
    }
    return false;
}

bool
sw_live_attested(const struct sw_live *lv, const uint8_t *src, int stage, uint64_t step,
                 const char *hash)
{
    return attest_any(lv, src, stage, step, hash, true);
}

bool
sw_live_contradicted(const struct sw_live *lv, const uint8_t *src, int stage, uint64_t step,
                     const char *hash)
{
    return attest_any(lv, src, stage, step, hash, false);
}
