/*
 * test_live - the liveness table and the bans (peers/live.h), fed by hand:
 * scans of stage records, ping answers and probe outcomes, with a clock
 * that only moves when the test says so.  Fake ops record what the core
 * asked for (deaths, probes, pings and their tags).
 *
 * Times: dead_ms 3000, so records are refreshed every pub_every = 1000 ms
 * and pings time out after 1000 ms; every scenario starts at T0.
 */
#include "sw.h"

#include <string.h>

#include "live.h"
#include "tap.h"

#define DEAD_MS 3000
#define BAN_MS 10000
#define T0 100000ull
#define PROBE_EVERY 500

struct fake {
    int ndead, nprobe, nping;
    uint8_t dead_pk[32], probe_pk[32];
    int dead_stage;
    char why[128];
    char probe_ep[SW_PROTO_EP_MAX], ping_ep[SW_PROTO_EP_MAX];
    uint64_t probe_timeout, ping_timeout, ping_tag;
    int ping_rc; /* what ops->ping returns */
    uint64_t tags[256]; /* of every ping, in order */
};

static void
fake_dead(void *arg, const uint8_t *pk, int stage, const char *why)
{
    struct fake *fk = arg;

    fk->ndead++;
    memcpy(fk->dead_pk, pk, 32);
    fk->dead_stage = stage;
    snprintf(fk->why, sizeof(fk->why), "%s", why ? why : "");
}

static void
fake_probe(void *arg, const uint8_t *pk, const char *ep, uint64_t timeout_ms)
{
    struct fake *fk = arg;

    fk->nprobe++;
    memcpy(fk->probe_pk, pk, 32);
    snprintf(fk->probe_ep, sizeof(fk->probe_ep), "%s", ep);
    fk->probe_timeout = timeout_ms;
}

static int
fake_ping(void *arg, const char *ep, uint64_t timeout_ms, uint64_t tag)
{
    struct fake *fk = arg;

    fk->nping++;
    snprintf(fk->ping_ep, sizeof(fk->ping_ep), "%s", ep);
    fk->ping_timeout = timeout_ms;
    fk->ping_tag = tag;
    if (fk->nping <= 256)
        fk->tags[fk->nping - 1] = tag;
    return fk->ping_rc;
}

static const struct sw_live_ops ops = {fake_dead, fake_probe, fake_ping};

/* Node v's key (v < 65536); 9999 is this node. */
static void
key(uint8_t pk[32], int v)
{
    memset(pk, 0, 32);
    pk[0] = (uint8_t)(v & 0xff);
    pk[1] = (uint8_t)(v >> 8);
    pk[31] = 0x5a;
}

#define SELF 9999

static void
ep_of(char *ep, size_t cap, int v)
{
    snprintf(ep, cap, "tcp://10.0.%d.%d:7400", (v >> 8) & 0xff, v & 0xff);
}

static void
rec(struct sw_peer_rec *r, int v, int stage, uint64_t seq, uint64_t heard_ms)
{
    memset(r, 0, sizeof(*r));
    key(r->pk, v);
    ep_of(r->ep, sizeof(r->ep), v);
    r->stage = stage;
    r->state = SW_REC_TRAINING;
    r->seq = seq;
    r->heard_ms = heard_ms;
}

static void
setup(struct sw_live *lv, struct fake *fk)
{
    uint8_t self[32];

    memset(fk, 0, sizeof(*fk));
    key(self, SELF);
    sw_live_init(lv, self, DEAD_MS, sw_live_pub_every(DEAD_MS), BAN_MS, &ops, fk);
}

/* One record alone in a scan; returns how many records came out. */
static int
scan1(struct sw_live *lv, uint64_t now, const struct sw_peer_rec *r)
{
    struct sw_peer_rec out[1];

    return sw_live_scan(lv, now, r, 1, NULL, 0, PROBE_EVERY, out);
}

static bool
same_key(const uint8_t *a, int v)
{
    uint8_t pk[32];

    key(pk, v);
    return !memcmp(a, pk, 32);
}

/* A record whose version stops changing: a probe when late, dead after
 * dead_ms, alive again with a new version. */
static void
dead_by_age(void)
{
    struct sw_live lv;
    struct fake fk;
    struct sw_peer_rec r;
    uint8_t a[32];
    char ep[SW_PROTO_EP_MAX];
    int n1, n2, n3;

    setup(&lv, &fk);
    tap_ok(lv.pub_every == 1000, "pub_every of dead_ms 3000 is 1000 (got %d)", lv.pub_every);
    key(a, 1);
    ep_of(ep, sizeof(ep), 1);
    rec(&r, 1, 2, 1, T0);
    n1 = scan1(&lv, T0, &r);
    n2 = scan1(&lv, T0 + 500, &r);
    n3 = scan1(&lv, T0 + 1000, &r);
    tap_ok(n1 == 1 && n2 == 1 && n3 == 1 && fk.nprobe == 0 && fk.ndead == 0,
           "a fresh record: listed, neither probed nor dead (probes %d deaths %d)", fk.nprobe,
           fk.ndead);
    tap_ok(!sw_live_trusted(&lv, a), "a record seen once is no sign of life yet");
    scan1(&lv, T0 + 1001, &r);
    tap_ok(fk.nprobe == 1 && same_key(fk.probe_pk, 1) && !strcmp(fk.probe_ep, ep) &&
               fk.probe_timeout == DEAD_MS / 3,
           "no new version for pub_every: one probe of its endpoint (probes %d, timeout %llu)",
           fk.nprobe, (unsigned long long)fk.probe_timeout);
    scan1(&lv, T0 + 1600, &r);
    scan1(&lv, T0 + 2200, &r);
    tap_ok(fk.nprobe == 1, "no second probe while one is under way (probes %d)", fk.nprobe);
    sw_live_probed(&lv, a, false);
    tap_ok(!sw_live_gone(&lv, a, T0 + 2300) && fk.ndead == 0,
           "a probe that connects proves nothing: not dead");
    n1 = scan1(&lv, T0 + 3000, &r);
    tap_ok(n1 == 1 && fk.ndead == 0, "not dead at exactly dead_ms (listed %d, deaths %d)", n1,
           fk.ndead);
    tap_ok(fk.nprobe == 2, "probed again probe_every after the last probe (probes %d)",
           fk.nprobe);
    sw_live_probed(&lv, a, false);
    n1 = scan1(&lv, T0 + 3001, &r);
    tap_ok(fk.ndead == 1 && same_key(fk.dead_pk, 1) && fk.dead_stage == 2 && fk.why[0],
           "dead after dead_ms without a new version: ops->dead once, its key and stage "
           "(deaths %d, why '%s')",
           fk.ndead, fk.why);
    tap_ok(n1 == 0 && sw_live_gone(&lv, a, T0 + 3001) && lv.deaths == 1,
           "a dead node is left out of the scan and gone (listed %d)", n1);
    scan1(&lv, T0 + 3500, &r);
    scan1(&lv, T0 + 5000, &r);
    tap_ok(fk.ndead == 1 && fk.nprobe == 2 && lv.deaths == 1,
           "later scans of the same version: no second death, no probe of a dead node "
           "(deaths %d, probes %d)",
           fk.ndead, fk.nprobe);
    rec(&r, 1, 2, 2, T0 + 5400);
    n1 = scan1(&lv, T0 + 5500, &r);
    tap_ok(n1 == 1 && !sw_live_gone(&lv, a, T0 + 5500) && fk.ndead == 1,
           "a new version brings it back: alive again and listed (listed %d)", n1);
    tap_ok(!sw_live_trusted(&lv, a) && sw_live_find(&lv, a)->alive_ms == T0 + 5500,
           "a new version is a sign of life (alive_ms set), no proof: not trusted");
    n1 = scan1(&lv, T0 + 5500 + 3001, &r);
    tap_ok(n1 == 0 && fk.ndead == 2, "and it dies again when that version stays (deaths %d)",
           fk.ndead);
    tap_ok(lv.deaths_quiet == 1 && lv.deaths == 2,
           "that death, within SW_LIVE_DEAD_LOG_MS of the one logged, is logged at debug level "
           "only (quiet %llu of %llu)", (unsigned long long)lv.deaths_quiet,
           (unsigned long long)lv.deaths);
    rec(&r, 1, 2, 3, T0 + 3001 + SW_LIVE_DEAD_LOG_MS);
    scan1(&lv, T0 + 3001 + SW_LIVE_DEAD_LOG_MS, &r);
    n1 = scan1(&lv, T0 + 3001 + SW_LIVE_DEAD_LOG_MS + 3001, &r);
    tap_ok(n1 == 0 && fk.ndead == 3 && lv.deaths_quiet == 1,
           "a death SW_LIVE_DEAD_LOG_MS after the last one logged is logged again (deaths %d, "
           "quiet %llu)", fk.ndead, (unsigned long long)lv.deaths_quiet);
}

/* A refused probe: dead at once. */
static void
probe_refused(void)
{
    struct sw_live lv;
    struct fake fk;
    struct sw_peer_rec r;
    uint8_t b[32];
    int n;

    setup(&lv, &fk);
    key(b, 2);
    rec(&r, 2, 0, 7, T0);
    scan1(&lv, T0, &r);
    scan1(&lv, T0 + 1200, &r);
    tap_ok(fk.nprobe == 1 && same_key(fk.probe_pk, 2), "a late record is probed once");
    sw_live_probed(&lv, b, true);
    tap_ok(fk.ndead == 1 && same_key(fk.dead_pk, 2) && fk.dead_stage == 0 &&
               sw_live_gone(&lv, b, T0 + 1200),
           "its port refused: declared dead at once (why '%s')", fk.why);
    n = scan1(&lv, T0 + 1300, &r);
    tap_ok(n == 0 && fk.ndead == 1 && fk.nprobe == 1,
           "then left out of scans, not declared twice, not probed again");
    sw_live_probed(&lv, b, true);
    tap_ok(fk.ndead == 1, "a second refusal does not declare it twice");
}

/* Records seen for the first time are judged by their age. */
static void
first_sight(void)
{
    struct sw_live lv;
    struct fake fk;
    struct sw_peer_rec r[4], out[4];
    uint8_t c[32], d[32], e[32], g[32];
    int n;

    setup(&lv, &fk);
    key(c, 3);
    key(d, 4);
    key(e, 5);
    key(g, 6);
    rec(&r[0], 3, 1, 40, T0 - DEAD_MS - 1); /* a killed node's leftover */
    rec(&r[1], 4, 1, 41, T0 - 1500);        /* late */
    rec(&r[2], 5, 1, 42, T0 - 100);         /* fresh */
    rec(&r[3], 6, 1, 43, T0 - 10 * DEAD_MS); /* done: not judged */
    r[3].state = SW_REC_DONE;
    n = sw_live_scan(&lv, T0, r, 4, NULL, 0, PROBE_EVERY, out);
    tap_ok(fk.ndead == 1 && same_key(fk.dead_pk, 3) && sw_live_gone(&lv, c, T0),
           "a record first seen older than dead_ms: dead at once (deaths %d)", fk.ndead);
    tap_ok(fk.nprobe == 1 && same_key(fk.probe_pk, 4),
           "a record first seen older than pub_every: probed (probes %d)", fk.nprobe);
    tap_ok(!sw_live_gone(&lv, d, T0) && !sw_live_gone(&lv, e, T0) && !sw_live_gone(&lv, g, T0),
           "late, fresh and done records are not gone");
    tap_ok(n == 3 && same_key(out[0].pk, 4) && same_key(out[1].pk, 5) && same_key(out[2].pk, 6),
           "the scan lists the three others in order (listed %d)", n);
    tap_ok(!sw_live_trusted(&lv, e), "a fresh record seen once is not yet trusted");
    r[2].seq = 44;
    sw_live_scan(&lv, T0 + 200, &r[2], 1, NULL, 0, PROBE_EVERY, out);
    tap_ok(!sw_live_trusted(&lv, e), "nor its next version: a record is no proof (live.h)");
    sw_live_scan(&lv, T0 + 20 * DEAD_MS, &r[3], 1, NULL, 0, PROBE_EVERY, out);
    tap_ok(fk.ndead == 1 && !sw_live_gone(&lv, g, T0 + 20 * DEAD_MS),
           "a done record is never declared dead by its age");
}

/* "leaving" keys make a node left; the scan's output. */
static void
left_and_output(void)
{
    struct sw_live lv;
    struct fake fk;
    struct sw_peer_rec r[6], out[6];
    uint8_t gone[2][32], self[32], f[32], x[32];
    int n;

    setup(&lv, &fk);
    key(self, SELF);
    key(f, 7);
    key(x, 8);
    rec(&r[0], 7, 1, 1, T0);
    rec(&r[1], 8, 1, 1, T0);
    rec(&r[2], SELF, 1, 1, T0);
    n = sw_live_scan(&lv, T0, r, 3, NULL, 0, PROBE_EVERY, out);
    tap_ok(n == 3, "three records listed (%d)", n);
    /* f leaves: its record is no longer listed, its key is in gone */
    key(gone[0], 7);
    n = sw_live_scan(&lv, T0 + 500, &r[1], 2, (const uint8_t(*)[32])gone, 1, PROBE_EVERY, out);
    tap_ok(sw_live_gone(&lv, f, T0 + 500) && !sw_live_trusted(&lv, f),
           "a key in the gone list: the node left (gone, not trusted)");
    tap_ok(fk.ndead == 0 && lv.deaths == 0, "leaving is not dying: ops->dead not called");
    tap_ok(n == 2 && same_key(out[0].pk, 8) && same_key(out[1].pk, SELF),
           "the others are listed (%d)", n);
    /* with f's record still in the scan alongside its gone key: left out */
    n = sw_live_scan(&lv, T0 + 600, r, 3, (const uint8_t(*)[32])gone, 1, PROBE_EVERY, out);
    tap_ok(n == 2 && same_key(out[0].pk, 8) && same_key(out[1].pk, SELF),
           "a left node's record is left out of the scan (%d)", n);

    /* one scan mixing everything: self stale and in gone, a banned, a dead, a left node */
    setup(&lv, &fk);
    rec(&r[0], SELF, 3, 5, T0 - 10 * DEAD_MS); /* this node's own record, very old */
    rec(&r[1], 10, 3, 5, T0);                   /* fine */
    rec(&r[2], 11, 3, 5, T0);                   /* banned */
    rec(&r[3], 12, 3, 5, T0 - DEAD_MS - 1);     /* dead by age */
    rec(&r[4], 13, 3, 5, T0);                   /* left */
    rec(&r[5], 14, 3, 5, T0);                   /* fine */
    r[4].heard_ms = T0 - 100;
    sw_live_scan(&lv, T0 - 100, &r[4], 1, NULL, 0, PROBE_EVERY, out); /* known before */
    sw_live_scan(&lv, T0 - 100, &r[0], 1, NULL, 0, PROBE_EVERY, out);
    r[4].heard_ms = T0;
    key(x, 11);
    sw_live_ban(&lv, x, T0 - 50, "test");
    key(gone[0], 13);
    key(gone[1], SELF);
    memset(out, 0, sizeof(out));
    n = sw_live_scan(&lv, T0, r, 6, (const uint8_t(*)[32])gone, 2, PROBE_EVERY, out);
    tap_ok(n == 3 && same_key(out[0].pk, SELF) && same_key(out[1].pk, 10) &&
               same_key(out[2].pk, 14),
           "output: dead, left and banned nodes left out, this node's own record kept "
           "(listed %d)",
           n);
    tap_ok(n == 3 && !memcmp(&out[0], &r[0], sizeof(r[0])) &&
               !memcmp(&out[1], &r[1], sizeof(r[1])) && !memcmp(&out[2], &r[5], sizeof(r[5])),
           "the listed records are copied whole");
    tap_ok(fk.ndead == 1 && same_key(fk.dead_pk, 12),
           "this node is never declared dead, however old its record (deaths %d)", fk.ndead);
    tap_ok(!sw_live_gone(&lv, self, T0), "this node is never gone, even in the gone list");
}

/* Pings: two failures kill, a good pong resets the count. */
static void
pings(void)
{
    struct sw_live lv;
    struct fake fk;
    uint8_t a[32], h[32], other[32];
    char ep[SW_PROTO_EP_MAX];
    uint64_t tag;

    setup(&lv, &fk);
    key(a, 20);
    ep_of(ep, sizeof(ep), 20);
    sw_live_ping(&lv, T0, a, ep, 1, 0);
    tap_ok(fk.nping == 1 && !strcmp(fk.ping_ep, ep) && fk.ping_timeout == DEAD_MS / 3,
           "a ping to its endpoint, timeout dead_ms / 3 (timeout %llu)",
           (unsigned long long)fk.ping_timeout);
    tag = fk.ping_tag;
    sw_live_ping(&lv, T0 + 10, a, ep, 1, 0);
    tap_ok(fk.nping == 1, "no second ping while one is in flight");
    sw_live_pong(&lv, T0 + 1000, tag, -SW_ETIMEDOUT, NULL);
    tap_ok(fk.ndead == 0 && !sw_live_gone(&lv, a, T0 + 1000), "one failed ping: not dead");
    /* (it once copied the endpoint onto itself with snprintf, and probed "") */
    tap_ok(fk.nprobe == 1 && same_key(fk.probe_pk, 20) && !strcmp(fk.probe_ep, ep),
           "a missed ping probes its endpoint (probes %d, ep '%s')", fk.nprobe, fk.probe_ep);
    sw_live_pong(&lv, T0 + 1001, tag, -SW_ETIMEDOUT, NULL);
    tap_ok(fk.ndead == 0, "a second answer to the same ping is ignored");
    sw_live_ping(&lv, T0 + 1000, a, ep, 1, 0);
    tap_ok(fk.nping == 2, "a new ping after the answer");
    sw_live_pong(&lv, T0 + 2000, fk.ping_tag, -SW_ETIMEDOUT, NULL);
    tap_ok(fk.ndead == 1 && same_key(fk.dead_pk, 20) && fk.dead_stage == 1 &&
               sw_live_gone(&lv, a, T0 + 2000),
           "two failed pings: dead, ops->dead once (why '%s')", fk.why);

    key(h, 21);
    key(other, 22);
    ep_of(ep, sizeof(ep), 21);
    sw_live_ping(&lv, T0, h, ep, 2, 0);
    sw_live_pong(&lv, T0 + 1000, fk.ping_tag, -SW_ETIMEDOUT, NULL);
    sw_live_ping(&lv, T0 + 1000, h, ep, 2, 0);
    sw_live_pong(&lv, T0 + 1400, fk.ping_tag, 0, h);
    tap_ok(sw_live_trusted(&lv, h) && sw_live_find(&lv, h)->alive_ms == T0 + 1400 &&
               sw_live_find(&lv, h)->ping_fails == 0,
           "fail, then a good pong: alive_ms set, trusted, failures reset");
    sw_live_ping(&lv, T0 + 1500, h, ep, 2, 0);
    sw_live_pong(&lv, T0 + 2500, fk.ping_tag, -SW_ETIMEDOUT, NULL);
    tap_ok(fk.ndead == 1 && !sw_live_gone(&lv, h, T0 + 2500),
           "fail, good, fail: not dead (the good pong reset the count)");
    sw_live_ping(&lv, T0 + 2500, h, ep, 2, 0);
    sw_live_pong(&lv, T0 + 3500, fk.ping_tag, -SW_ETIMEDOUT, NULL);
    tap_ok(fk.ndead == 2 && same_key(fk.dead_pk, 21) && !sw_live_trusted(&lv, h),
           "then a second failure in a row: dead, no longer trusted");

    /* a pong carrying another key */
    ep_of(ep, sizeof(ep), 23);
    key(h, 23);
    sw_live_ping(&lv, T0 + 4000, h, ep, 2, 0);
    sw_live_pong(&lv, T0 + 4100, fk.ping_tag, 0, other);
    tap_ok(!sw_live_trusted(&lv, h) && sw_live_find(&lv, h)->alive_ms == 0,
           "a pong from another key is no sign of life of this one");

    /* every */
    setup(&lv, &fk);
    sw_live_ping(&lv, T0, h, ep, 2, 500);
    sw_live_pong(&lv, T0 + 10, fk.ping_tag, 0, h);
    sw_live_ping(&lv, T0 + 499, h, ep, 2, 500);
    tap_ok(fk.nping == 1, "no ping less than every ms after the last one");
    sw_live_ping(&lv, T0 + 500, h, ep, 2, 500);
    tap_ok(fk.nping == 2, "one every ms later");
}

/* A pong whose slot was given to another node meanwhile is ignored. */
static void
stale_pong(void)
{
    struct sw_live lv;
    struct fake fk;
    struct sw_peer_rec r[SW_PROTO_MAX_NODES], out[SW_PROTO_MAX_NODES];
    struct sw_live_peer *pb;
    uint8_t a[32], b[32];
    char ep[SW_PROTO_EP_MAX];
    uint64_t ta, tb, gen_a, idx_a;
    int v = 100, ok = 1;

    setup(&lv, &fk);
    key(a, 30);
    key(b, 31);
    ep_of(ep, sizeof(ep), 30);
    sw_live_ping(&lv, T0, a, ep, 1, 0);
    ta = fk.ping_tag;
    idx_a = (uint64_t)(sw_live_find(&lv, a) - lv.peer);
    gen_a = sw_live_find(&lv, a)->gen;
    tap_ok(ta == (gen_a << 16 | idx_a), "a ping's tag is the slot's generation << 16 | its index");
    sw_live_pong(&lv, T0 + 10, ta, 0, a);
    tap_ok(sw_live_trusted(&lv, a), "its answer: trusted");
    /* fill every other slot with listed nodes */
    for (int left = SW_LIVE_MAX - 1; left > 0;) {
        int k = SW_MIN(left, SW_PROTO_MAX_NODES);
        for (int i = 0; i < k; i++)
            rec(&r[i], v++, 1, 1, T0 + 100);
        ok &= sw_live_scan(&lv, T0 + 100, r, k, NULL, 0, PROBE_EVERY, out) == k;
        left -= k;
    }
    tap_ok(ok && sw_live_find(&lv, a) != NULL, "%d nodes followed: the table is full",
           SW_LIVE_MAX);
    ep_of(ep, sizeof(ep), 31);
    sw_live_ping(&lv, T0 + 200, b, ep, 1, 0);
    tb = fk.ping_tag;
    pb = sw_live_find(&lv, b);
    tap_ok(pb && !sw_live_find(&lv, a) && (uint64_t)(pb - lv.peer) == idx_a &&
               pb->gen != (uint32_t)gen_a && (tb & 0xffff) == idx_a && tb != ta,
           "one more node takes the least recently listed idle slot (a's) under a new "
           "generation");
    sw_live_pong(&lv, T0 + 300, ta, 0, b);
    tap_ok(pb->alive_ms == 0 && pb->ping_busy, "a late good pong of a's ping: ignored");
    sw_live_pong(&lv, T0 + 400, ta, -SW_ETIMEDOUT, NULL);
    sw_live_pong(&lv, T0 + 500, ta, -SW_ETIMEDOUT, NULL);
    tap_ok(pb->ping_fails == 0 && !pb->dead && fk.ndead == 0 && pb->ping_busy,
           "late failures of a's ping: ignored (b not dead, its ping still in flight)");
    sw_live_pong(&lv, T0 + 600, (uint64_t)(pb->gen + 1) << 16 | idx_a, 0, b);
    sw_live_pong(&lv, T0 + 600, (uint64_t)pb->gen << 16 | SW_LIVE_MAX, 0, b);
    sw_live_pong(&lv, T0 + 600, (uint64_t)pb->gen << 16 | 0xffff, 0, b);
    tap_ok(pb->alive_ms == 0 && pb->ping_busy,
           "hand-made tags (a future generation, an index past the table): ignored");
    sw_live_pong(&lv, T0 + 700, tb, 0, b);
    tap_ok(pb->alive_ms == T0 + 700 && !pb->ping_busy && sw_live_trusted(&lv, b),
           "b's own pong counts");

    /* every slot busy: nothing to give */
    setup(&lv, &fk);
    ok = 1;
    for (int i = 0; i < SW_LIVE_MAX; i++) {
        uint8_t k[32];
        key(k, 1000 + i);
        sw_live_ping(&lv, T0, k, "tcp://10.1.0.1:7400", 1, 0);
        ok &= fk.nping == i + 1;
    }
    sw_live_ping(&lv, T0, b, ep, 1, 0);
    tap_ok(ok && fk.nping == SW_LIVE_MAX && sw_live_get(&lv, b) == NULL,
           "every slot with a ping in flight: no slot for a new node, no ping");
}

/* Bans expire, are bounded, never hit this node. */
static void
bans(void)
{
    struct sw_live lv;
    struct fake fk;
    struct sw_peer_rec r[2], out[2];
    uint8_t x[32], self[32], k[32];
    int n, ok = 1;

    setup(&lv, &fk);
    key(x, 40);
    key(self, SELF);
    tap_ok(!sw_live_gone(&lv, x, T0) && !sw_live_banned(&lv, x, T0),
           "an unknown node is neither gone nor banned");
    sw_live_ban(&lv, x, T0, "test");
    tap_ok(sw_live_banned(&lv, x, T0) && sw_live_banned(&lv, x, T0 + BAN_MS - 1) &&
               sw_live_gone(&lv, x, T0 + BAN_MS - 1) && lv.bans_total == 1,
           "banned until ban_ms later, and gone meanwhile");
    tap_ok(!sw_live_banned(&lv, x, T0 + BAN_MS) && !sw_live_gone(&lv, x, T0 + BAN_MS),
           "the ban expires after ban_ms");
    sw_live_ban(&lv, x, T0 + 10, "again");
    tap_ok(lv.bans_total == 1, "a banned peer is not banned twice");
    rec(&r[0], 40, 1, 1, T0 + 100);
    rec(&r[1], 41, 1, 1, T0 + 100);
    n = sw_live_scan(&lv, T0 + 100, r, 2, NULL, 0, PROBE_EVERY, out);
    tap_ok(n == 1 && same_key(out[0].pk, 41), "a banned node is left out of the scan (%d)", n);
    r[0].seq = r[1].seq = 2;
    r[0].heard_ms = r[1].heard_ms = T0 + BAN_MS;
    n = sw_live_scan(&lv, T0 + BAN_MS, r, 2, NULL, 0, PROBE_EVERY, out);
    tap_ok(n == 2, "and listed again once the ban expired (%d)", n);
    sw_live_ban(&lv, self, T0, "self");
    tap_ok(!sw_live_banned(&lv, self, T0) && !sw_live_gone(&lv, self, T0) && lv.bans_total == 1,
           "this node is never banned");

    setup(&lv, &fk);
    for (int i = 0; i < SW_LIVE_MAX_BANS; i++) {
        key(k, 200 + i);
        sw_live_ban(&lv, k, T0 + (uint64_t)i, "fill");
    }
    for (int i = 0; i < SW_LIVE_MAX_BANS; i++) {
        key(k, 200 + i);
        ok &= sw_live_banned(&lv, k, T0 + SW_LIVE_MAX_BANS);
    }
    tap_ok(ok, "%d bans held", SW_LIVE_MAX_BANS);
    key(k, 200 + SW_LIVE_MAX_BANS);
    sw_live_ban(&lv, k, T0 + SW_LIVE_MAX_BANS, "one more");
    ok = sw_live_banned(&lv, k, T0 + SW_LIVE_MAX_BANS);
    for (int i = 1; i < SW_LIVE_MAX_BANS; i++) {
        key(k, 200 + i);
        ok &= sw_live_banned(&lv, k, T0 + SW_LIVE_MAX_BANS);
    }
    key(k, 200);
    tap_ok(ok && !sw_live_banned(&lv, k, T0 + SW_LIVE_MAX_BANS) &&
               lv.bans_total == SW_LIVE_MAX_BANS + 1,
           "one ban more: the oldest makes room, the others stay");
    /* after expiry, expired slots are reused before live ones */
    key(k, 500);
    sw_live_ban(&lv, k, T0 + BAN_MS + 1, "after");
    ok = sw_live_banned(&lv, k, T0 + BAN_MS + 1);
    key(k, 200 + SW_LIVE_MAX_BANS);
    tap_ok(ok && sw_live_banned(&lv, k, T0 + BAN_MS + 1),
           "a ban when some expired takes an expired slot, not the newest ban");
}

/* sw_live_gone for each reason. */
static void
gone(void)
{
    struct sw_live lv;
    struct fake fk;
    struct sw_peer_rec r[3], out[3];
    uint8_t a[32], b[32], c[32], g[1][32];

    setup(&lv, &fk);
    key(a, 50);
    key(b, 51);
    key(c, 52);
    rec(&r[0], 50, 1, 1, T0);
    rec(&r[1], 51, 1, 1, T0);
    rec(&r[2], 52, 1, 1, T0);
    sw_live_scan(&lv, T0, r, 3, NULL, 0, PROBE_EVERY, out);
    tap_ok(!sw_live_gone(&lv, a, T0) && !sw_live_gone(&lv, b, T0) && !sw_live_gone(&lv, c, T0),
           "listed nodes are not gone");
    sw_live_declare_dead(&lv, sw_live_find(&lv, a), "test");
    key(g[0], 51);
    sw_live_scan(&lv, T0 + 100, &r[2], 1, (const uint8_t(*)[32])g, 1, PROBE_EVERY, out);
    tap_ok(sw_live_gone(&lv, a, T0 + 100) && sw_live_gone(&lv, b, T0 + 100) &&
               !sw_live_gone(&lv, c, T0 + 100) && fk.ndead == 1,
           "dead (declared) and left nodes are gone, the others not");
}

/* Every proof in flight fails at now. */
static void
fail_all(struct sw_live *lv, uint64_t now)
{
    for (int i = 0; i < SW_LIVE_MAX; i++)
        if (lv->peer[i].used && lv->peer[i].proving)
            sw_live_pong(lv, now, (uint64_t)lv->peer[i].gen << 16 | (uint64_t)i, -SW_ETIMEDOUT,
                         NULL);
}

/* Proof (live.h): a record counts once its node answered a ping at its
 * endpoint with its key; a flood of records with dead endpoints costs at
 * most SW_LIVE_PROVE_MAX pings at a time, backs off, and is forgotten. */
static void
proofs(void)
{
    struct sw_live lv;
    struct fake fk;
    static struct sw_peer_rec r[61], out[61];
    uint8_t me[32], real[32], other[32];
    int first, n, busy = 0;

    setup(&lv, &fk);
    for (int i = 0; i < 61; i++)
        rec(&r[i], 100 + i, 2, 1, T0); /* 100..159 fakes, 160 the real node */
    key(real, 160);
    key(me, SELF);
    key(other, 161);
    tap_ok(sw_live_proven(&lv, me, "tcp://anywhere:1"), "this node is always proven");
    n = sw_live_scan(&lv, T0, r, 61, NULL, 0, PROBE_EVERY, out);
    first = sw_live_prove(&lv, T0, out, n);
    tap_ok(n == 61 && first == 61 && fk.nping == SW_LIVE_PROVE_MAX,
           "61 unproven records: %d pings at once, all %d waiting for a first try", fk.nping,
           first);
    first = sw_live_prove(&lv, T0 + 10, out, n);
    tap_ok(fk.nping == SW_LIVE_PROVE_MAX, "no more while they are in flight (pings %d)",
           fk.nping);
    for (int i = 0; i < SW_LIVE_PROVE_MAX; i++)
        sw_live_pong(&lv, T0 + 1000, fk.tags[i], -SW_ETIMEDOUT, NULL);
    tap_ok(fk.ndead == 0 && fk.nprobe == 0 && lv.proof_fails == SW_LIVE_PROVE_MAX,
           "failed proofs: no death, no probe (deaths %d, probes %d)", fk.ndead, fk.nprobe);
    first = sw_live_prove(&lv, T0 + 1000, out, n);
    tap_ok(fk.nping == 2 * SW_LIVE_PROVE_MAX && first == 61,
           "the next round tries the next ones, not the failed ones, and all are still waited "
           "for after one failed try (pings %d, waited for %d)", fk.nping, first);
    /* fail everything in flight until the real node is asked */
    for (int round = 0; round < 20; round++) {
        struct sw_live_peer *p = sw_live_find(&lv, real);
        if (p && p->proving)
            break;
        fail_all(&lv, T0 + 2000);
        sw_live_prove(&lv, T0 + 2000, out, n);
    }
    {
        struct sw_live_peer *p = sw_live_find(&lv, real);
        uint64_t tag = p ? (uint64_t)p->gen << 16 | (uint64_t)(p - lv.peer) : 0;
        tap_ok(p && p->proving, "the real node's record gets its try among 60 fakes");
        sw_live_pong(&lv, T0 + 2010, tag, 0, other);
        tap_ok(!sw_live_proven(&lv, real, r[60].ep) && p->prove_fails == 1,
               "an answer signed by another key is no proof");
        p->prove_next_ms = 0;
        fail_all(&lv, T0 + 2015);
        sw_live_prove(&lv, T0 + 2020, &out[60], 1);
        tag = (uint64_t)p->gen << 16 | (uint64_t)(p - lv.peer);
        sw_live_pong(&lv, T0 + 2030, tag, 0, real);
        tap_ok(sw_live_proven(&lv, real, r[60].ep) && sw_live_trusted(&lv, real) &&
                   !sw_live_proven(&lv, real, "tcp://10.9.9.9:1"),
               "its own key's answer proves it, for that endpoint only");
    }
    for (int i = 0; i < SW_LIVE_MAX; i++)
        busy += lv.peer[i].used && lv.peer[i].proving;
    tap_ok(busy <= SW_LIVE_PROVE_MAX, "never more than %d proofs in flight (%d)",
           SW_LIVE_PROVE_MAX, busy);
    {
        struct sw_live_peer *p;
        int before;
        bool first_wait;
        fail_all(&lv, T0 + 2000);
        p = sw_live_find(&lv, r[0].pk);
        p->prove_fails = 1;
        p->prove_next_ms = T0 + 2500;
        before = fk.nping;
        sw_live_prove(&lv, T0 + 2499, &out[0], 1);
        first_wait = fk.nping == before;
        sw_live_prove(&lv, T0 + 2500, &out[0], 1);
        if (p && p->proving)
            sw_live_pong(&lv, T0 + 3500, fk.tags[fk.nping - 1], -SW_ETIMEDOUT, NULL);
        tap_ok(first_wait && fk.nping == before + 1 && p->prove_fails == 2 &&
                   p->prove_next_ms == T0 + 3500 + 2000,
               "a fake is tried again after a back-off that doubles (fails %d, next try at "
               "+%llu ms)", p ? p->prove_fails : 0,
               (unsigned long long)(p ? p->prove_next_ms - T0 : 0));
        first = sw_live_prove(&lv, T0 + 3501, &out[0], 1);
        tap_ok(first == 0 && SW_LIVE_PROVE_TRIES == 2,
               "a record that failed %d tries is no longer waited for (%d)", SW_LIVE_PROVE_TRIES,
               first);
    }
    /* the fakes' records expire: only the proven node stays in the table */
    fail_all(&lv, T0 + 3600);
    rec(&r[60], 160, 2, 2, T0 + 6900);
    sw_live_scan(&lv, T0 + 7000, &r[60], 1, NULL, 0, PROBE_EVERY, out);
    n = 0;
    for (int i = 0; i < SW_LIVE_MAX; i++)
        n += lv.peer[i].used;
    tap_ok(n == 1 && sw_live_find(&lv, real), "unproven nodes whose record is gone are forgotten "
           "(%d left)", n);
}

static void
attestations(void)
{
    struct sw_live lv;
    struct fake fk;
    uint8_t a[32], b[32];

    setup(&lv, &fk);
    key(a, 1);
    key(b, 2);
    sw_live_attest(&lv, a, 1, 5, "0123456789abcdef");
    sw_live_attest(&lv, a, 1, 5, "0123456789abcdef");
    sw_live_attest(&lv, a, 1, 6, "short");
    tap_ok(lv.natt == 1, "one attestation kept (said twice; a bad hash ignored)");
    tap_ok(sw_live_attested(&lv, b, 1, 5, "0123456789abcdef") &&
               !sw_live_attested(&lv, a, 1, 5, "0123456789abcdef") &&
               !sw_live_attested(&lv, b, 1, 6, "0123456789abcdef") &&
               !sw_live_attested(&lv, b, 2, 5, "0123456789abcdef"),
           "attested by a for b's copy, not for a's own, nor another step or stage");
    tap_ok(sw_live_contradicted(&lv, b, 1, 5, "fedcba9876543210") &&
               !sw_live_contradicted(&lv, b, 1, 5, "0123456789abcdef") &&
               !sw_live_contradicted(&lv, a, 1, 5, "fedcba9876543210"),
           "another hash at that step is contradicted, unless only its source said so");
    for (int i = 0; i < SW_LIVE_ATTEST + 10; i++)
        sw_live_attest(&lv, b, 3, (uint64_t)i, "00000000000000aa");
    tap_ok(lv.natt == SW_LIVE_ATTEST && !sw_live_attested(&lv, NULL, 1, 5, "0123456789abcdef"),
           "the ring is bounded: the oldest make room");
}

/* A busy node's record says its loop is held up to blk ms at a time: its
 * pings wait that much longer, and so may its refreshes (live.h, Busy nodes). */
static void
busy_node(void)
{
    struct sw_live lv;
    struct fake fk;
    struct sw_peer_rec r;
    uint8_t a[32];
    char ep[SW_PROTO_EP_MAX];
    int n1;

    setup(&lv, &fk);
    key(a, 7);
    ep_of(ep, sizeof(ep), 7);
    rec(&r, 7, 1, 1, T0);
    r.blk_ms = 2500;
    scan1(&lv, T0, &r);
    sw_live_ping(&lv, T0, a, ep, 1, 0);
    tap_ok(fk.nping == 1 && fk.ping_timeout == DEAD_MS / 3 + 2500,
           "a ping to a node whose record says blk 2500 waits dead_ms / 3 + 2500 (%llu ms)",
           (unsigned long long)fk.ping_timeout);
    sw_live_pong(&lv, T0 + 3500, fk.ping_tag, -SW_ETIMEDOUT, NULL);
    tap_ok(fk.ndead == 0, "one timeout: not dead");
    scan1(&lv, T0 + 3400, &r);
    tap_ok(fk.nprobe == 1, "probed once a ping failed (probes %d)", fk.nprobe);
    sw_live_probed(&lv, a, false);
    scan1(&lv, T0 + 3000 + 2500, &r);
    tap_ok(fk.ndead == 0, "no refresh for dead_ms + blk: not dead yet (deaths %d)", fk.ndead);
    n1 = scan1(&lv, T0 + 3000 + 2501, &r);
    tap_ok(n1 == 0 && fk.ndead == 1 && strstr(fk.why, "5501 ms"),
           "dead past dead_ms + blk (%s)", fk.why);

    /* the same node with no blk: the plain deadlines */
    setup(&lv, &fk);
    rec(&r, 7, 1, 1, T0);
    scan1(&lv, T0, &r);
    sw_live_ping(&lv, T0, a, ep, 1, 0);
    n1 = scan1(&lv, T0 + 3001, &r);
    tap_ok(fk.ping_timeout == DEAD_MS / 3 && n1 == 0 && fk.ndead == 1,
           "without blk: pings of dead_ms / 3, dead at dead_ms + 1");

    /* a block longer than its record said: its port connects, so it is busy */
    setup(&lv, &fk);
    rec(&r, 7, 1, 1, T0);
    scan1(&lv, T0, &r);
    sw_live_ping(&lv, T0, a, ep, 1, 0);
    sw_live_pong(&lv, T0 + 1000, fk.ping_tag, -SW_ETIMEDOUT, NULL);
    sw_live_connected(&lv, a, T0 + 1001);
    sw_live_probed(&lv, a, false);
    sw_live_ping(&lv, T0 + 1100, a, ep, 1, 0);
    sw_live_pong(&lv, T0 + 2100, fk.ping_tag, -SW_ETIMEDOUT, NULL);
    n1 = scan1(&lv, T0 + 3001, &r);
    tap_ok(fk.ndead == 0 && n1 == 1 && fk.nprobe == 2,
           "two missed pings, a record dead_ms old, but its port connects: busy, not dead, "
           "probed again (deaths %d, probes %d)", fk.ndead, fk.nprobe);
    sw_live_connected(&lv, a, T0 + 3002);
    sw_live_probed(&lv, a, false);
    /* a scan a second, each late one probing (and its port connecting: a
     * hung process still listens) */
    for (uint64_t t = T0 + 4000; t <= T0 + 3000 + SW_LIVE_BUSY_MS; t += 1000) {
        int probes = fk.nprobe;

        n1 = scan1(&lv, t, &r);
        if (fk.nprobe > probes) {
            sw_live_connected(&lv, a, t);
            sw_live_probed(&lv, a, false);
        }
    }
    tap_ok(fk.ndead == 0 && n1 == 1 && fk.nprobe > 5,
           "still not dead at dead_ms + SW_LIVE_BUSY_MS (probes %d)", fk.nprobe);
    n1 = scan1(&lv, T0 + 3001 + SW_LIVE_BUSY_MS, &r);
    tap_ok(fk.ndead == 1 && n1 == 0, "a hung process: dead past dead_ms + SW_LIVE_BUSY_MS (%s)",
           fk.why);
}

int
main(void)
{
    sw_log_level = SW_LOG_NONE;
    tap_plan(70 + 16 + 9);
    dead_by_age();
    probe_refused();
    first_sight();
    left_and_output();
    pings();
    stale_pong();
    bans();
    gone();
    proofs();
    attestations();
    busy_node();
    return tap_done();
}
