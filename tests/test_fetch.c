/*
 * test_fetch - the state-transfer client (peers/fetch.h) against fake
 * nodes: a fake ops->request records (and decodes) every STATE_GET body it
 * is given, and the test answers those requests with STATE bodies built as
 * a node builds them (peers/recover.c, state_body), in whatever order and
 * with whatever step or defect a case needs.
 *
 * Pieces are kept small (f->chunk = 4 floats, slabs of 10 or 7 floats) so
 * that a slab is several pieces and its last one is short.  Answer orders
 * are shuffled with a fixed-seed splitmix64: the run is the same every time.
 */
#include "sw.h"

#include <math.h>
#include <string.h>

#include "fetch.h"
#include "rng.h"
#include "tap.h"

#define T0 100000ull
#define MAXREQ 256
#define SENTINEL -12345.0f

struct req {
    char ep[SW_PROTO_EP_MAX];
    uint64_t timeout_ms, tag;
    int retries;
    bool body_ok, has_snap, answered;
    uint64_t stage, which, off, n, snap;
};

/* the key every answer is from (m.hdr.sender) */
static uint8_t sender[32];

struct fake {
    struct req r[MAXREQ];
    int n;
    int rc; /* what ops->request returns */
};

static int
fake_request(void *arg, const char *ep, const void *body, size_t len, uint64_t timeout_ms,
             int retries, uint64_t tag)
{
    static const char *const keys[] = {"stage", "which", "off", "n", "snap", NULL};
    struct fake *fk = arg;
    struct req *q;
    msgpack_unpacked u;

    if (fk->rc < 0)
        return fk->rc;
    SW_ASSERT(fk->n < MAXREQ);
    q = &fk->r[fk->n++];
    memset(q, 0, sizeof(*q));
    snprintf(q->ep, sizeof(q->ep), "%s", ep);
    q->timeout_ms = timeout_ms;
    q->retries = retries;
    q->tag = tag;
    if (sw_proto_open(body, len, &u, keys)) {
        q->has_snap = sw_proto_get(&u.data, "snap") != NULL;
        q->body_ok = sw_proto_get_u64(&u.data, "stage", &q->stage) == 0 &&
                     sw_proto_get_u64(&u.data, "which", &q->which) == 0 &&
                     sw_proto_get_u64(&u.data, "off", &q->off) == 0 &&
                     sw_proto_get_u64(&u.data, "n", &q->n) == 0 &&
                     (!q->has_snap || sw_proto_get_u64(&u.data, "snap", &q->snap) == 0) &&
                     u.data.via.map.size == (q->has_snap ? 5u : 4u);
        msgpack_unpacked_destroy(&u);
    }
    return 0;
}

static const struct sw_fetch_ops ops = {fake_request};

/* A node answering STATE_GET: slabs [4][numel] of floats. */
struct node {
    const char *ep;
    uint64_t step, t;
    double lr_mult, norm, normc;
    size_t numel;
    float data[4][16];
};

static void
node_fill(struct node *nd, const char *ep, size_t numel, uint64_t step, float base)
{
    SW_ASSERT(numel <= 16);
    memset(nd, 0, sizeof(*nd));
    nd->ep = ep;
    nd->numel = numel;
    nd->step = step;
    nd->t = step + 3;
    nd->lr_mult = 0.5;
    nd->norm = 1.25;
    nd->normc = 0.75;
    for (int w = 0; w < 4; w++)
        for (size_t i = 0; i < numel; i++)
            nd->data[w][i] = base + 100.0f * (float)w + 0.25f * (float)i;
}

/* A STATE answer, one field at a time, so that a case can spoil one. */
struct ans {
    int64_t err;
    uint64_t step, t, numel, off, n;
    double lr_mult, norm, normc;
    bool with_normc, drop_numel;
    const char *extra_key;
    const float *payload;
    size_t payload_len; /* bytes */
};

/* The answer nd gives to q (as recover.c's state_body packs it). */
static void
ans_good(struct ans *a, const struct node *nd, const struct req *q)
{
    memset(a, 0, sizeof(*a));
    a->step = nd->step;
    a->t = nd->t;
    a->lr_mult = nd->lr_mult;
    a->norm = nd->norm;
    a->normc = nd->normc;
    a->with_normc = q->has_snap;
    a->numel = nd->numel;
    a->off = q->off;
    a->n = q->n;
    a->payload = &nd->data[q->which][q->off];
    a->payload_len = q->n * sizeof(float);
}

static int
deliver(struct sw_fetch *f, uint64_t now, struct req *q, const struct ans *a)
{
    uint8_t body[512];
    struct sw_wire_buf b;
    msgpack_packer pk;
    struct sw_transport_msg m;

    sw_wire_buf_init(&b, body, sizeof(body));
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, 8 + a->with_normc + (a->extra_key != NULL) - a->drop_numel);
    sw_proto_pack_key(&pk, "err");
    msgpack_pack_int64(&pk, a->err);
    sw_proto_pack_key(&pk, "step");
    msgpack_pack_uint64(&pk, a->step);
    sw_proto_pack_key(&pk, "t");
    msgpack_pack_uint64(&pk, a->t);
    sw_proto_pack_key(&pk, "lr_mult");
    msgpack_pack_double(&pk, a->lr_mult);
    sw_proto_pack_key(&pk, "norm");
    msgpack_pack_double(&pk, a->norm);
    if (a->with_normc) {
        sw_proto_pack_key(&pk, "normc");
        msgpack_pack_double(&pk, a->normc);
    }
    if (!a->drop_numel) {
        sw_proto_pack_key(&pk, "numel");
        msgpack_pack_uint64(&pk, a->numel);
    }
    sw_proto_pack_key(&pk, "off");
    msgpack_pack_uint64(&pk, a->off);
    sw_proto_pack_key(&pk, "n");
    msgpack_pack_uint64(&pk, a->n);
    if (a->extra_key) {
        sw_proto_pack_key(&pk, a->extra_key);
        msgpack_pack_uint64(&pk, 1);
    }
    SW_ASSERT(!b.overflow);
    memset(&m, 0, sizeof(m));
    memcpy(m.hdr.sender, sender, 32);
    m.hdr.type = SW_MSG_STATE;
    m.hdr.body = body;
    m.hdr.body_len = b.len;
    m.hdr.payload_len = a->payload_len;
    m.payload = a->payload_len ? a->payload : NULL;
    m.payload_len = a->payload_len;
    q->answered = true;
    return sw_fetch_response(f, now, q->tag, 0, &m);
}

/* q answered by nd as it is now. */
static int
answer(struct sw_fetch *f, uint64_t now, struct req *q, const struct node *nd)
{
    struct ans a;

    ans_good(&a, nd, q);
    return deliver(f, now, q, &a);
}

/* The node of q's endpoint. */
static const struct node *
node_of(const struct req *q, const struct node *nodes, int nnodes)
{
    for (int i = 0; i < nnodes; i++)
        if (!strcmp(q->ep, nodes[i].ep))
            return &nodes[i];
    SW_ASSERT(0);
    return NULL;
}

/* Answers every request not answered yet, oldest first, new ones included,
 * until none is left; counts the results. */
static int
serve(struct sw_fetch *f, struct fake *fk, uint64_t now, const struct node *nodes, int nnodes,
      int *ndone, int *nfailed)
{
    int rc = SW_FETCH_BUSY;

    for (int i = 0; i < fk->n; i++) {
        if (fk->r[i].answered)
            continue;
        rc = answer(f, now, &fk->r[i], node_of(&fk->r[i], nodes, nnodes));
        *ndone += rc == SW_FETCH_DONE;
        *nfailed += rc == SW_FETCH_FAILED;
    }
    return rc;
}

static int
unanswered(const struct fake *fk)
{
    int k = 0;

    for (int i = 0; i < fk->n; i++)
        k += !fk->r[i].answered;
    return k;
}

static bool
all_sentinel(const float *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != SENTINEL)
            return false;
    return true;
}

static void
fill_sentinel(float *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = SENTINEL;
}

/* A fetcher that asks through fk (cleared first), in pieces of 4 floats:
 * a slab of 10 is three pieces, the last one short. */
static void
fetcher(struct sw_fetch *f, struct fake *fk, int window, uint64_t timeout_ms, int retries)
{
    memset(fk, 0, sizeof(*fk));
    sw_fetch_init(f, &ops, fk);
    sw_fetch_config(f, window, timeout_ms, retries);
    f->chunk = 4;
}

#define EP_A "tcp://10.0.0.1:7400"
#define EP_B "tcp://10.0.0.2:7400"

/* Window 8, one source of 4 slabs of 16 floats (16 pieces), its pieces
 * answered oldest first, gap_ms apart: once the gap is known the source
 * keeps about SW_FETCH_AHEAD_MS of pieces in flight, and one more (fetch.h,
 * Slow links): 4 MiB pieces at 10 Mbit/s are 3355 ms apart, 2 in flight. */
static void
slow_link(uint64_t gap_ms, int want, const char *link)
{
    static struct fake fk;
    struct sw_fetch f;
    struct node nd;
    float buf[64];
    int rc, most = 0, first;
    uint64_t now = T0;

    node_fill(&nd, EP_A, 16, 5, 1.0f);
    fetcher(&f, &fk, 8, 60000, 0);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 0, 0, 4, 16, -1, buf);
    rc = sw_fetch_start(&f, 1, now);
    first = unanswered(&fk);
    for (int i = 0; rc == SW_FETCH_BUSY && i < fk.n; i++) {
        now += gap_ms;
        rc = answer(&f, now, &fk.r[i], &nd);
        if (i >= 1)
            most = SW_MAX(most, unanswered(&fk));
    }
    tap_ok(first == 2 && most == want && rc == SW_FETCH_DONE && fk.n == 16,
           "%s, pieces %llu ms apart: %d in flight (want %d; at first %d), done: %d", link,
           (unsigned long long)gap_ms, most, want, first, (int)(rc == SW_FETCH_DONE));
}

/* One source, 3 slabs of 10 floats in pieces of 4: every piece once,
 * answered in a shuffled order. */
static void
one_source(void)
{
    static struct fake fk;
    struct sw_fetch f;
    struct node nd;
    float buf[30], want[30];
    int seen[3][3] = {{0}}, rc, ndone = 0, nbusy = 0, maxout = 0, nans = 0, initial;
    bool bodies = true, where = true, shape = true, tags = true;
    uint64_t rng = 0x5eed1234ull;

    node_fill(&nd, EP_A, 10, 33, 1.0f);
    for (int w = 0; w < 3; w++)
        memcpy(want + w * 10, nd.data[w], 10 * sizeof(float));
    fill_sentinel(buf, 30);
    fetcher(&f, &fk, 4, 1500, 2);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 2, 0, 3, 10, -1, buf);
    rc = sw_fetch_start(&f, 1, T0);
    initial = fk.n;
    tap_ok(rc == SW_FETCH_BUSY && initial == 2,
           "start: busy, 2 pieces asked at once until the gap between pieces is known "
           "(asked %d)", initial);
    while (unanswered(&fk) > 0) {
        int k = (int)(sw_splitmix64(&rng) % (uint64_t)unanswered(&fk)), i;
        for (i = 0; i < fk.n; i++)
            if (!fk.r[i].answered && k-- == 0)
                break;
        rc = answer(&f, T0 + 10 + (uint64_t)nans++, &fk.r[i], &nd);
        ndone += rc == SW_FETCH_DONE;
        nbusy += rc == SW_FETCH_BUSY;
        maxout = SW_MAX(maxout, unanswered(&fk));
    }
    for (int i = 0; i < fk.n; i++) {
        struct req *q = &fk.r[i];
        bodies &= q->body_ok && !q->has_snap && q->stage == 2;
        where &= !strcmp(q->ep, EP_A) && q->timeout_ms == SW_FETCH_REQ_MS && q->retries == 2;
        if (q->body_ok && q->which < 3 && q->off % 4 == 0 && q->off < 10) {
            seen[q->which][q->off / 4]++;
            shape &= q->n == (q->off == 8 ? 2u : 4u);
        } else {
            shape = false;
        }
        tags &= q->tag < (1ull << SW_FETCH_TAG_BITS);
        for (int j = 0; j < i; j++)
            tags &= q->tag != fk.r[j].tag;
    }
    for (int w = 0; w < 3; w++)
        for (int p = 0; p < 3; p++)
            shape &= seen[w][p] == 1;
    tap_ok(fk.n == 9, "9 pieces asked for (3 slabs of 10 floats, 4 a piece): %d", fk.n);
    tap_ok(bodies, "every body is {stage 2, which, off, n}, no snap");
    tap_ok(where, "every request to the source's endpoint, waiting SW_FETCH_REQ_MS in the "
           "transport, with the configured retries");
    tap_ok(shape, "each (which, off) asked exactly once, n 4 or the short tail of 2");
    tap_ok(tags, "tags distinct and within %d bits", SW_FETCH_TAG_BITS);
    tap_ok(maxout <= 4, "never more than window pieces in flight (max %d)", maxout);
    tap_ok(ndone == 1 && nbusy == 8 && rc == SW_FETCH_DONE,
           "answered shuffled: busy 8 times, then done once (done %d busy %d)", ndone, nbusy);
    tap_ok(!memcmp(buf, want, sizeof(buf)), "the buffer holds exactly the source's floats");
    tap_ok(f.src[0].step == 33 && f.src[0].t == 36 && f.src[0].lr_mult == 0.5 &&
               f.src[0].norm == 1.25 && f.src[0].done && !f.active &&
               f.bytes == sizeof(buf),
           "step, t, lr_mult, norm taken from the answers; bytes %llu",
           (unsigned long long)f.bytes);
    fk.r[0].answered = false;
    buf[0] = SENTINEL;
    rc = answer(&f, T0 + 100, &fk.r[0], &nd);
    tap_ok(rc == SW_FETCH_BUSY && buf[0] == SENTINEL && fk.n == 9,
           "an answer after done is ignored");
}

/* An answer of another step restarts the source under a new generation. */
static void
restart_on_step(void)
{
    static struct fake fk;
    struct sw_fetch f;
    struct node n5, n6;
    float buf[10];
    int rc, ndone = 0, nfailed = 0, asked0 = 0, asked4 = 0, asked8 = 0;

    node_fill(&n5, EP_A, 10, 5, 1.0f);
    node_fill(&n6, EP_A, 10, 6, 50.0f);
    fill_sentinel(buf, 10);
    fetcher(&f, &fk, 2, 1000, 0);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 1, 0, 1, 10, -1, buf);
    tap_ok(sw_fetch_left_ms(&f, T0) == 0, "no fetch: no time left");
    rc = sw_fetch_start(&f, 1, T0);
    tap_ok(rc == SW_FETCH_BUSY && fk.n == 2 && fk.r[0].off == 0 && fk.r[1].off == 4,
           "window 2: pieces at 0 and 4 asked");
    tap_ok(sw_fetch_left_ms(&f, T0 + 5) == (uint64_t)(40 * 1000 / SW_FETCH_MIN_RATE) + 1,
           "before a piece: the 40 bytes left at SW_FETCH_MIN_RATE (%llu ms)",
           (unsigned long long)sw_fetch_left_ms(&f, T0 + 5));
    rc = answer(&f, T0 + 10, &fk.r[0], &n5);
    tap_ok(rc == SW_FETCH_BUSY && fk.n == 3 && fk.r[2].off == 8 && buf[0] == n5.data[0][0],
           "piece 0 of step 5 taken, the next piece asked");
    tap_ok(sw_fetch_left_ms(&f, T0 + 10) == 6 * sizeof(float) * 10 / (4 * sizeof(float)) + 1,
           "then the 6 floats left at the rate so far, 4 floats in 10 ms (%llu ms)",
           (unsigned long long)sw_fetch_left_ms(&f, T0 + 10));
    rc = answer(&f, T0 + 20, &fk.r[1], &n6);
    tap_ok(rc == SW_FETCH_BUSY && fk.n == 5 && fk.r[3].off == 0 && fk.r[4].off == 8 &&
               fk.r[3].tag != fk.r[0].tag && fk.r[4].tag != fk.r[2].tag &&
               buf[4] == n6.data[0][4] && f.src[0].got == 4,
           "piece 4 of step 6: the source restarts with it, pieces 0 and 8 asked again under a "
           "new generation (asked %d)", fk.n);
    rc = answer(&f, T0 + 30, &fk.r[2], &n6);
    tap_ok(rc == SW_FETCH_BUSY && fk.n == 5 && buf[8] == n6.data[0][8] && f.late == 1 &&
               f.src[0].got == 6,
           "the answer to the old generation's request for piece 8, of step 6: kept");
    rc = serve(&f, &fk, T0 + 40, &n6, 1, &ndone, &nfailed);
    for (int i = 0; i < fk.n; i++) {
        asked0 += fk.r[i].off == 0;
        asked4 += fk.r[i].off == 4;
        asked8 += fk.r[i].off == 8;
    }
    tap_ok(!f.active && ndone == 1 && nfailed == 0 &&
               !memcmp(buf, n6.data[0], sizeof(buf)) && f.src[0].step == 6 &&
               f.bytes == (4 + 4 + 2 + 4) * sizeof(float),
           "then done, the buffer all of step 6");
    tap_ok(asked0 == 2 && asked4 == 1 && asked8 == 2,
           "piece 0 asked again, piece 4 once (%d, %d, %d)", asked0, asked4, asked8);
}

/* True when requests [from, fk->n) asked the pieces at 0, 4 and 8 of a
 * slab of 10 floats a, b and c times. */
static bool
asked_only(const struct fake *fk, int from, int a, int b, int c)
{
    int n[3] = {0, 0, 0};

    for (int i = from; i < fk->n; i++)
        if (fk->r[i].off % 4 == 0 && fk->r[i].off < 12)
            n[fk->r[i].off / 4]++;
    return n[0] == a && n[1] == b && n[2] == c && fk->n - from == a + b + c;
}

/* Of the two requests a fetch started at fk->r[from] made, nd answers the
 * first and the second times out: the fetch fails with one piece in; every
 * request not answered is lost.  Returns the timeout's result. */
static int
fail_after_one(struct sw_fetch *f, struct fake *fk, int from, uint64_t now,
               const struct node *nd)
{
    int rc;

    answer(f, now, &fk->r[from], nd);
    fk->r[from + 1].answered = true;
    rc = sw_fetch_response(f, now + 10, fk->r[from + 1].tag, -SW_ETIMEDOUT, NULL);
    for (int i = 0; i < fk->n; i++)
        fk->r[i].answered = true;
    return rc;
}

/* Kept pieces (fetch.h): a failed fetch's pieces stand for the next fetch
 * of the same set-up that keeps them, from any node at their step; not
 * after a step change, nor for another set-up. */
static void
kept_pieces(void)
{
    static struct fake fk;
    struct sw_fetch f;
    struct node a5, b5, b6;
    float buf[10], other[10];
    int rc, ndone = 0, nfailed = 0, from;

    node_fill(&a5, EP_A, 10, 5, 1.0f);
    node_fill(&b5, EP_B, 10, 5, 1.0f); /* a replica: the same state at step 5 */
    node_fill(&b6, EP_B, 10, 6, 50.0f);
    fill_sentinel(buf, 10);
    fetcher(&f, &fk, 2, 1000, 0);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 1, 0, 1, 10, -1, buf);
    sw_fetch_start(&f, 1, T0);
    rc = fail_after_one(&f, &fk, 0, T0 + 10, &a5);
    tap_ok(rc == SW_FETCH_FAILED && f.src[0].got == 4 && f.src[0].have_step,
           "a fetch fails with piece 0 of step 5 in");

    sw_fetch_src_set(&f, 0, EP_B, NULL, 1, 0, 1, 10, -1, buf);
    f.src[0].keep = true;
    from = fk.n;
    rc = sw_fetch_start(&f, 1, T0 + 30);
    tap_ok(rc == SW_FETCH_BUSY && asked_only(&fk, from, 0, 1, 1) &&
               f.src[0].kept == 4 && f.src[0].got == 4,
           "the next fetch, another node, keep set: only pieces 4 and 8 asked, 4 floats kept");
    rc = serve(&f, &fk, T0 + 40, &b5, 1, &ndone, &nfailed);
    tap_ok(ndone == 1 && nfailed == 0 && !memcmp(buf, a5.data[0], sizeof(buf)) &&
               f.bytes == 6 * sizeof(float) && f.src[0].kept == 4,
           "done with the kept piece and 6 floats fetched: the whole state of step 5");

    /* a failed fetch again, then a source that stepped on meanwhile */
    fill_sentinel(buf, 10);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 1, 0, 1, 10, -1, buf);
    from = fk.n;
    sw_fetch_start(&f, 1, T0 + 100);
    tap_ok(asked_only(&fk, from, 1, 1, 0) && f.src[0].kept == 0,
           "a fetch after a whole one keeps nothing, keep or not");
    fail_after_one(&f, &fk, from, T0 + 110, &a5);
    sw_fetch_src_set(&f, 0, EP_B, NULL, 1, 0, 1, 10, -1, buf);
    f.src[0].keep = true;
    from = fk.n;
    sw_fetch_start(&f, 1, T0 + 130);
    rc = answer(&f, T0 + 140, &fk.r[from], &b6);
    tap_ok(rc == SW_FETCH_BUSY && f.src[0].kept == 0 && f.src[0].got == 4 &&
               f.src[0].step == 6 && asked_only(&fk, from, 1, 1, 2),
           "a piece of step 6: the kept piece of step 5 goes, pieces 0 and 8 asked again");
    ndone = nfailed = 0;
    serve(&f, &fk, T0 + 150, &b6, 1, &ndone, &nfailed);
    tap_ok(ndone == 1 && nfailed == 0 && !memcmp(buf, b6.data[0], sizeof(buf)),
           "then done, the buffer all of step 6");

    /* a failed fetch, then another set-up of the source before keep */
    fill_sentinel(buf, 10);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 1, 0, 1, 10, -1, buf);
    from = fk.n;
    sw_fetch_start(&f, 1, T0 + 200);
    fail_after_one(&f, &fk, from, T0 + 210, &a5);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 2, 0, 1, 10, -1, other);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 1, 0, 1, 10, -1, buf);
    f.src[0].keep = true;
    from = fk.n;
    sw_fetch_start(&f, 1, T0 + 230);
    tap_ok(asked_only(&fk, from, 1, 1, 0) && f.src[0].kept == 0,
           "keep after another set-up in between (another stage, buffer): nothing kept");
}

/* Snapshots: -EAGAIN asks again after retry_ms; another step fails. */
static void
snapshots(void)
{
    static struct fake fk;
    struct sw_fetch f;
    struct node nd;
    struct ans a;
    float buf[12];
    uint64_t wake, retry;
    int rc, ndone = 0, nfailed = 0;

    node_fill(&nd, EP_A, 6, 5, 3.0f);
    fill_sentinel(buf, 12);
    fetcher(&f, &fk, 1, 5000, 0);
    retry = f.retry_ms;
    sw_fetch_src_set(&f, 0, EP_A, NULL, 2, 1, 2, 6, 7, buf);
    rc = sw_fetch_start(&f, 1, T0);
    tap_ok(rc == SW_FETCH_BUSY && fk.n == 1 && fk.r[0].body_ok && fk.r[0].has_snap &&
               fk.r[0].snap == 7 && fk.r[0].which == 1 && fk.r[0].off == 0 && fk.r[0].n == 4,
           "a snapshot's request: {stage, which 1, off 0, n 4, snap 7}");
    ans_good(&a, &nd, &fk.r[0]);
    a.err = -SW_EAGAIN;
    a.n = 0;
    a.payload_len = 0;
    rc = deliver(&f, T0 + 10, &fk.r[0], &a);
    tap_ok(rc == SW_FETCH_BUSY && fk.n == 1, "-EAGAIN: busy, nothing asked at once");
    wake = sw_fetch_tick(&f, T0 + 10 + retry - 1, &rc);
    tap_ok(wake == T0 + 10 + retry && fk.n == 1,
           "tick before retry_ms (%llu): nothing asked, wake-up at the retry",
           (unsigned long long)retry);
    wake = sw_fetch_tick(&f, T0 + 10 + retry, &rc);
    tap_ok(fk.n == 2 && fk.r[1].has_snap && fk.r[1].snap == 7 && fk.r[1].which == 1 &&
               fk.r[1].off == 0 && wake == T0 + 10 + retry + 5000 && rc == SW_FETCH_BUSY,
           "tick at retry_ms: the piece asked again; the wake-up is its stall deadline, "
           "timeout_ms on");
    nd.step = 7;
    nd.normc = 0.125;
    rc = serve(&f, &fk, T0 + 100, &nd, 1, &ndone, &nfailed);
    tap_ok(rc == SW_FETCH_DONE && ndone == 1 && nfailed == 0 && fk.n == 5 &&
               !memcmp(buf, nd.data[1], 6 * sizeof(float)) &&
               !memcmp(buf + 6, nd.data[2], 6 * sizeof(float)),
           "answers of step 7: done, slabs 1 and 2 in the buffer (asked %d)", fk.n);
    tap_ok(f.src[0].step == 7 && f.src[0].normc == 0.125, "step and normc from the answers");

    /* -EAGAIN with pieces in flight: still the whole snapshot in the end */
    fill_sentinel(buf, 12);
    nd.step = 6;
    fetcher(&f, &fk, 3, 1000, 0);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 2, 0, 2, 6, 7, buf);
    sw_fetch_start(&f, 1, T0);
    ans_good(&a, &nd, &fk.r[1]);
    a.err = -SW_EAGAIN;
    a.n = 0;
    a.payload_len = 0;
    rc = deliver(&f, T0 + 10, &fk.r[1], &a);
    nd.step = 7;
    ndone = nfailed = 0;
    serve(&f, &fk, T0 + 20, &nd, 1, &ndone, &nfailed);
    wake = sw_fetch_tick(&f, T0 + 10 + retry, &rc);
    rc = serve(&f, &fk, T0 + 30 + retry, &nd, 1, &ndone, &nfailed);
    tap_ok(rc == SW_FETCH_DONE && ndone == 1 && nfailed == 0 &&
               !memcmp(buf, nd.data[0], 6 * sizeof(float)) &&
               !memcmp(buf + 6, nd.data[1], 6 * sizeof(float)),
           "-EAGAIN with pieces in flight (window 3): done in the end, every piece of step 7");

    /* another step than snap: failed */
    fill_sentinel(buf, 12);
    nd.step = 8;
    fetcher(&f, &fk, 2, 1000, 0);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 2, 0, 1, 6, 7, buf);
    sw_fetch_start(&f, 1, T0);
    rc = answer(&f, T0 + 10, &fk.r[0], &nd);
    tap_ok(rc == SW_FETCH_FAILED && f.failed_src == 0 && f.err < 0 && !f.active,
           "a snapshot answer of step 8 for snap 7: failed (err %d)", f.err);
    nd.step = 7;
    rc = answer(&f, T0 + 20, &fk.r[1], &nd);
    tap_ok(rc == SW_FETCH_BUSY && fk.n == 2 && all_sentinel(buf + 4, 2),
           "a later answer is ignored");

    /* any other error of a snapshot: failed */
    fetcher(&f, &fk, 1, 5000, 0);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 2, 0, 1, 6, 7, buf);
    sw_fetch_start(&f, 1, T0);
    ans_good(&a, &nd, &fk.r[0]);
    a.err = -SW_ENOENT;
    a.n = 0;
    a.payload_len = 0;
    rc = deliver(&f, T0 + 10, &fk.r[0], &a);
    tap_ok(rc == SW_FETCH_FAILED && f.err == -SW_ENOENT && f.failed_src == 0,
           "-ENOENT (a node past the step without the snapshot): failed, err -ENOENT (%d)",
           f.err);
}

enum spoil { TIMEOUT, EXTRA_KEY, NO_NUMEL, WRONG_OFF, WRONG_NUMEL, SHORT_PAYLOAD, NAN_PAYLOAD,
             INF_NORM, ERR_EINVAL, NSPOIL };

static const char *const spoil_name[NSPOIL] = {
    "a timeout", "an unknown key", "no numel", "another off", "another numel",
    "a payload shorter than n", "a NaN in the payload", "an infinite norm", "err -EINVAL",
};

/* One spoiled answer to source src (of 1 or 2): the fetch fails; later
 * answers are ignored. */
static void
failure(enum spoil how, int nsrc, int src)
{
    static struct fake fk;
    struct sw_fetch f;
    struct node nodes[2];
    float buf[20], bad[4];
    struct ans a;
    struct req *q = NULL;
    int rc = -1, asked;
    bool ignored = true;

    node_fill(&nodes[0], EP_A, 10, 4, 1.0f);
    node_fill(&nodes[1], EP_B, 10, 4, 2.0f);
    fill_sentinel(buf, 20);
    fetcher(&f, &fk, 2, 1000, 1);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 1, 0, 1, 10, -1, buf);
    sw_fetch_src_set(&f, 1, EP_B, NULL, 3, 0, 1, 10, -1, buf + 10);
    sw_fetch_start(&f, nsrc, T0);
    for (int i = 0; i < fk.n && !q; i++)
        if (!strcmp(fk.r[i].ep, src ? EP_B : EP_A))
            q = &fk.r[i];
    SW_ASSERT(q);
    ans_good(&a, &nodes[src], q);
    switch (how) {
    case TIMEOUT:
        q->answered = true;
        rc = sw_fetch_response(&f, T0 + 10, q->tag, -SW_ETIMEDOUT, NULL);
        break;
    case EXTRA_KEY:
        a.extra_key = "bogus";
        break;
    case NO_NUMEL:
        a.drop_numel = true;
        break;
    case WRONG_OFF:
        a.off = 4;
        break;
    case WRONG_NUMEL:
        a.numel = 11;
        break;
    case SHORT_PAYLOAD:
        a.payload_len -= sizeof(float);
        break;
    case NAN_PAYLOAD:
        memcpy(bad, a.payload, sizeof(bad));
        bad[2] = NAN;
        a.payload = bad;
        break;
    case INF_NORM:
        a.norm = INFINITY;
        break;
    case ERR_EINVAL:
        a.err = -SW_EINVAL;
        a.n = 0;
        a.payload_len = 0;
        break;
    default:
        break;
    }
    if (how != TIMEOUT)
        rc = deliver(&f, T0 + 10, q, &a);
    tap_ok(rc == SW_FETCH_FAILED && f.failed_src == src && f.err < 0 && !f.active &&
               (how != TIMEOUT || f.err == -SW_ETIMEDOUT) &&
               (how == EXTRA_KEY) == (f.err == -SW_EPROTO) &&
               (how != NAN_PAYLOAD || f.err == -SW_ENONFINITE) &&
               (how != ERR_EINVAL || f.err == -SW_EINVAL),
           "%s from source %d of %d: failed, failed_src %d, err %d (%s)", spoil_name[how], src,
           nsrc, f.failed_src, f.err, f.err ? sw_strerror(f.err) : "none");
    asked = fk.n;
    for (int i = 0; i < fk.n; i++) {
        if (fk.r[i].answered)
            continue;
        rc = answer(&f, T0 + 20, &fk.r[i], node_of(&fk.r[i], nodes, 2));
        ignored &= rc == SW_FETCH_BUSY;
    }
    tap_ok(ignored && fk.n == asked && all_sentinel(buf, 20),
           "then every later answer is ignored (buffers untouched, nothing asked)");
}

/* Two sources are independent; done only when both are. */
static void
two_sources(void)
{
    static struct fake fk;
    struct sw_fetch f;
    struct node nodes[2];
    float b0[10], b1[14];
    int rc, ndone = 0, nfailed = 0, busy0 = 0, toA = 0, toB = 0, asked;
    bool where = true;
    struct req *q1 = NULL, *q2 = NULL;

    node_fill(&nodes[0], EP_A, 10, 9, 1.0f);
    node_fill(&nodes[1], EP_B, 7, 9, 2.0f);
    fill_sentinel(b0, 10);
    fill_sentinel(b1, 14);
    fetcher(&f, &fk, 2, 1000, 0);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 1, 0, 1, 10, -1, b0);
    sw_fetch_src_set(&f, 1, EP_B, NULL, 3, 2, 2, 7, -1, b1);
    rc = sw_fetch_start(&f, 2, T0);
    for (int i = 0; i < fk.n; i++) {
        toA += !strcmp(fk.r[i].ep, EP_A);
        toB += !strcmp(fk.r[i].ep, EP_B);
    }
    tap_ok(rc == SW_FETCH_BUSY && toA == 2 && toB == 2,
           "start: a window of pieces from each source (%d, %d)", toA, toB);
    /* all of source 0 */
    for (int i = 0; i < fk.n; i++) {
        if (fk.r[i].answered || strcmp(fk.r[i].ep, EP_A))
            continue;
        rc = answer(&f, T0 + 10, &fk.r[i], &nodes[0]);
        busy0 += rc == SW_FETCH_BUSY;
    }
    tap_ok(busy0 == 3 && f.src[0].done && !f.src[1].done && f.active &&
               !memcmp(b0, nodes[0].data[0], sizeof(b0)),
           "source 0 complete: its buffer full, still busy (source 1 is not)");
    /* source 1: one piece of step 9, then one of step 10 */
    for (int i = 0; i < fk.n && !q2; i++) {
        if (fk.r[i].answered || strcmp(fk.r[i].ep, EP_B))
            continue;
        if (!q1)
            q1 = &fk.r[i];
        else
            q2 = &fk.r[i];
    }
    SW_ASSERT(q1 && q2);
    answer(&f, T0 + 20, q1, &nodes[1]);
    nodes[1].step = 10;
    nodes[1].data[2][0] = -1.0f;
    asked = fk.n;
    rc = answer(&f, T0 + 30, q2, &nodes[1]);
    for (int i = asked; i < fk.n; i++)
        where &= !strcmp(fk.r[i].ep, EP_B) && fk.r[i].stage == 3;
    tap_ok(rc == SW_FETCH_BUSY && fk.n > asked && where && f.src[0].done,
           "a step change in source 1 restarts source 1 only (asked %d more, all of it)",
           fk.n - asked);
    rc = serve(&f, &fk, T0 + 40, nodes, 2, &ndone, &nfailed);
    tap_ok(rc == SW_FETCH_DONE && ndone == 1 && nfailed == 0 &&
               !memcmp(b1, nodes[1].data[2], 7 * sizeof(float)) &&
               !memcmp(b1 + 7, nodes[1].data[3], 7 * sizeof(float)) &&
               !memcmp(b0, nodes[0].data[0], sizeof(b0)),
           "done once, when both are: slabs 2 and 3 of the second, step 10");
    tap_ok(f.src[0].step == 9 && f.src[1].step == 10, "each source keeps its own step");
    where = true;
    for (int i = 0; i < fk.n; i++)
        where &= fk.r[i].body_ok &&
                 (!strcmp(fk.r[i].ep, EP_A) ? fk.r[i].stage == 1 && fk.r[i].which == 0
                                            : fk.r[i].stage == 3 &&
                                                  (fk.r[i].which == 2 || fk.r[i].which == 3));
    tap_ok(where, "each source's requests name its stage and slabs");
}

/* Abandon; restart; nothing to fetch; a request that cannot be sent. */
static void
lifecycle(void)
{
    static struct fake fk;
    struct sw_fetch f;
    struct node nd;
    float buf[10];
    int rc, ndone = 0, nfailed = 0, asked;

    node_fill(&nd, EP_A, 10, 2, 1.0f);
    fill_sentinel(buf, 10);
    fetcher(&f, &fk, 2, 1000, 0);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 1, 0, 1, 10, -1, buf);
    sw_fetch_start(&f, 1, T0);
    sw_fetch_abandon(&f);
    rc = answer(&f, T0 + 10, &fk.r[0], &nd);
    tap_ok(rc == SW_FETCH_BUSY && fk.n == 2 && all_sentinel(buf, 10) && !f.active,
           "abandoned: answers in flight are stale (ignored, nothing asked)");
    rc = sw_fetch_start(&f, 1, T0 + 20);
    asked = fk.n;
    tap_ok(rc == SW_FETCH_BUSY && asked == 4 && fk.r[2].off == 0 && fk.r[3].off == 4 &&
               fk.r[2].tag != fk.r[0].tag && fk.r[3].tag != fk.r[1].tag,
           "started again: the same pieces under new tags (a new generation)");
    rc = answer(&f, T0 + 30, &fk.r[1], &nd);
    tap_ok(rc == SW_FETCH_BUSY && fk.n == asked && all_sentinel(buf, 10),
           "an answer from before the abandon is still ignored");
    rc = serve(&f, &fk, T0 + 40, &nd, 1, &ndone, &nfailed);
    tap_ok(rc == SW_FETCH_DONE && ndone == 1 && !memcmp(buf, nd.data[0], sizeof(buf)),
           "the new start completes");

    memset(&fk, 0, sizeof(fk));
    sw_fetch_src_set(&f, 0, EP_A, NULL, 1, 0, 1, 0, -1, buf);
    rc = sw_fetch_start(&f, 1, T0);
    tap_ok(rc == SW_FETCH_DONE && fk.n == 0, "nothing to fetch (numel 0): done at start");

    fk.rc = -SW_ENOMEM;
    sw_fetch_src_set(&f, 0, EP_A, NULL, 1, 0, 1, 10, -1, buf);
    rc = sw_fetch_start(&f, 1, T0);
    tap_ok(rc == SW_FETCH_FAILED && f.failed_src == 0 && f.err < 0 && !f.active,
           "a request that cannot be sent: failed at start (err %d)", f.err);
}

/* One live source of 16 floats (node nd at step 3, key pk) started at T0,
 * window pieces at a time, timeout_ms 1000. */
static void
live_source(struct sw_fetch *f, struct fake *fk, struct node *nd, float *buf, int window,
            const uint8_t *pk)
{
    node_fill(nd, EP_A, 16, 3, 1.0f);
    fill_sentinel(buf, 16);
    fetcher(f, fk, window, 1000, 0);
    sw_fetch_src_set(f, 0, EP_A, pk, 1, 0, 1, 16, -1, buf);
    sw_fetch_start(f, 1, T0);
}

/* Slow links: no timeout per request, a stall deadline per source that
 * follows the gaps between its pieces. */
static void
stalls(void)
{
    static struct fake fk;
    struct sw_fetch f;
    struct node nd;
    float buf[16];
    uint64_t wake, first, stall;
    int rc;

    live_source(&f, &fk, &nd, buf, 2, NULL);
    first = T0 + 1000; /* 16 bytes at SW_FETCH_MIN_RATE: under a millisecond */
    wake = sw_fetch_tick(&f, first - 1, &rc);
    tap_ok(rc == SW_FETCH_BUSY && wake == first && f.active,
           "no piece yet: busy until timeout_ms plus one piece at SW_FETCH_MIN_RATE");
    /* pieces every 3000 ms, three times timeout_ms: a slow link, not a stall */
    rc = answer(&f, T0 + 900, &fk.r[0], &nd);
    rc = answer(&f, T0 + 3900, &fk.r[1], &nd);
    rc = answer(&f, T0 + 6900, &fk.r[2], &nd);
    wake = sw_fetch_tick(&f, T0 + 6900 + 1000, &rc);
    tap_ok(rc == SW_FETCH_BUSY && f.active && wake == T0 + 6900 + SW_FETCH_GAPS * 3000,
           "pieces 3 s apart: not stalled after timeout_ms; the deadline is %d gaps on",
           SW_FETCH_GAPS);
    stall = T0 + 6900 + SW_FETCH_GAPS * 3000;
    wake = sw_fetch_tick(&f, stall, &rc);
    tap_ok(rc == SW_FETCH_BUSY && f.active && f.resumed == 1 && fk.n == 5 &&
               fk.r[4].which == 0 && fk.r[4].off == 12 && wake == stall + SW_FETCH_GAPS * 3000,
           "no piece for %d gaps: resumed, the one piece not received asked again (asked %d, "
           "the last at %llu), the deadline from the stall", SW_FETCH_GAPS, fk.n,
           (unsigned long long)fk.r[fk.n - 1].off);
    rc = answer(&f, stall + 100, &fk.r[3], &nd); /* the lost piece after all: late, kept */
    tap_ok(rc == SW_FETCH_DONE && !f.active && f.late == 1 && f.bytes == 16 * sizeof(float) &&
               !memcmp(buf, nd.data[0], 16 * sizeof(float)),
           "the piece asked before the resume comes after it: kept, done, each float once, "
           "the source's floats exactly");
    rc = answer(&f, stall + 200, &fk.r[4], &nd);
    tap_ok(rc == SW_FETCH_BUSY && !f.active && f.bytes == 16 * sizeof(float),
           "the same piece asked again: nothing more");
    /* two stalls, a piece between them: resumed from each, and the first
     * piece after a resume (its latency, not the link's rate) leaves the
     * gap at 3000 ms */
    live_source(&f, &fk, &nd, buf, 2, NULL);
    answer(&f, T0 + 900, &fk.r[0], &nd);
    answer(&f, T0 + 3900, &fk.r[1], &nd);
    stall = T0 + 3900 + SW_FETCH_GAPS * 3000;
    sw_fetch_tick(&f, stall, &rc); /* resumed: off 8 and 12 asked again (r[4], r[5]) */
    rc = answer(&f, stall + 100, &fk.r[4], &nd);
    wake = sw_fetch_tick(&f, stall + 100, &rc);
    tap_ok(rc == SW_FETCH_BUSY && f.resumed == 1 && fk.n == 6 && fk.r[4].off == 8 &&
               f.src[0].gap_ms == 3000.0 && wake == stall + 100 + SW_FETCH_GAPS * 3000,
           "resumed, a piece in 100 ms later: the gap stays 3000 ms (%.0f), the next deadline "
           "%d gaps on", f.src[0].gap_ms, SW_FETCH_GAPS);
    wake = sw_fetch_tick(&f, stall + 100 + SW_FETCH_GAPS * 3000, &rc);
    tap_ok(rc == SW_FETCH_BUSY && f.active && f.resumed == 2 && fk.n == 7 &&
               fk.r[6].off == 12,
           "a second stall after a piece: resumed again, the last piece asked again (at %llu)",
           (unsigned long long)fk.r[fk.n - 1].off);
    rc = answer(&f, stall + 200 + SW_FETCH_GAPS * 3000, &fk.r[6], &nd);
    tap_ok(rc == SW_FETCH_DONE && f.bytes == 16 * sizeof(float) &&
               !memcmp(buf, nd.data[0], 16 * sizeof(float)),
           "then done: each float once, the source's floats exactly");
    /* a piece asked before a resume, from its node a step later: not kept */
    live_source(&f, &fk, &nd, buf, 2, NULL);
    answer(&f, T0 + 900, &fk.r[0], &nd);
    answer(&f, T0 + 3900, &fk.r[1], &nd);
    stall = T0 + 3900 + SW_FETCH_GAPS * 3000;
    sw_fetch_tick(&f, stall, &rc);
    nd.step++;
    rc = answer(&f, stall + 100, &fk.r[2], &nd);
    tap_ok(rc == SW_FETCH_BUSY && f.active && f.late == 0 && f.bytes == 8 * sizeof(float) &&
               f.src[0].step == 3,
           "a piece asked before the resume, of a later step of its node: not kept");
    sw_fetch_abandon(&f);
    stall = T0 + 6900 + SW_FETCH_GAPS * 3000;
    /* the same stall, then nothing more: resumed SW_FETCH_RESUMES times, then failed */
    live_source(&f, &fk, &nd, buf, 2, NULL);
    answer(&f, T0 + 900, &fk.r[0], &nd);
    answer(&f, T0 + 3900, &fk.r[1], &nd);
    answer(&f, T0 + 6900, &fk.r[2], &nd);
    for (int k = 0; k <= SW_FETCH_RESUMES; k++)
        wake = sw_fetch_tick(&f, stall + (uint64_t)k * SW_FETCH_GAPS * 3000, &rc);
    tap_ok(rc == SW_FETCH_FAILED && !f.active && f.err == -SW_ETIMEDOUT && f.failed_src == 0 &&
               wake == UINT64_MAX && f.resumed == SW_FETCH_RESUMES &&
               fk.n == 4 + SW_FETCH_RESUMES,
           "a source silent after %d resume(s): failed with -SW_ETIMEDOUT by the tick "
           "(asked %d)", SW_FETCH_RESUMES, fk.n);
    /* the same stall of a source the caller knows is gone: failed at once */
    live_source(&f, &fk, &nd, buf, 2, NULL);
    answer(&f, T0 + 900, &fk.r[0], &nd);
    answer(&f, T0 + 3900, &fk.r[1], &nd);
    answer(&f, T0 + 6900, &fk.r[2], &nd);
    f.src[0].gone = true;
    wake = sw_fetch_tick(&f, stall, &rc);
    tap_ok(rc == SW_FETCH_FAILED && f.err == -SW_ETIMEDOUT && f.resumed == 0 && fk.n == 4,
           "the same stall of a source marked gone: failed, no resume (asked %d)", fk.n);

    /* a source that never answers: given up at timeout_ms */
    fetcher(&f, &fk, 2, 1000, 0);
    sw_fetch_src_set(&f, 0, EP_A, NULL, 1, 0, 1, 16, -1, buf);
    sw_fetch_start(&f, 1, T0);
    sw_fetch_tick(&f, T0 + 1000, &rc);
    tap_ok(rc == SW_FETCH_FAILED && f.err == -SW_ETIMEDOUT, "a silent source: failed at timeout_ms (pieces this small)");
    /* the first piece of 4 MiB pieces from two sources: 8.4 s more at 1 MB/s */
    fetcher(&f, &fk, 2, 1000, 0);
    f.chunk = SW_FETCH_CHUNK;
    sw_fetch_src_set(&f, 0, EP_A, NULL, 1, 0, 1, 16, -1, buf);
    sw_fetch_src_set(&f, 1, EP_B, NULL, 1, 0, 1, 16, -1, buf);
    sw_fetch_start(&f, 2, T0);
    wake = sw_fetch_tick(&f, T0, &rc);
    tap_ok(rc == SW_FETCH_BUSY &&
               wake == T0 + 1000 + (uint64_t)(2 * 4.0 * SW_FETCH_CHUNK / SW_FETCH_MIN_RATE * 1000),
           "two sources of 4 MiB pieces: the first piece may take timeout_ms + 8.4 s");
    sw_fetch_abandon(&f);
}

/* A resume leaves the pieces asked before on the link, ahead of the new
 * ones: until the first piece of the new generation is in, a stale piece
 * from the source's key moves its deadline on (fetch.h, Slow links); one
 * from another key does not. */
static void
stale_alive(bool same_key)
{
    static struct fake fk;
    static const uint8_t ka[32] = {0xa1}, kb[32] = {0xb2};
    struct sw_fetch f;
    struct node nd;
    float buf[16];
    uint64_t wake;
    int rc;

    live_source(&f, &fk, &nd, buf, 3, ka);
    memcpy(sender, ka, 32);
    rc = answer(&f, T0 + 500, &fk.r[0], &nd);
    rc = answer(&f, T0 + 600, &fk.r[1], &nd);
    /* the gap is 100 ms: stalled at 600 + timeout_ms, resumed (r[3] asked) */
    wake = sw_fetch_tick(&f, T0 + 1600, &rc);
    /* r[2], asked before the resume, comes in after it, of a later step
     * (not kept: the fetch's pieces are of step 3) */
    nd.step = 4;
    memcpy(sender, same_key ? ka : kb, 32);
    rc = answer(&f, T0 + 2500, &fk.r[2], &nd);
    memset(sender, 0, 32);
    wake = sw_fetch_tick(&f, T0 + 2700, &rc);
    if (same_key)
        tap_ok(rc == SW_FETCH_BUSY && f.active && f.resumed == 1 && f.late == 0 &&
                   wake == T0 + 2500 + 1000,
               "resumed, a stale piece from the source's key in: its deadline runs from it "
               "(wake %llu)", (unsigned long long)(wake - T0));
    else
        tap_ok(rc == SW_FETCH_FAILED && f.err == -SW_ETIMEDOUT && f.resumed == 1,
               "resumed, a stale piece from another key in: the deadline stays (stalled)");
    sw_fetch_abandon(&f);
}

int
main(void)
{
    sw_log_level = SW_LOG_NONE;
    tap_plan(11 + 3 + 9 + 7 + 10 + 2 * 3 * NSPOIL + 6 + 6 + 13 + 2);
    one_source();
    slow_link(3355, 2, "10 Mbit/s");
    slow_link(1678, 3, "20 Mbit/s");
    slow_link(100, 8, "335 Mbit/s");
    restart_on_step();
    kept_pieces();
    snapshots();
    for (int how = 0; how < NSPOIL; how++) {
        failure((enum spoil)how, 1, 0);
        failure((enum spoil)how, 2, 0);
        failure((enum spoil)how, 2, 1);
    }
    two_sources();
    lifecycle();
    stalls();
    stale_alive(true);
    stale_alive(false);
    return tap_done();
}
