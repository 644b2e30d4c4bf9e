/*
 * test_dht.c - the Kademlia core, deterministic and in one process.
 *
 * Part 1 runs 256 nodes over a simulated network: a FIFO of encoded bodies
 * with a fixed one-way latency and a simulated clock; every message goes
 * through the codec.  Nodes join one after another; records are published
 * and every node looks every one up; lookups are measured in rounds (hop
 * depth, and simulated round trips); TTLs, subkeys, paging of large values,
 * refused signatures, a lying responder and a node that leaves are checked.
 * Part 2 drives single nodes by hand: LRU eviction through a ping of the
 * least-recently-seen contact, rate limits, bootstrap failure.
 */
#include "sw.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dht.h"
#include "dht_codec.h"
#include "tap.h"

#define N 256
#define LAT 10 /* ms, one way */
#define N_RECORDS 32

struct node {
    struct sw_dht *d;
    uint8_t pk[32], sk[64], id[32];
    char ep[64];
    bool up, dead, evil;
    uint64_t wake;
};

struct pkt {
    int from, to, type;
    uint8_t *body;
    size_t len;
    uint64_t at;
};

static struct node nodes[N + 2];
static int n_nodes;
static struct pkt *q;
static size_t q_head, q_len, q_cap;
static uint64_t now = 1000000;
static int pending;
static uint64_t n_delivered;

/* ---- the simulated network --------------------------------------------- */

static int
node_of(const struct sw_dht_contact *to)
{
    int i;

    if (to->ep[0])
        return sscanf(to->ep, "tcp://node%d:7400", &i) == 1 && i >= 0 && i < n_nodes ? i : -1;
    for (i = 0; i < n_nodes; i++)
        if (memcmp(nodes[i].pk, to->pk, 32) == 0)
            return i;
    return -1;
}

static void
enqueue(int from, int to, int type, uint8_t *body, size_t len)
{
    if (q_len == q_cap) {
        if (q_head > 0) {
            memmove(q, q + q_head, (q_len - q_head) * sizeof(*q));
            q_len -= q_head;
            q_head = 0;
        }
        if (q_len == q_cap) {
            q_cap = q_cap ? 2 * q_cap : 4096;
            q = realloc(q, q_cap * sizeof(*q));
            if (!q)
                abort();
        }
    }
    q[q_len++] = (struct pkt){from, to, type, body, len, now + LAT};
}

static void
on_send(void *arg, const struct sw_dht_contact *to, const struct sw_dht_msg *m)
{
    int from = (int)(intptr_t)arg, dst = node_of(to);
    uint8_t *body;
    size_t len;

    if (sw_dht_msg_encode(m, &body, &len) < 0)
        abort();
    if (dst < 0) {
        sw_free(body);
        return;
    }
    enqueue(from, dst, m->type, body, len);
}

static void
refresh_wake(int i)
{
    nodes[i].wake = sw_dht_next_wake(nodes[i].d);
}

/* The evil node answers FIND_VALUE with a forged record for the key. */
static void
evil_answer(int self, const struct pkt *p)
{
    struct sw_dht_msg req, m = {.type = SW_DHT_VALUES};
    struct sw_dht_record rec = {.seq = 99, .ttl_s = 100, .val = (const uint8_t *)"forged",
                                .val_len = 6};
    uint8_t *body;
    size_t len;

    if (sw_dht_msg_decode(&req, p->type, p->body, p->len) < 0)
        abort();
    memcpy(rec.key, req.target, 32);
    memcpy(rec.pub, nodes[self].pk, 32);
    memset(rec.sig, 0x5a, 64);
    m.tid = req.tid;
    strcpy(m.ep, nodes[self].ep);
    m.recs = &rec;
    m.n_recs = 1;
    sw_dht_msg_release(&req);
    if (sw_dht_msg_encode(&m, &body, &len) < 0)
        abort();
    now -= LAT; /* keep the FIFO ordered: sent now, arrives one latency later */
    enqueue(self, p->from, SW_DHT_VALUES, body, len);
    now += LAT;
}

/* Runs until t_end or until no operation is pending (when stop_when_idle). */
static void
sim_run(uint64_t t_end, bool stop_when_idle)
{
    for (;;) {
        uint64_t next = UINT64_MAX;

        if (stop_when_idle && pending == 0)
            return;
        if (q_head < q_len)
            next = q[q_head].at;
        for (int i = 0; i < n_nodes; i++)
            if (nodes[i].up && !nodes[i].dead && nodes[i].wake < next)
                next = nodes[i].wake;
        if (next > t_end) {
            now = SW_MAX(now, t_end);
            return;
        }
        now = SW_MAX(now, next);
        while (q_head < q_len && q[q_head].at <= now) {
            struct pkt p = q[q_head++];
            struct node *n = &nodes[p.to];

            if (n->up && !n->dead) {
                if (n->evil && p.type == SW_DHT_FIND_VALUE) {
                    evil_answer(p.to, &p);
                } else {
                    (void)sw_dht_input_body(n->d, nodes[p.from].pk, p.type, p.body, p.len, now);
                    refresh_wake(p.to);
                }
                n_delivered++;
            }
            sw_free(p.body);
        }
        for (int i = 0; i < n_nodes; i++)
            if (nodes[i].up && !nodes[i].dead && nodes[i].wake <= now)
                nodes[i].wake = sw_dht_tick(nodes[i].d, now);
    }
}

static void
sim_params(struct sw_dht_params *p, int i)
{
    sw_dht_params_default(p);
    p->seed = 1000 + (uint64_t)i;
    p->rpc_timeout_ms = 1000;
    p->questionable_ms = 60 * 1000;
    p->refresh_ms = 10 * 60 * 1000;
    p->sweep_ms = 5000;
}

static void
node_create(int i)
{
    struct sw_dht_params p;
    uint8_t seed[32] = {0};

    memcpy(seed, &i, sizeof(i));
    seed[31] = 0xd7;
    crypto_sign_seed_keypair(nodes[i].pk, nodes[i].sk, seed);
    sw_dht_id_of(nodes[i].id, nodes[i].pk);
    snprintf(nodes[i].ep, sizeof(nodes[i].ep), "tcp://node%d:7400", i);
    sim_params(&p, i);
    if (sw_dht_new(&nodes[i].d, nodes[i].pk, nodes[i].ep, &p, on_send, (void *)(intptr_t)i) < 0)
        abort();
    nodes[i].up = true;
    nodes[i].wake = UINT64_MAX;
}

/* ---- callbacks ---------------------------------------------------------- */

struct get_res {
    int status;
    bool done;
    size_t n;
    struct sw_dht_record recs[48];
    uint8_t vals[48][64];
    struct sw_dht_lookup_info info;
};

static void
get_cb(void *arg, int status, const struct sw_dht_record *recs, size_t n,
       const struct sw_dht_lookup_info *info)
{
    struct get_res *g = arg;

    g->status = status;
    g->done = true;
    g->n = n;
    g->info = *info;
    for (size_t i = 0; i < n && i < SW_ARRAY_SIZE(g->recs); i++) {
        g->recs[i] = recs[i];
        memcpy(g->vals[i], recs[i].val, SW_MIN(recs[i].val_len, sizeof(g->vals[i])));
        g->recs[i].val = g->vals[i];
    }
    pending--;
}

struct put_res {
    int status;
    bool done;
    unsigned n;
};

static void
put_cb(void *arg, int status, unsigned n, const struct sw_dht_lookup_info *info)
{
    struct put_res *r = arg;

    r->status = status;
    r->n = n;
    r->done = true;
    pending--;
}

struct join_res {
    int status;
    bool done;
    size_t n;
};

static void
join_cb(void *arg, int status, const struct sw_dht_contact *c, size_t n,
        const struct sw_dht_lookup_info *info)
{
    struct join_res *j = arg;

    j->status = status;
    j->n = n;
    j->done = true;
    pending--;
}

/* ---- helpers ------------------------------------------------------------ */

static void
make_key(uint8_t key[32], const char *what, int j)
{
    char s[64];

    snprintf(s, sizeof(s), "%s/%d", what, j);
    crypto_generichash(key, 32, (const uint8_t *)s, strlen(s), NULL, 0);
}

static void
make_record(struct sw_dht_record *r, const uint8_t key[32], int publisher, uint64_t seq,
            uint32_t ttl, const char *val)
{
    memset(r, 0, sizeof(*r));
    memcpy(r->key, key, 32);
    r->seq = seq;
    r->ttl_s = ttl;
    r->val = (const uint8_t *)val;
    r->val_len = strlen(val);
    sw_dht_record_sign(r, nodes[publisher].sk);
}

static int
put_sync(int publisher, const struct sw_dht_record *r, struct put_res *res)
{
    int err;

    memset(res, 0, sizeof(*res));
    pending++;
    err = sw_dht_put(nodes[publisher].d, r, now, put_cb, res);
    if (err < 0) {
        pending--;
        return err;
    }
    refresh_wake(publisher);
    sim_run(now + 60000, true);
    return res->status;
}

static void
get_start(int i, const uint8_t key[32], struct get_res *g)
{
    memset(g, 0, sizeof(*g));
    pending++;
    if (sw_dht_get(nodes[i].d, key, now, get_cb, g) < 0)
        abort();
    refresh_wake(i);
}

static int
cmp_u(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

    return x < y ? -1 : x > y;
}

static const struct sw_dht_record *
find_pub(const struct get_res *g, int publisher)
{
    for (size_t i = 0; i < g->n; i++)
        if (memcmp(g->recs[i].pub, nodes[publisher].pk, 32) == 0)
            return &g->recs[i];
    return NULL;
}

/* ---- part 1: the swarm -------------------------------------------------- */

static uint64_t rng = 7;

static unsigned
rnd(unsigned n)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)((rng >> 33) % n);
}

static void
test_join(void)
{
    static struct join_res jr[N];
    size_t min_c = SIZE_MAX, max_c = 0, sum = 0;
    int ok = 0;

    n_nodes = N;
    node_create(0);
    for (int i = 1; i < N; i++) {
        const char *boot[2];
        int b1 = (int)rnd((unsigned)i), b2 = (int)rnd((unsigned)i);

        node_create(i);
        boot[0] = nodes[b1].ep;
        boot[1] = nodes[b2].ep;
        pending++;
        if (sw_dht_bootstrap(nodes[i].d, boot, 2, now, join_cb, &jr[i]) < 0)
            abort();
        refresh_wake(i);
        sim_run(now + 30000, true);
        sim_run(now + 500, false); /* let the bucket refreshes run */
    }
    sim_run(now + 5000, false);
    for (int i = 1; i < N; i++)
        ok += jr[i].done && jr[i].status == 0 && jr[i].n > 0;
    for (int i = 0; i < N; i++) {
        size_t c = sw_dht_count_contacts(nodes[i].d);

        min_c = SW_MIN(min_c, c);
        max_c = SW_MAX(max_c, c);
        sum += c;
    }
    tap_ok(ok == N - 1, "%d of %d nodes joined through bootstrap endpoints", ok, N - 1);
    tap_diag("routing table sizes: min %zu mean %.1f max %zu", min_c, (double)sum / N, max_c);
    tap_ok(min_c >= 20, "every routing table holds at least k = 20 contacts (min %zu)", min_c);
}

static void
test_publish_and_find(void)
{
    static struct get_res g[N];
    static unsigned rounds[N * N_RECORDS], rtts[N * N_RECORDS];
    struct put_res pr[N_RECORDS];
    struct sw_dht_record r;
    char vals[N_RECORDS][32];
    unsigned nr = 0, found = 0, put_ok = 0, max_r, max_t, bound;
    uint64_t msgs0 = n_delivered;
    int bad_put = -1;

    /* all records published at once by different nodes */
    for (int j = 0; j < N_RECORDS; j++) {
        uint8_t key[32];
        int pub = (j * 8 + 3) % N;

        make_key(key, "stage", j);
        snprintf(vals[j], sizeof(vals[j]), "endpoint-of-%d", pub);
        make_record(&r, key, pub, 1, 3600, vals[j]);
        memset(&pr[j], 0, sizeof(pr[j]));
        pending++;
        if (sw_dht_put(nodes[pub].d, &r, now, put_cb, &pr[j]) < 0)
            abort();
        refresh_wake(pub);
    }
    sim_run(now + 60000, true);
    for (int j = 0; j < N_RECORDS; j++) {
        if (pr[j].done && pr[j].status == 0 && pr[j].n == 20)
            put_ok++;
        else if (bad_put < 0)
            bad_put = j;
    }
    tap_ok(put_ok == N_RECORDS, "%u of %d puts stored on k = 20 nodes (first bad: %d n %u)",
           put_ok, N_RECORDS, bad_put, bad_put >= 0 ? pr[bad_put].n : 0);

    /* every node looks every record up (one record at a time, all nodes at once) */
    for (int j = 0; j < N_RECORDS; j++) {
        uint8_t key[32];
        int pub = (j * 8 + 3) % N;

        make_key(key, "stage", j);
        for (int i = 0; i < N; i++)
            get_start(i, key, &g[i]);
        sim_run(now + 60000, true);
        for (int i = 0; i < N; i++) {
            const struct sw_dht_record *rec = find_pub(&g[i], pub);

            if (g[i].done && g[i].status == 0 && g[i].n == 1 && rec && rec->seq == 1 &&
                rec->val_len == strlen(vals[j]) && memcmp(rec->val, vals[j], rec->val_len) == 0)
                found++;
            if (!(i == pub)) { /* the publisher may hold it: no lookup rounds needed */
                rounds[nr] = g[i].info.rounds;
                rtts[nr] = (unsigned)((g[i].info.elapsed_ms + 2 * LAT - 1) / (2 * LAT));
                nr++;
            }
        }
    }
    tap_ok(found == N * N_RECORDS, "every node found every record: %u of %d lookups", found,
           N * N_RECORDS);
    qsort(rounds, nr, sizeof(rounds[0]), cmp_u);
    qsort(rtts, nr, sizeof(rtts[0]), cmp_u);
    max_r = rounds[nr - 1];
    max_t = rtts[nr - 1];
    bound = (unsigned)ceil(log2(N)) + 2;
    tap_diag("lookup rounds (hop depth) over %u gets: median %u max %u; simulated round trips: "
             "median %u max %u; %.1f messages per get",
             nr, rounds[nr / 2], max_r, rtts[nr / 2], max_t,
             (double)(n_delivered - msgs0) / (N * N_RECORDS));
    tap_ok(max_r <= bound, "lookups take at most ceil(log2 N) + 2 = %u rounds (max %u)", bound,
           max_r);
    tap_ok(max_t <= bound, "and at most %u round trips of simulated time (max %u)", bound, max_t);
}

static void
test_ttl(void)
{
    struct sw_dht_record ra, rb;
    struct put_res pr;
    static struct get_res ga[16], gb[16];
    uint8_t ka[32], kb[32];
    uint64_t t0 = now;
    int gone = 0, kept = 0, ttl_ok = 0;

    make_key(ka, "ttl", 1);
    make_key(kb, "ttl", 2);
    make_record(&ra, ka, 10, 1, 120, "short-lived");
    make_record(&rb, kb, 11, 1, 120, "refreshed");
    tap_ok(put_sync(10, &ra, &pr) == 0 && put_sync(11, &rb, &pr) == 0,
           "two records with ttl 120 s put");
    sim_run(t0 + 60000, false);
    tap_ok(put_sync(11, &rb, &pr) == 0 && pr.n == 20,
           "the second is refreshed by its publisher at +60 s (stored on %u nodes)", pr.n);
    sim_run(t0 + 150000, false);
    for (int i = 0; i < 16; i++) {
        int who = (int)rnd(N);

        get_start(who, ka, &ga[i]);
        get_start(who, kb, &gb[i]);
    }
    sim_run(now + 60000, true);
    for (int i = 0; i < 16; i++) {
        gone += ga[i].done && ga[i].status == 0 && ga[i].n == 0;
        kept += gb[i].done && gb[i].n == 1;
        /* refreshed at +60 s (+ the put's lookup) with ttl 120: about 30 s left */
        ttl_ok += gb[i].n == 1 && gb[i].recs[0].ttl_s >= 28 && gb[i].recs[0].ttl_s <= 31;
    }
    tap_ok(gone == 16, "at +150 s the unrefreshed record is gone from the network (%d of 16)",
           gone);
    tap_ok(kept == 16, "the refreshed one is still found (%d of 16)", kept);
    tap_ok(ttl_ok == 16, "with its remaining ttl, about 30 s (%d of 16, e.g. %u)", ttl_ok,
           gb[0].recs[0].ttl_s);
}

static void
test_subkeys(void)
{
    struct sw_dht_record r1, r2, r3, rold;
    struct put_res pr;
    struct get_res g;
    const struct sw_dht_record *a, *b;
    uint8_t key[32];
    int err;

    make_key(key, "subkeys", 0);
    make_record(&r1, key, 20, 1, 600, "a-v1");
    make_record(&r2, key, 21, 1, 600, "b-v1");
    tap_ok(put_sync(20, &r1, &pr) == 0 && put_sync(21, &r2, &pr) == 0,
           "two publishers put under one key");
    get_start(200, key, &g);
    sim_run(now + 60000, true);
    a = find_pub(&g, 20);
    b = find_pub(&g, 21);
    tap_ok(g.n == 2 && a && b && a->val_len == 4 && memcmp(a->val, "a-v1", 4) == 0 &&
               memcmp(b->val, "b-v1", 4) == 0,
           "get returns both publishers' records (%zu)", g.n);
    make_record(&r3, key, 20, 2, 600, "a-v2");
    tap_ok(put_sync(20, &r3, &pr) == 0, "the first publisher puts version 2");
    get_start(201, key, &g);
    sim_run(now + 60000, true);
    a = find_pub(&g, 20);
    b = find_pub(&g, 21);
    tap_ok(g.n == 2 && a && a->seq == 2 && memcmp(a->val, "a-v2", 4) == 0 && b && b->seq == 1,
           "the newer version replaced the older, the other publisher's is kept");
    make_record(&rold, key, 20, 1, 600, "a-v1");
    err = put_sync(20, &rold, &pr);
    tap_ok(err == -SW_EREPLAY && pr.n == 0, "putting version 1 again is refused as stale (%s)",
           sw_err_name(err));
    get_start(202, key, &g);
    sim_run(now + 60000, true);
    a = find_pub(&g, 20);
    tap_ok(a && a->seq == 2, "and version 2 is still what is found");
}

static void
test_paging(void)
{
    static char big[2000 + 1];
    struct put_res pr[40];
    struct sw_dht_record r;
    struct get_res *g = sw_calloc(1, sizeof(*g));
    uint8_t key[32];
    int ok = 0;

    memset(big, 'x', sizeof(big) - 1);
    make_key(key, "paging", 0);
    for (int p = 0; p < 40; p++) {
        make_record(&r, key, 50 + p, 1, 600, big);
        memset(&pr[p], 0, sizeof(pr[p]));
        pending++;
        if (sw_dht_put(nodes[50 + p].d, &r, now, put_cb, &pr[p]) < 0)
            abort();
        refresh_wake(50 + p);
    }
    sim_run(now + 60000, true);
    for (int p = 0; p < 40; p++)
        ok += pr[p].status == 0;
    tap_ok(ok == 40, "40 publishers put 2000-byte values under one key");
    get_start(150, key, g);
    sim_run(now + 60000, true);
    tap_ok(g->n == 40 && g->recs[0].val_len == 2000,
           "get collects all 40 (80 KB, several VALUES pages) (%zu)", g->n);
    sw_free(g);
}

static void
test_bad_signatures(void)
{
    struct sw_dht_record r;
    struct sw_dht_stats before, after;
    struct sw_dht_msg m = {.type = SW_DHT_STORE, .tid = 12345};
    struct get_res g;
    uint8_t key[32];
    int target = 30, sender = 31, evil = 40, asker = 120;

    make_key(key, "forged", 0);
    make_record(&r, key, 5, 1, 600, "genuine");
    r.seq = 2; /* signed for seq 1 */
    tap_ok(sw_dht_put(nodes[5].d, &r, now, put_cb, NULL) == -SW_ESIG,
           "put of a record with a bad signature is refused at once");

    sw_dht_get_stats(nodes[target].d, &before);
    m.recs = &r;
    m.n_recs = 1;
    strcpy(m.ep, nodes[sender].ep);
    (void)sw_dht_input(nodes[target].d, nodes[sender].pk, &m, now);
    refresh_wake(target);
    sw_dht_get_stats(nodes[target].d, &after);
    tap_ok(after.bad_records == before.bad_records + 1 &&
               after.store_refused == before.store_refused + 1 && after.stored == before.stored,
           "a STORE of a forged record is refused and counted");
    sim_run(now + 1000, false);

    /* a responder that answers FIND_VALUE with a forged record */
    nodes[evil].evil = true;
    sw_dht_get_stats(nodes[asker].d, &before);
    get_start(asker, nodes[evil].id, &g); /* the evil node is the closest to this key */
    sim_run(now + 60000, true);
    sw_dht_get_stats(nodes[asker].d, &after);
    tap_ok(g.done && g.n == 0 && after.bad_records > before.bad_records,
           "a forged record in a VALUES reply is dropped (%zu records, %llu bad)", g.n,
           (unsigned long long)(after.bad_records - before.bad_records));
    nodes[evil].evil = false;
}

static void
test_leave(void)
{
    int gone = 77, before = 0, after = 0, found = 0;
    static struct get_res g[8];
    uint8_t key[32];
    uint64_t t0 = now;

    for (int i = 0; i < N; i++)
        before += i != gone && sw_dht_has_contact(nodes[i].d, nodes[gone].id);
    nodes[gone].dead = true;
    /* questionable after 60 s, then two unanswered pings of 1 s each */
    sim_run(t0 + 3 * 60 * 1000, false);
    for (int i = 0; i < N; i++)
        after += i != gone && sw_dht_has_contact(nodes[i].d, nodes[gone].id);
    tap_ok(before > 20 && after == 0,
           "a node that stops answering drops out of every routing table: in %d before, %d after "
           "3 minutes", before, after);
    make_key(key, "stage", 3);
    for (int i = 0; i < 8; i++)
        get_start((int)rnd(N - 100) + 100, key, &g[i]);
    sim_run(now + 60000, true);
    for (int i = 0; i < 8; i++)
        found += g[i].n == 1;
    tap_ok(found == 8, "lookups still succeed after it left (%d of 8)", found);
}

static void
test_boot_failure(void)
{
    struct join_res jr = {0};
    const char *boot[1] = {"tcp://node9999:7400"};
    int i = N;

    n_nodes = N + 1;
    node_create(i);
    pending++;
    tap_ok(sw_dht_bootstrap(nodes[i].d, boot, 1, now, join_cb, &jr) == 0, "bootstrap started");
    refresh_wake(i);
    sim_run(now + 10000, true);
    tap_ok(jr.done && jr.status == -SW_ETIMEDOUT,
           "joining through an endpoint that never answers fails with ETIMEDOUT (%s)",
           sw_err_name(jr.status));
    /* a node whose first join failed (or whose every contact timed out)
     * joins again: the failed join left it booting, and every later
     * sw_dht_bootstrap answered EAGAIN */
    memset(&jr, 0, sizeof(jr));
    boot[0] = nodes[0].ep;
    pending++;
    tap_ok(sw_dht_bootstrap(nodes[i].d, boot, 1, now, join_cb, &jr) == 0,
           "after the failed join, joining again through a live node starts");
    refresh_wake(i);
    sim_run(now + 10000, true);
    tap_ok(jr.done && jr.status == 0 && sw_dht_count_contacts(nodes[i].d) > 0,
           "and succeeds (%s, %zu contacts)", sw_err_name(jr.status),
           sw_dht_count_contacts(nodes[i].d));
    nodes[i].up = false;
}

static void
sim_teardown(void)
{
    for (int i = 0; i < n_nodes; i++)
        sw_dht_free(nodes[i].d);
    for (size_t i = q_head; i < q_len; i++)
        sw_free(q[i].body);
    free(q);
}

/* ---- part 2: single nodes by hand --------------------------------------- */

struct capture {
    int n;
    struct sw_dht_msg last[64];
    struct sw_dht_contact to[64];
    int counts[8];
};

static void
cap_send(void *arg, const struct sw_dht_contact *to, const struct sw_dht_msg *m)
{
    struct capture *c = arg;

    c->counts[m->type - SW_DHT_TYPE_MIN]++;
    c->last[c->n % 64] = *m;
    c->last[c->n % 64].nodes = NULL;
    c->last[c->n % 64].recs = NULL;
    c->to[c->n % 64] = *to;
    c->n++;
}

static void
test_lru_eviction(void)
{
    static struct capture cap;
    struct sw_dht_params p;
    struct sw_dht *d;
    uint8_t pk[32], sk[64], seed[32] = {1};
    struct sw_dht_contact c[21];
    struct sw_dht_msg m = {.type = SW_DHT_PING, .tid = 1};
    struct sw_dht_stats st;
    int n = 0;
    uint64_t t = 5000;

    crypto_sign_seed_keypair(pk, sk, seed);
    sw_dht_params_default(&p);
    p.seed = 9;
    p.questionable_ms = 60000;
    p.rpc_timeout_ms = 1000;
    if (sw_dht_new(&d, pk, "tcp://self:1", &p, cap_send, &cap) < 0)
        abort();
    /* 21 contacts in bucket 0 (first bit differs from ours) */
    for (int i = 2; n < 21; i++) {
        uint8_t s[32] = {0}, csk[64];

        memcpy(s, &i, sizeof(i));
        memset(&c[n], 0, sizeof(c[n]));
        crypto_sign_seed_keypair(c[n].pk, csk, s);
        sw_dht_id_of(c[n].id, c[n].pk);
        if (sw_dht_common_bits(sw_dht_id(d), c[n].id) != 0)
            continue;
        snprintf(c[n].ep, sizeof(c[n].ep), "tcp://peer%d:1", n);
        n++;
    }
    for (int i = 0; i < 20; i++)
        (void)sw_dht_add_contact(d, &c[i], t + (uint64_t)i);
    tap_ok(sw_dht_count_contacts(d) == 20, "bucket 0 filled with k = 20 contacts");

    /* a newcomer while the oldest is fresh: kept as a replacement, no ping */
    strcpy(m.ep, c[20].ep);
    (void)sw_dht_input(d, c[20].pk, &m, t + 100);
    tap_ok(!sw_dht_has_contact(d, c[20].id) && cap.counts[0] == 0,
           "a newcomer to a full bucket of fresh contacts waits in the replacement cache");

    /* later: the least recently seen is questionable and gets pinged; it answers */
    t += 61000;
    cap.n = 0;
    (void)sw_dht_input(d, c[20].pk, &m, t);
    tap_ok(cap.n == 2 && cap.last[0].type == SW_DHT_PING &&
               memcmp(cap.to[0].pk, c[0].pk, 32) == 0 && cap.last[1].type == SW_DHT_PONG,
           "the least-recently-seen contact is pinged (and the newcomer answered)");
    {
        struct sw_dht_msg pong = {.type = SW_DHT_PONG, .tid = cap.last[0].tid};

        strcpy(pong.ep, c[0].ep);
        (void)sw_dht_input(d, c[0].pk, &pong, t + 20);
    }
    tap_ok(sw_dht_has_contact(d, c[0].id) && !sw_dht_has_contact(d, c[20].id),
           "it answered: it stays, the newcomer does not get in");

    /* next newcomer message: the next oldest (c[1]) is pinged and never answers */
    cap.n = 0;
    (void)sw_dht_input(d, c[20].pk, &m, t + 40);
    tap_ok(cap.n == 2 && cap.last[0].type == SW_DHT_PING && memcmp(cap.to[0].pk, c[1].pk, 32) == 0,
           "the next oldest is pinged");
    /* answer the pings of every other questionable head so that only c[1] fails */
    for (uint64_t tt = t + 100; tt < t + 4000; tt += 100) {
        int before = cap.n;

        sw_dht_tick(d, tt);
        for (int k = before; k < cap.n; k++) {
            if (cap.last[k % 64].type == SW_DHT_PING &&
                memcmp(cap.to[k % 64].pk, c[1].pk, 32) != 0) {
                struct sw_dht_msg pong = {.type = SW_DHT_PONG, .tid = cap.last[k % 64].tid};

                strcpy(pong.ep, cap.to[k % 64].ep);
                (void)sw_dht_input(d, cap.to[k % 64].pk, &pong, tt);
            }
        }
    }
    sw_dht_get_stats(d, &st);
    tap_ok(!sw_dht_has_contact(d, c[1].id) && sw_dht_has_contact(d, c[20].id) && st.evicted == 1,
           "after two unanswered pings it is evicted and the newcomer takes its place");
    tap_ok(sw_dht_count_contacts(d) == 20, "the bucket still holds 20");
    sw_dht_free(d);
}

static void
test_rate_limit(void)
{
    static struct capture cap;
    struct sw_dht_params p;
    struct sw_dht *d;
    uint8_t pk[32], sk[64], seed[32] = {2};
    uint8_t peer[60][32];
    struct sw_dht_msg m = {.type = SW_DHT_PING, .tid = 1};
    struct sw_dht_stats st;
    uint64_t t = 1000;

    crypto_sign_seed_keypair(pk, sk, seed);
    for (int i = 0; i < 60; i++) {
        uint8_t s[32] = {3, (uint8_t)i};

        crypto_sign_seed_keypair(peer[i], sk, s);
    }
    sw_dht_params_default(&p);
    p.seed = 11;
    p.rl_rate = 10;
    p.rl_burst = 20;
    p.rl_global_rate = 100;
    p.rl_global_burst = 60;
    if (sw_dht_new(&d, pk, "tcp://self:1", &p, cap_send, &cap) < 0)
        abort();
    for (int i = 0; i < 100; i++)
        (void)sw_dht_input(d, peer[0], &m, t);
    sw_dht_get_stats(d, &st);
    tap_ok(cap.counts[1] == 20 && st.drop_ratelimit == 80,
           "100 pings at once from one peer: 20 (the burst) answered, 80 dropped and counted "
           "(%d, %llu)", cap.counts[1], (unsigned long long)st.drop_ratelimit);
    t += 1000;
    for (int i = 0; i < 20; i++)
        (void)sw_dht_input(d, peer[0], &m, t);
    sw_dht_get_stats(d, &st);
    tap_ok(cap.counts[1] == 30 && st.drop_ratelimit == 90,
           "one second later 10 more (the rate) are answered (%d)", cap.counts[1]);
    for (int i = 0; i < 5; i++)
        (void)sw_dht_input(d, peer[1], &m, t);
    tap_ok(cap.counts[1] == 35, "another peer is not affected (%d)", cap.counts[1]);
    /* global: 60 - 30 - 5 tokens left = 25, plus none refilled at the same t */
    for (int i = 2; i < 60; i++)
        (void)sw_dht_input(d, peer[i], &m, t);
    sw_dht_get_stats(d, &st);
    tap_ok(cap.counts[1] < 35 + 58 && st.drop_ratelimit > 90,
           "the global limit caps many peers together (%d answered of %d)", cap.counts[1] - 35, 58);
    sw_dht_free(d);
}

static void
test_local_and_misc(void)
{
    static struct capture cap;
    struct sw_dht *d;
    uint8_t pk[32], sk[64], seed[32] = {4};
    struct sw_dht_record r = {.seq = 1, .ttl_s = 10, .val = (const uint8_t *)"x", .val_len = 1};
    struct sw_dht_msg bogus = {.type = SW_DHT_PONG, .tid = 42};
    struct sw_dht_stats st;
    struct put_res pr = {0};
    struct get_res *g = sw_calloc(1, sizeof(*g));
    uint8_t key[32] = {7};
    uint64_t w;

    crypto_sign_seed_keypair(pk, sk, seed);
    if (sw_dht_new(&d, pk, NULL, NULL, cap_send, &cap) < 0)
        abort();
    memcpy(r.key, key, 32);
    sw_dht_record_sign(&r, sk);
    pending = 2;
    tap_ok(sw_dht_put(d, &r, 100, put_cb, &pr) == 0 && !pr.done,
           "a lone node accepts a put; the callback is deferred");
    w = sw_dht_next_wake(d);
    tap_ok(w == 100, "and asks to be woken at once (%llu)", (unsigned long long)w);
    sw_dht_tick(d, 100);
    tap_ok(pr.done && pr.status == 0 && pr.n == 1, "a lone node stores its own record");
    tap_ok(sw_dht_get(d, key, 200, get_cb, g) == 0, "get started");
    sw_dht_tick(d, 200);
    tap_ok(g->done && g->n == 1 && g->recs[0].ttl_s == 10, "and finds it locally with its ttl");
    tap_ok(sw_dht_count_records(d, 10099) == 1 && sw_dht_count_records(d, 10100) == 0,
           "it expires exactly ttl after the put");
    (void)sw_dht_input(d, pk + 0, &bogus, 300);
    bogus.tid = 43;
    (void)sw_dht_input(d, pk, &bogus, 300);
    {
        uint8_t other[32] = {9};

        (void)sw_dht_input(d, other, &bogus, 300);
        (void)sw_dht_input_body(d, other, SW_DHT_PING, "\x81\xa3tid\xc1", 6, 300);
    }
    sw_dht_get_stats(d, &st);
    tap_ok(st.drop_unsolicited == 1 && st.drop_malformed == 3,
           "replies nobody asked for and malformed bodies are dropped and counted (%llu, %llu)",
           (unsigned long long)st.drop_unsolicited, (unsigned long long)st.drop_malformed);
    sw_dht_free(d);
    sw_free(g);
}

int
main(void)
{
    if (sodium_init() < 0)
        return tap_skip_all("libsodium unavailable");
    sw_log_level = SW_LOG_ERROR;
    test_local_and_misc();
    test_lru_eviction();
    test_rate_limit();
    test_join();
    test_publish_and_find();
    test_ttl();
    test_subkeys();
    test_paging();
    test_bad_signatures();
    test_leave();
    test_boot_failure();
    sim_teardown();
    return tap_done();
}
