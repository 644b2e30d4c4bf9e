/*
 * wire.c - signed msgpack envelopes.  Contracts are in wire.h; the protocol
 * itself is man/swarm-protocol.7.
 *
 * Hostile input is handled in two passes: a hand-written scanner
 * (sw_wire_msgpack_check) first proves that the bytes are one well-formed
 * msgpack object whose containers cannot claim more elements than there are
 * bytes left, so msgpack-c, which allocates a container's elements up front,
 * never allocates more than a small multiple of the (size-limited) input.
 * Only then does msgpack_unpack_next build the object tree.
 */
#include "sw.h"

#include "wire.h"
#include "blake2b4.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

/* ---- names ---- */

static const char *const drop_names[SW_WIRE_DROP__COUNT] = {
    [SW_WIRE_DROP_TOOBIG] = "toobig",       [SW_WIRE_DROP_MALFORMED] = "malformed",
    [SW_WIRE_DROP_RUN] = "run",             [SW_WIRE_DROP_LENGTH] = "length",
    [SW_WIRE_DROP_SIG] = "signature",       [SW_WIRE_DROP_REPLAY] = "replay",
    [SW_WIRE_DROP_STALE] = "stale",         [SW_WIRE_DROP_HASH] = "hash",
    [SW_WIRE_DROP_NONFINITE] = "nonfinite", [SW_WIRE_DROP_TYPE] = "type",
    [SW_WIRE_DROP_UNMATCHED] = "unmatched", [SW_WIRE_DROP_ADMIT] = "admit",
    [SW_WIRE_DROP_RATELIMIT] = "ratelimit",
};

static const int drop_codes[SW_WIRE_DROP__COUNT] = {
    [SW_WIRE_DROP_TOOBIG] = -SW_ETOOBIG, [SW_WIRE_DROP_MALFORMED] = -SW_EMSG,
    [SW_WIRE_DROP_RUN] = -SW_ERUN,       [SW_WIRE_DROP_LENGTH] = -SW_EHASH,
    [SW_WIRE_DROP_SIG] = -SW_ESIG,       [SW_WIRE_DROP_REPLAY] = -SW_EREPLAY,
    [SW_WIRE_DROP_STALE] = -SW_EREPLAY,  [SW_WIRE_DROP_HASH] = -SW_EHASH,
    [SW_WIRE_DROP_NONFINITE] = -SW_ENONFINITE, [SW_WIRE_DROP_TYPE] = -SW_EMSG,
    [SW_WIRE_DROP_UNMATCHED] = -SW_EMSG, [SW_WIRE_DROP_ADMIT] = -SW_EPERM,
    [SW_WIRE_DROP_RATELIMIT] = -SW_EAGAIN,
};

const char *
sw_wire_drop_name(int reason)
{
    if (reason < 0 || reason >= SW_WIRE_DROP__COUNT)
        return "unknown";
    return drop_names[reason];
}

int
sw_wire_drop_code(int reason)
{
    if (reason < 0 || reason >= SW_WIRE_DROP__COUNT)
        return -SW_EINVAL;
    return drop_codes[reason];
}

int
sw_wire_count_drop(struct sw_wire *w, enum sw_wire_drop reason)
{
    if ((int)reason < 0 || reason >= SW_WIRE_DROP__COUNT)
        return -SW_EINVAL;
    if (w)
        w->stats.drops[reason]++;
    SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "dropped message: %s", drop_names[reason]);
    return drop_codes[reason];
}

/* ---- msgpack scanner ---- */

static uint64_t
be_n(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/*
 * Skip one object at *pp; 0 or -1.  depth counts the containers around it.
 * Recursion is bounded by max_depth.
 */
static int
scan_obj(const uint8_t **pp, const uint8_t *end, int depth, int max_depth)
{
    const uint8_t *p = *pp;
    uint64_t skip = 0, count = 0;
    int lenb = 0;
    uint8_t b;

    if (p >= end)
        return -1;
    b = *p++;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        /* fixint, nil, bool */
    } else if (b <= 0x8f) {
        count = 2u * (b & 0x0f);
    } else if (b <= 0x9f) {
        count = b & 0x0f;
    } else if (b <= 0xbf) {
        skip = b & 0x1f;
    } else {
        switch (b) {
        case 0xc4: case 0xd9: lenb = 1; break;              /* bin8, str8 */
        case 0xc5: case 0xda: lenb = 2; break;              /* bin16, str16 */
        case 0xc6: case 0xdb: lenb = 4; break;              /* bin32, str32 */
        case 0xca: skip = 4; break;                         /* float32 */
        case 0xcb: skip = 8; break;                         /* float64 */
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xce: case 0xd2: skip = 4; break;
        case 0xcf: case 0xd3: skip = 8; break;
        case 0xdc: case 0xde:                               /* array16, map16 */
        case 0xdd: case 0xdf: {                             /* array32, map32 */
            int nb = (b == 0xdc || b == 0xde) ? 2 : 4;

            if (end - p < nb)
                return -1;
            count = be_n(p, nb);
            p += nb;
            if (b == 0xde || b == 0xdf)
                count *= 2;
            break;
        }
        default:
            return -1; /* 0xc1 and every ext type */
        }
        if (lenb) {
            if (end - p < lenb)
                return -1;
            skip = be_n(p, lenb);
            p += lenb;
        }
    }
    if ((uint64_t)(end - p) < skip)
        return -1;
    p += skip;
    if (count) {
        if (depth >= max_depth || count > (uint64_t)(end - p))
            return -1;
        for (uint64_t i = 0; i < count; i++)
            if (scan_obj(&p, end, depth + 1, max_depth) < 0)
                return -1;
    }
    *pp = p;
    return 0;
}

int
sw_wire_msgpack_check(const void *buf, size_t len, int max_depth)
{
    const uint8_t *p = buf, *end = p + len;

    if (!buf || len == 0)
        return -SW_EMSG;
    if (scan_obj(&p, end, 0, max_depth) < 0 || p != end)
        return -SW_EMSG;
    return 0;
}

int
sw_wire_unpack(const void *buf, size_t len, msgpack_unpacked *out)
{
    size_t off = 0;
    msgpack_unpack_return r;

    msgpack_unpacked_init(out);
    if (sw_wire_msgpack_check(buf, len, SW_WIRE_MAX_DEPTH) < 0)
        return -SW_EMSG;
    r = msgpack_unpack_next(out, buf, len, &off);
    if (r != MSGPACK_UNPACK_SUCCESS || off != len) {
        msgpack_unpacked_destroy(out);
        msgpack_unpacked_init(out);
        return -SW_EMSG;
    }
    return 0;
}

bool
sw_wire_key_is(const msgpack_object *o, const char *k)
{
    size_t n = strlen(k);

    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, k, n) == 0;
}

/* ---- output buffer ---- */

void
sw_wire_buf_init(struct sw_wire_buf *b, void *data, size_t cap)
{
    b->data = data;
    b->len = 0;
    b->cap = cap;
    b->overflow = false;
}

static int
buf_write(void *data, const char *src, size_t len)
{
    struct sw_wire_buf *b = data;

    if (b->overflow || len > b->cap - b->len) {
        b->overflow = true;
        return -1;
    }
    memcpy(b->data + b->len, src, len);
    b->len += len;
    return 0;
}

void
sw_wire_buf_packer(msgpack_packer *pk, struct sw_wire_buf *b)
{
    msgpack_packer_init(pk, b, buf_write);
}

/* ---- per-sender sequence windows ---- */

/*
 * One window per (sender, class): a ring of W bits, bit (s mod W) for
 * sequence s, valid for top-W+1..top.  Class SW_WIRE_SEQ_OTHER keeps the
 * historical 64 bits; the pipeline class is wider (a flood cannot overtake
 * pipeline messages any more, but a READY answered on our DEALER and a GO
 * arriving on our ROUTER still race over two connections).
 */
#define OTHER_WORDS (SW_WIRE_WINDOW_OTHER / 64)
#define PIPE_WORDS (SW_WIRE_WINDOW_PIPELINE / 64)

struct win_entry {
    uint8_t pk[SW_IDENTITY_PK_BYTES];
    uint64_t top[SW_WIRE_SEQ_CLASSES];   /* highest sequence accepted, per class */
    uint64_t pipe[PIPE_WORDS];           /* ring of the pipeline class */
    uint64_t bulk[PIPE_WORDS];           /* ring of the bulk class, as wide */
    uint64_t other[OTHER_WORDS];         /* ring of the other class */
    uint64_t heard; /* window clock at the last accept, for eviction */
    int32_t next;   /* bucket chain */
};

struct sw_wire_window {
    size_t cap, n, nb;
    uint64_t clock;
    uint8_t hkey[crypto_shorthash_KEYBYTES];
    int32_t *heads;          /* nb bucket heads, -1 = empty */
    struct win_entry *e;     /* cap entries */
};

static size_t
win_bucket(const struct sw_wire_window *win, const uint8_t *pk)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v;

    /* keyed SipHash: a remote cannot aim its keys at one bucket */
    crypto_shorthash(h, pk, SW_IDENTITY_PK_BYTES, win->hkey);
    memcpy(&v, h, sizeof(v));
    return (size_t)(v % win->nb);
}

static struct win_entry *
win_find(struct sw_wire_window *win, const uint8_t *pk)
{
    for (int32_t i = win->heads[win_bucket(win, pk)]; i >= 0; i = win->e[i].next)
        if (memcmp(win->e[i].pk, pk, SW_IDENTITY_PK_BYTES) == 0)
            return &win->e[i];
    return NULL;
}

static struct win_entry *
win_add(struct sw_wire_window *win, const uint8_t *pk)
{
    struct win_entry *e;
    size_t b;
    int32_t idx;

    if (win->n < win->cap) {
        idx = (int32_t)win->n++;
    } else {
        /* forget the least recently heard sender */
        size_t old = 0;
        int32_t *link;

        for (size_t i = 1; i < win->n; i++)
            if (win->e[i].heard < win->e[old].heard)
                old = i;
        idx = (int32_t)old;
        link = &win->heads[win_bucket(win, win->e[idx].pk)];
        while (*link != idx)
            link = &win->e[*link].next;
        *link = win->e[idx].next;
    }
    e = &win->e[idx];
    memset(e, 0, sizeof(*e));
    memcpy(e->pk, pk, SW_IDENTITY_PK_BYTES);
    b = win_bucket(win, pk);
    e->next = win->heads[b];
    win->heads[b] = idx;
    return e;
}

/* The ring of class c in e, and its width in bits. */
static uint64_t *
win_ring(struct win_entry *e, int c, uint64_t *width)
{
    if (c == SW_WIRE_SEQ_PIPELINE || c == SW_WIRE_SEQ_BULK) {
        *width = SW_WIRE_WINDOW_PIPELINE;
        return c == SW_WIRE_SEQ_BULK ? e->bulk : e->pipe;
    }
    *width = SW_WIRE_WINDOW_OTHER;
    return e->other;
}

static bool
ring_get(const uint64_t *r, uint64_t width, uint64_t seq)
{
    uint64_t i = seq % width;

    return (r[i / 64] >> (i % 64)) & 1;
}

static void
ring_set(uint64_t *r, uint64_t width, uint64_t seq, bool v)
{
    uint64_t i = seq % width, m = 1ull << (i % 64);

    r[i / 64] = v ? r[i / 64] | m : r[i / 64] & ~m;
}

/*
 * SW_WIRE_DROP_* or -1 when seq may be accepted.  A new entry (no sender
 * yet, or a class never heard: top 0, ring empty) accepts anything.
 */
static int
win_check(struct win_entry *e, int c, uint64_t seq)
{
    uint64_t width, *r;

    if (!e || seq > e->top[c])
        return -1;
    r = win_ring(e, c, &width);
    if (e->top[c] - seq >= width)
        return SW_WIRE_DROP_STALE;
    if (ring_get(r, width, seq))
        return SW_WIRE_DROP_REPLAY;
    return -1;
}

static void
win_commit(struct sw_wire_window *win, struct win_entry *e, int c, uint64_t seq)
{
    uint64_t width, *r = win_ring(e, c, &width);

    if (seq > e->top[c]) {
        uint64_t shift = seq - e->top[c];

        /* the slots between the old top and seq now stand for unseen sequences */
        if (shift >= width)
            memset(r, 0, width / 8);
        else
            for (uint64_t s = e->top[c] + 1; s < seq; s++)
                ring_set(r, width, s, false);
        e->top[c] = seq;
    }
    ring_set(r, width, seq, true);
    e->heard = ++win->clock;
}

/* ---- sequence classes ---- */

/* The types of one class into set (SW_WIRE_MAX_PIPELINE_TYPES), *n. */
static int
set_types(uint32_t *set, size_t *nset, const uint32_t *types, size_t n)
{
    if (n > SW_WIRE_MAX_PIPELINE_TYPES || (n && !types))
        return -SW_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (types[i] == 0 || types[i] > SW_MSG_TYPE_MAX)
            return -SW_EINVAL;
    if (n)
        memcpy(set, types, n * sizeof(*types));
    *nset = n;
    return 0;
}

int
sw_wire_set_pipeline_types(struct sw_wire *w, const uint32_t *types, size_t n)
{
    return set_types(w->pipe_types, &w->n_pipe_types, types, n);
}

int
sw_wire_set_bulk_types(struct sw_wire *w, const uint32_t *types, size_t n)
{
    return set_types(w->bulk_types, &w->n_bulk_types, types, n);
}

int
sw_wire_seq_class(const struct sw_wire *w, uint32_t type)
{
    for (size_t i = 0; i < w->n_pipe_types; i++)
        if (w->pipe_types[i] == type)
            return SW_WIRE_SEQ_PIPELINE;
    for (size_t i = 0; i < w->n_bulk_types; i++)
        if (w->bulk_types[i] == type)
            return SW_WIRE_SEQ_BULK;
    return SW_WIRE_SEQ_OTHER;
}

/* ---- context ---- */

int
sw_wire_init(struct sw_wire *w, const struct sw_identity *id, const uint8_t run[SW_WIRE_RUN_BYTES],
             const struct sw_wire_opts *opts)
{
    struct sw_wire_window *win;
    struct timespec ts;
    int err;

    memset(w, 0, sizeof(*w));
    if ((err = sw_identity_global_init()) < 0)
        return err;
    w->id = id;
    memcpy(w->run, run, SW_WIRE_RUN_BYTES);
    w->max_payload = opts && opts->max_payload ? opts->max_payload : SW_WIRE_MAX_PAYLOAD;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* every class from the clock: a restarted node continues above its old numbers in each */
    for (int c = 0; c < SW_WIRE_SEQ_CLASSES; c++)
        w->next_seq[c] = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    win = sw_calloc(1, sizeof(*win));
    if (!win)
        return -SW_ENOMEM;
    win->cap = opts && opts->max_senders ? opts->max_senders : SW_WIRE_MAX_SENDERS;
    win->nb = win->cap;
    win->heads = sw_malloc(win->nb * sizeof(*win->heads));
    win->e = sw_calloc(win->cap, sizeof(*win->e));
    if (!win->heads || !win->e) {
        sw_free(win->heads);
        sw_free(win->e);
        sw_free(win);
        return -SW_ENOMEM;
    }
    memset(win->heads, 0xff, win->nb * sizeof(*win->heads));
    randombytes_buf(win->hkey, sizeof(win->hkey));
    w->win = win;
    return 0;
}

int
sw_wire_set_cert(struct sw_wire *w, const void *cert, size_t len)
{
    uint8_t *c = NULL;

    if (len > SW_WIRE_MAX_CERT)
        return -SW_ETOOBIG;
    if (len > 0) {
        if (!cert || !(c = sw_malloc(len)))
            return cert ? -SW_ENOMEM : -SW_EINVAL;
        memcpy(c, cert, len);
    }
    sw_free(w->cert);
    w->cert = c;
    w->cert_len = len;
    return 0;
}

void
sw_wire_release(struct sw_wire *w)
{
    sw_free(w->cert);
    if (w->win) {
        sw_free(w->win->heads);
        sw_free(w->win->e);
        sw_free(w->win);
    }
    memset(w, 0, sizeof(*w));
}

/* ---- payload tree hash ---- */

static int hash_threads = 1;

void
sw_wire_set_hash_threads(int n)
{
    hash_threads = n < 1 ? 1 : n > 16 ? 16 : n;
}

struct hash_job {
    const uint8_t *data;
    size_t len;
    size_t first, last;             /* chunk range */
    uint8_t (*digests)[SW_WIRE_HASH_BYTES];
};

static void
hash_chunks(const struct hash_job *j)
{
    size_t i = j->first;

    /* full chunks eight at a time on AVX-512, then four at a time on AVX2 */
    if (sw__blake2b8_available()) {
        for (; i + 8 <= j->last && (i + 8) * (size_t)SW_WIRE_CHUNK <= j->len; i += 8) {
            const uint8_t *in[8];

            for (int k = 0; k < 8; k++)
                in[k] = j->data + (i + (size_t)k) * SW_WIRE_CHUNK;
            sw__blake2b8_256(j->digests + i, in, SW_WIRE_CHUNK);
        }
    }
    if (sw__blake2b4_available()) {
        for (; i + 4 <= j->last && (i + 4) * (size_t)SW_WIRE_CHUNK <= j->len; i += 4) {
            const uint8_t *in[4];

            for (int k = 0; k < 4; k++)
                in[k] = j->data + (i + (size_t)k) * SW_WIRE_CHUNK;
            sw__blake2b4_256(j->digests + i, in, SW_WIRE_CHUNK);
        }
    }
    for (; i < j->last; i++) {
        size_t off = i * (size_t)SW_WIRE_CHUNK;
        size_t n = SW_MIN((size_t)SW_WIRE_CHUNK, j->len - off);

        crypto_generichash(j->digests[i], SW_WIRE_HASH_BYTES, j->data + off, n, NULL, 0);
    }
}

static void *
hash_worker(void *arg)
{
    hash_chunks(arg);
    return NULL;
}

static void
le64(uint8_t out[8], uint64_t v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

void
sw_wire_payload_hash(uint8_t out[SW_WIRE_HASH_BYTES], const void *data, size_t len)
{
    crypto_generichash_state st;
    uint8_t hdr[16], stackd[64][SW_WIRE_HASH_BYTES], (*digests)[SW_WIRE_HASH_BYTES] = stackd;
    size_t nchunks = (len + SW_WIRE_CHUNK - 1) / SW_WIRE_CHUNK;
    int nt = hash_threads;

    crypto_generichash_init(&st, NULL, 0, SW_WIRE_HASH_BYTES);
    le64(hdr, len);
    le64(hdr + 8, SW_WIRE_CHUNK);
    crypto_generichash_update(&st, hdr, sizeof(hdr));
    if (nchunks > SW_ARRAY_SIZE(stackd)) {
        digests = sw_malloc(nchunks * SW_WIRE_HASH_BYTES);
        if (!digests) {
            digests = stackd;
            nt = 0; /* fall back to the sequential path below */
        }
    }
    if (nt == 1 && nchunks >= 4 && sw__blake2b4_available()) {
        struct hash_job j = {.data = data, .len = len, .digests = digests, .first = 0,
                             .last = nchunks};

        hash_chunks(&j);
        crypto_generichash_update(&st, (const uint8_t *)digests, nchunks * SW_WIRE_HASH_BYTES);
    } else if (nt <= 1 || nchunks < 2) {
        uint8_t d[SW_WIRE_HASH_BYTES];

        for (size_t i = 0; i < nchunks; i++) {
            size_t off = i * (size_t)SW_WIRE_CHUNK;

            crypto_generichash(d, sizeof(d), (const uint8_t *)data + off,
                               SW_MIN((size_t)SW_WIRE_CHUNK, len - off), NULL, 0);
            crypto_generichash_update(&st, d, sizeof(d));
        }
    } else {
        struct hash_job jobs[16];
        pthread_t tids[16];
        bool started[16] = {false};

        if ((size_t)nt > nchunks)
            nt = (int)nchunks;
        for (int t = 0; t < nt; t++) {
            jobs[t] = (struct hash_job){.data = data, .len = len, .digests = digests,
                                        .first = nchunks * (size_t)t / (size_t)nt,
                                        .last = nchunks * (size_t)(t + 1) / (size_t)nt};
            if (t > 0)
                started[t] = pthread_create(&tids[t], NULL, hash_worker, &jobs[t]) == 0;
        }
        hash_chunks(&jobs[0]);
        for (int t = 1; t < nt; t++) {
            if (started[t])
                pthread_join(tids[t], NULL);
            else
                hash_chunks(&jobs[t]);
        }
        crypto_generichash_update(&st, (const uint8_t *)digests, nchunks * SW_WIRE_HASH_BYTES);
    }
    crypto_generichash_final(&st, out, SW_WIRE_HASH_BYTES);
    if (digests != stackd)
        sw_free(digests);
}

static uint8_t empty_h[SW_WIRE_HASH_BYTES];
static pthread_once_t empty_once = PTHREAD_ONCE_INIT;

static void
empty_init(void)
{
    sw_wire_payload_hash(empty_h, NULL, 0);
}

static const uint8_t *
empty_hash(void)
{
    pthread_once(&empty_once, empty_init);
    return empty_h;
}

/* ---- sealing ---- */

static int
pack_key(msgpack_packer *pk, const char *k)
{
    size_t n = strlen(k);

    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, k, n);
}

static int
pack_bin(msgpack_packer *pk, const uint8_t *b, size_t n)
{
    return msgpack_pack_bin(pk, n) || msgpack_pack_bin_body(pk, b, n);
}

int
sw_wire_seal(struct sw_wire *w, uint32_t type, uint64_t rid, const void *body, size_t body_len,
             const uint8_t *payload_hash, uint64_t payload_len, uint8_t *env, size_t env_cap,
             size_t *env_len, uint8_t sig[SW_WIRE_SIG_BYTES])
{
    uint8_t h0[SW_WIRE_HASH_BYTES];
    struct sw_wire_buf b;
    msgpack_packer pk;
    int err, c;

    if (type == 0 || type > SW_MSG_TYPE_MAX || !w->id)
        return -SW_EINVAL;
    c = sw_wire_seq_class(w, type);
    if (body_len > 0) {
        const uint8_t *bb = body;
        /* one map, and nothing a receiver would refuse */
        if (sw_wire_msgpack_check(body, body_len, SW_WIRE_MAX_DEPTH - 1) < 0 ||
            !((bb[0] >= 0x80 && bb[0] <= 0x8f) || bb[0] == 0xde || bb[0] == 0xdf))
            return -SW_EINVAL;
    }
    if (payload_len > w->max_payload)
        return -SW_ETOOBIG;
    if (payload_len == 0 && !payload_hash) {
        memcpy(h0, empty_hash(), sizeof(h0));
        payload_hash = h0;
    }
    if (!payload_hash)
        return -SW_EINVAL;
    sw_wire_buf_init(&b, env, SW_MIN(env_cap, (size_t)SW_WIRE_MAX_ENVELOPE));
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, w->cert_len > 0 ? 10 : 9);
    pack_key(&pk, "v");
    msgpack_pack_uint32(&pk, SW_WIRE_VERSION);
    pack_key(&pk, "t");
    msgpack_pack_uint32(&pk, type);
    pack_key(&pk, "run");
    pack_bin(&pk, w->run, SW_WIRE_RUN_BYTES);
    pack_key(&pk, "from");
    pack_bin(&pk, w->id->pk, SW_IDENTITY_PK_BYTES);
    pack_key(&pk, "seq");
    msgpack_pack_uint64(&pk, w->next_seq[c]);
    pack_key(&pk, "rid");
    msgpack_pack_uint64(&pk, rid);
    pack_key(&pk, "plen");
    msgpack_pack_uint64(&pk, payload_len);
    pack_key(&pk, "phash");
    pack_bin(&pk, payload_hash, SW_WIRE_HASH_BYTES);
    pack_key(&pk, "body");
    if (body_len > 0)
        buf_write(&b, body, body_len);
    else
        msgpack_pack_map(&pk, 0);
    if (w->cert_len > 0) {
        pack_key(&pk, "cert");
        pack_bin(&pk, w->cert, w->cert_len);
    }
    if (b.overflow)
        return -SW_ETOOBIG;
    if ((err = sw_identity_sign(w->id, sig, env, b.len)) < 0)
        return err;
    *env_len = b.len;
    w->next_seq[c]++;
    w->stats.sealed++;
    return 0;
}

/* ---- parsing ---- */

enum {
    F_V = 1 << 0, F_T = 1 << 1, F_RUN = 1 << 2, F_FROM = 1 << 3, F_SEQ = 1 << 4,
    F_RID = 1 << 5, F_PLEN = 1 << 6, F_PHASH = 1 << 7, F_BODY = 1 << 8, F_ALL = (1 << 9) - 1,
    F_CERT = 1 << 9, /* optional */
};

static bool
get_bin(const msgpack_object *o, uint8_t *out, size_t n)
{
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != n)
        return false;
    memcpy(out, o->via.bin.ptr, n);
    return true;
}

/* Byte span of the top-level "body" value; 0 or -1. */
static int
find_body(const uint8_t *buf, size_t len, const uint8_t **body, size_t *body_len)
{
    const uint8_t *p = buf, *end = buf + len;
    uint64_t n;

    if (*p >= 0x80 && *p <= 0x8f) {
        n = *p++ & 0x0f;
    } else if (*p == 0xde && len >= 3) {
        n = be_n(p + 1, 2);
        p += 3;
    } else if (*p == 0xdf && len >= 5) {
        n = be_n(p + 1, 4);
        p += 5;
    } else {
        return -1;
    }
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *k = p, *v;

        if (scan_obj(&p, end, 1, SW_WIRE_MAX_DEPTH) < 0)
            return -1;
        v = p;
        if (scan_obj(&p, end, 1, SW_WIRE_MAX_DEPTH) < 0)
            return -1;
        if (v - k == 5 && memcmp(k, "\xa4" "body", 5) == 0) {
            *body = v;
            *body_len = (size_t)(p - v);
            return 0;
        }
    }
    return -1;
}

int
sw_wire_parse(const void *env, size_t env_len, struct sw_wire_hdr *hdr)
{
    msgpack_unpacked up;
    const msgpack_object *m;
    unsigned seen = 0;
    int err = -SW_EMSG;

    memset(hdr, 0, sizeof(*hdr));
    if (env_len > SW_WIRE_MAX_ENVELOPE)
        return -SW_ETOOBIG;
    if (sw_wire_unpack(env, env_len, &up) < 0)
        return -SW_EMSG;
    m = &up.data;
    if (m->type != MSGPACK_OBJECT_MAP)
        goto out;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key, *v = &m->via.map.ptr[i].val;
        unsigned f;
        bool ok;

        if (k->type != MSGPACK_OBJECT_STR)
            goto out;
        if (sw_wire_key_is(k, "v")) {
            f = F_V;
            ok = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 == SW_WIRE_VERSION;
            hdr->version = SW_WIRE_VERSION;
        } else if (sw_wire_key_is(k, "t")) {
            f = F_T;
            ok = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 >= 1 &&
                 v->via.u64 <= SW_MSG_TYPE_MAX;
            hdr->type = ok ? (uint32_t)v->via.u64 : 0;
        } else if (sw_wire_key_is(k, "run")) {
            f = F_RUN;
            ok = get_bin(v, hdr->run, SW_WIRE_RUN_BYTES);
        } else if (sw_wire_key_is(k, "from")) {
            f = F_FROM;
            ok = get_bin(v, hdr->sender, SW_IDENTITY_PK_BYTES);
        } else if (sw_wire_key_is(k, "seq")) {
            f = F_SEQ;
            ok = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
            hdr->seq = v->via.u64;
        } else if (sw_wire_key_is(k, "rid")) {
            f = F_RID;
            ok = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
            hdr->rid = v->via.u64;
        } else if (sw_wire_key_is(k, "plen")) {
            f = F_PLEN;
            ok = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
            hdr->payload_len = v->via.u64;
        } else if (sw_wire_key_is(k, "phash")) {
            f = F_PHASH;
            ok = get_bin(v, hdr->payload_hash, SW_WIRE_HASH_BYTES);
        } else if (sw_wire_key_is(k, "body")) {
            f = F_BODY;
            ok = v->type == MSGPACK_OBJECT_MAP;
        } else if (sw_wire_key_is(k, "cert")) {
            /*
             * msgpack_unpack_next leaves bins in env, so the slice outlives
             * the unpacked tree; checked anyway.  Empty reads as absent.
             */
            const uint8_t *c = (const uint8_t *)v->via.bin.ptr, *e0 = env;

            f = F_CERT;
            ok = v->type == MSGPACK_OBJECT_BIN && v->via.bin.size <= SW_WIRE_MAX_CERT &&
                 (v->via.bin.size == 0 || (c >= e0 && c + v->via.bin.size <= e0 + env_len));
            hdr->cert = ok && v->via.bin.size ? c : NULL;
            hdr->cert_len = ok ? v->via.bin.size : 0;
        } else {
            goto out; /* unknown key */
        }
        if (!ok || (seen & f))
            goto out; /* mistyped or duplicate */
        seen |= f;
    }
    if ((seen & F_ALL) != F_ALL)
        goto out; /* missing key */
    if (find_body(env, env_len, &hdr->body, &hdr->body_len) < 0)
        goto out;
    err = 0;
out:
    msgpack_unpacked_destroy(&up);
    return err;
}

static int
drop(struct sw_wire *w, enum sw_wire_drop reason, const struct sw_wire_hdr *hdr)
{
    char hex[17];

    w->stats.drops[reason]++;
    if (hdr && reason != SW_WIRE_DROP_MALFORMED && reason != SW_WIRE_DROP_TOOBIG)
        SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "dropped message type %u from %s...: %s",
                           (unsigned)hdr->type, sw_identity_hex(hex, hdr->sender, 8),
                           drop_names[reason]);
    else
        SW_LOG_RATELIMITED(SW_LOG_WARN, 1000, "dropped message: %s", drop_names[reason]);
    return drop_codes[reason];
}

int
sw_wire_open(struct sw_wire *w, const void *env, size_t env_len, const void *sig, size_t sig_len,
             size_t payload_len, struct sw_wire_hdr *hdr)
{
    struct win_entry *e;
    int err, r, c;

    if (env_len > SW_WIRE_MAX_ENVELOPE || payload_len > w->max_payload)
        return drop(w, SW_WIRE_DROP_TOOBIG, NULL);
    if (sig_len != SW_WIRE_SIG_BYTES || !env || !sig)
        return drop(w, SW_WIRE_DROP_MALFORMED, NULL);
    if ((err = sw_wire_parse(env, env_len, hdr)) < 0)
        return drop(w, err == -SW_ETOOBIG ? SW_WIRE_DROP_TOOBIG : SW_WIRE_DROP_MALFORMED, NULL);
    if (sodium_memcmp(hdr->run, w->run, SW_WIRE_RUN_BYTES) != 0)
        return drop(w, SW_WIRE_DROP_RUN, hdr);
    if (hdr->payload_len != payload_len)
        return drop(w, SW_WIRE_DROP_LENGTH, hdr);
    if (payload_len == 0 && memcmp(hdr->payload_hash, empty_hash(), SW_WIRE_HASH_BYTES) != 0)
        return drop(w, SW_WIRE_DROP_HASH, hdr);
    c = sw_wire_seq_class(w, hdr->type);
    e = win_find(w->win, hdr->sender);
    if ((r = win_check(e, c, hdr->seq)) >= 0)
        return drop(w, r, hdr);
    if (!sw_identity_verify(hdr->sender, sig, env, env_len))
        return drop(w, SW_WIRE_DROP_SIG, hdr);
    if (!e)
        e = win_add(w->win, hdr->sender);
    win_commit(w->win, e, c, hdr->seq);
    w->stats.accepted++;
    return 0;
}

int
sw_wire_check_payload(struct sw_wire *w, const struct sw_wire_hdr *hdr, const void *payload,
                      size_t len)
{
    uint8_t h[SW_WIRE_HASH_BYTES];

    if (len != hdr->payload_len)
        return drop(w, SW_WIRE_DROP_LENGTH, hdr);
    sw_wire_payload_hash(h, payload, len);
    if (sodium_memcmp(h, hdr->payload_hash, sizeof(h)) != 0)
        return drop(w, SW_WIRE_DROP_HASH, hdr);
    return 0;
}

/* ---- tensors ---- */

size_t
sw_wire_dtype_size(int dtype)
{
    return dtype == SW_WIRE_F32 ? 4 : dtype == SW_WIRE_BF16 ? 2 : 0;
}

uint64_t
sw_wire_tensor_bytes(const struct sw_wire_tensor *t)
{
    uint64_t n = sw_wire_dtype_size(t->dtype);

    if (n == 0 || t->ndim < 1 || t->ndim > SW_WIRE_MAX_DIMS)
        return 0;
    for (uint32_t i = 0; i < t->ndim; i++) {
        if (t->shape[i] != 0 && n > UINT64_MAX / t->shape[i])
            return 0;
        n *= t->shape[i];
    }
    return n;
}

int
sw_wire_tensor_pack(msgpack_packer *pk, const struct sw_wire_tensor *t)
{
    size_t nl = strnlen(t->name, sizeof(t->name));
    const char *dt = t->dtype == SW_WIRE_F32 ? "f32" : t->dtype == SW_WIRE_BF16 ? "bf16" : NULL;

    if (!dt || nl > SW_WIRE_MAX_NAME || t->ndim < 1 || t->ndim > SW_WIRE_MAX_DIMS)
        return -SW_EINVAL;
    if (msgpack_pack_map(pk, 5) || pack_key(pk, "name") || msgpack_pack_str(pk, nl) ||
        msgpack_pack_str_body(pk, t->name, nl) || pack_key(pk, "tag") ||
        msgpack_pack_uint64(pk, t->tag) || pack_key(pk, "dtype") ||
        msgpack_pack_str(pk, strlen(dt)) || msgpack_pack_str_body(pk, dt, strlen(dt)) ||
        pack_key(pk, "shape") || msgpack_pack_array(pk, t->ndim))
        return -SW_ETOOBIG;
    for (uint32_t i = 0; i < t->ndim; i++)
        if (msgpack_pack_uint64(pk, t->shape[i]))
            return -SW_ETOOBIG;
    if (pack_key(pk, "off") || msgpack_pack_uint64(pk, t->off))
        return -SW_ETOOBIG;
    return 0;
}

int
sw_wire_tensor_unpack(const void *body, size_t len, struct sw_wire_tensor *t)
{
    msgpack_unpacked up;
    const msgpack_object *m;
    unsigned seen = 0;
    int err = -SW_EMSG;

    memset(t, 0, sizeof(*t));
    if (sw_wire_unpack(body, len, &up) < 0)
        return -SW_EMSG;
    m = &up.data;
    if (m->type != MSGPACK_OBJECT_MAP)
        goto out;
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key, *v = &m->via.map.ptr[i].val;
        unsigned f;

        if (sw_wire_key_is(k, "name")) {
            f = 1;
            if (v->type != MSGPACK_OBJECT_STR || v->via.str.size > SW_WIRE_MAX_NAME ||
                memchr(v->via.str.ptr, 0, v->via.str.size))
                goto out;
            memcpy(t->name, v->via.str.ptr, v->via.str.size);
            t->name[v->via.str.size] = '\0';
        } else if (sw_wire_key_is(k, "tag")) {
            f = 2;
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                goto out;
            t->tag = v->via.u64;
        } else if (sw_wire_key_is(k, "dtype")) {
            f = 4;
            if (sw_wire_key_is(v, "f32"))
                t->dtype = SW_WIRE_F32;
            else if (sw_wire_key_is(v, "bf16"))
                t->dtype = SW_WIRE_BF16;
            else
                goto out;
        } else if (sw_wire_key_is(k, "shape")) {
            f = 8;
            if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size < 1 ||
                v->via.array.size > SW_WIRE_MAX_DIMS)
                goto out;
            t->ndim = v->via.array.size;
            for (uint32_t d = 0; d < t->ndim; d++) {
                if (v->via.array.ptr[d].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                    goto out;
                t->shape[d] = v->via.array.ptr[d].via.u64;
            }
        } else if (sw_wire_key_is(k, "off")) {
            f = 16;
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                goto out;
            t->off = v->via.u64;
        } else {
            goto out;
        }
        if (seen & f)
            goto out;
        seen |= f;
    }
    if (seen != 31)
        goto out;
    err = 0;
out:
    msgpack_unpacked_destroy(&up);
    return err;
}

/*
 * Non-finite means an all-ones exponent.  (x & EXP) + EXP_LSB carries into
 * the top bit only then, so a block is one OR-reduction, which the compiler
 * vectorises (O3 for this function only: GCC's -O2 cost model does not;
 * clang vectorises at -O2 and has no such attribute).
 */
#if defined(__clang__)
#define VEC_O3
#else
#define VEC_O3 __attribute__((optimize("O3")))
#endif

VEC_O3 static uint32_t
f32_block_bad(const uint8_t *p, size_t n)
{
    uint32_t acc = 0;

    for (size_t j = 0; j < n; j++) {
        uint32_t x;

        memcpy(&x, p + 4 * j, 4);
        acc |= (x & 0x7f800000u) + 0x00800000u;
    }
    return acc & 0x80000000u;
}

VEC_O3 static uint32_t
bf16_block_bad(const uint8_t *p, size_t n)
{
    uint32_t acc = 0;

    for (size_t j = 0; j < n; j++) {
        uint16_t x;

        memcpy(&x, p + 2 * j, 2);
        acc |= (uint32_t)(x & 0x7f80u) + 0x0080u;
    }
    return acc & 0x8000u;
}

bool
sw_wire_all_finite(int dtype, const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t es = sw_wire_dtype_size(dtype), n = es ? len / es : 0;

    if (es == 0)
        return false;
    /* blocks of 64 KiB: stop early on a bad block, stay vectorised inside */
    for (size_t i = 0; i < n;) {
        size_t m = SW_MIN(n - i, (size_t)65536 / es);

        if (es == 4 ? f32_block_bad(p + 4 * i, m) : bf16_block_bad(p + 2 * i, m))
            return false;
        i += m;
    }
    return true;
}

int
sw_wire_tensor_check(struct sw_wire *w, const struct sw_wire_tensor *t, const void *payload,
                     size_t len)
{
    uint64_t total = sw_wire_tensor_bytes(t);
    size_t es = sw_wire_dtype_size(t->dtype);
    bool zero = false; /* a zero dimension: 0 bytes legitimately, not an overflow */

    for (uint32_t i = 0; i < t->ndim; i++)
        zero = zero || t->shape[i] == 0;
    if (es == 0 || (total == 0 && !zero) || t->off % es || len % es || t->off > total ||
        len > total - t->off)
        return w ? sw_wire_count_drop(w, SW_WIRE_DROP_MALFORMED) : -SW_EMSG;
    if (!sw_wire_all_finite(t->dtype, payload, len))
        return w ? sw_wire_count_drop(w, SW_WIRE_DROP_NONFINITE) : -SW_ENONFINITE;
    return 0;
}
