/*
 * fuzz_dht.c - libFuzzer target for DHT message handling: arbitrary bytes go
 * through the body decoder and into a live node's message handler.
 *
 * Each input is a script of chunks, so that one input can walk a node
 * through several messages and timeouts:
 *
 *   op (1 byte), then unless op & 0x80: len (2 bytes, little-endian), body
 *   op & 0x80          tick after (op & 0x7f) * 100 ms
 *   op & 0x07          the envelope type: SW_DHT_PING + (op & 7)
 *   op & 0x08          sent by one of the node's contacts (else a stranger)
 *   op & 0x10          a reply: its tid is replaced by one the node has sent,
 *                      and the sender by the peer it was sent to
 *   op & 0x20          records are re-signed by the fuzzer's key, so that the
 *                      store and merge logic behind the signature check runs
 *
 * Without 0x10 or 0x20 the raw body goes through sw_dht_input_body.  Each
 * input gets a fresh node (deterministic seed) with 8 contacts, a get, a put
 * and a find_node in flight.  Every message the node sends is encoded and
 * decoded again: a message the node produces that its own decoder refuses
 * aborts (an encoder/decoder mismatch).
 *
 * Build: make check builds it with tests/fuzz/replay.c; for real fuzzing
 * `scripts/fuzz.sh dht SECONDS`, which compiles it with
 * fuzz-sources: net/dht.c net/dht_codec.c net/wire.c net/identity.c net/blake2b4.c
 * With -DSW_FUZZ_DHT_GEN it is instead a program that writes the seed corpus
 * into the directory named by its argument.
 */
#include "sw.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dht.h"
#include "dht_codec.h"

#define N_CONTACTS 8

static struct {
    bool ready;
    uint8_t pk[N_CONTACTS + 2][32]; /* contacts, then the node, then the fuzzer */
    uint8_t sk[N_CONTACTS + 2][64];
    uint64_t tids[64];
    uint8_t tid_to[64][32];
    unsigned n_tids;
} F;

static void
setup(void)
{
    if (F.ready)
        return;
    if (sodium_init() < 0)
        abort();
    sw_log_level = SW_LOG_NONE;
    for (int i = 0; i < N_CONTACTS + 2; i++) {
        uint8_t seed[32];

        memset(seed, 0x40 + i, sizeof(seed));
        crypto_sign_seed_keypair(F.pk[i], F.sk[i], seed);
    }
    F.ready = true;
}

static void
on_send(void *arg, const struct sw_dht_contact *to, const struct sw_dht_msg *m)
{
    struct sw_dht_msg back;
    uint8_t *enc;
    size_t len;

    if (sw_dht_msg_encode(m, &enc, &len) < 0)
        abort();
    if (sw_dht_msg_decode(&back, m->type, enc, len) < 0)
        abort(); /* we produced a body we refuse */
    sw_dht_msg_release(&back);
    sw_free(enc);
    if ((m->type & 1) == 0) {
        unsigned i = F.n_tids++ % SW_ARRAY_SIZE(F.tids);

        F.tids[i] = m->tid;
        memcpy(F.tid_to[i], to->pk, 32);
    }
}

static void
sink_nodes(void *arg, int status, const struct sw_dht_contact *n, size_t k,
           const struct sw_dht_lookup_info *info)
{
}

static void
sink_get(void *arg, int status, const struct sw_dht_record *r, size_t n,
         const struct sw_dht_lookup_info *info)
{
}

static void
sink_put(void *arg, int status, unsigned n, const struct sw_dht_lookup_info *info)
{
}

static void
feed(struct sw_dht *d, uint8_t op, const uint8_t *body, size_t len, uint64_t now)
{
    int type = SW_DHT_PING + (op & 7);
    const uint8_t *from = (op & 0x08) ? F.pk[len % N_CONTACTS] : F.pk[N_CONTACTS + 1];
    struct sw_dht_msg m;

    if (!(op & 0x30)) {
        (void)sw_dht_input_body(d, from, type, body, len, now);
        return;
    }
    if (sw_dht_msg_decode(&m, type, body, len) < 0)
        return;
    if ((op & 0x10) && F.n_tids > 0) {
        unsigned i = (unsigned)(m.tid % SW_MIN(F.n_tids, SW_ARRAY_SIZE(F.tids)));

        m.tid = F.tids[i];
        from = F.tid_to[i];
        if (sodium_is_zero(from, 32))
            from = F.pk[0];
    }
    if (op & 0x20) {
        for (size_t i = 0; i < m.n_recs; i++)
            sw_dht_record_sign(&m.recs[i], F.sk[N_CONTACTS + 1]);
        /* keep VALUES sorted by publisher: one signer, so one record */
        if (m.type == SW_DHT_VALUES && m.n_recs > 1) {
            for (size_t i = 1; i < m.n_recs; i++)
                sw_free((void *)m.recs[i].val);
            m.n_recs = 1;
        }
    }
    (void)sw_dht_input(d, from, &m, now);
    sw_dht_msg_release(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sw_dht_params p;
    struct sw_dht *d;
    struct sw_dht_record rec = {.seq = 1, .ttl_s = 60, .val = (const uint8_t *)"v", .val_len = 1};
    uint8_t key[32];
    uint64_t now = 1000000;
    size_t off = 0;

    setup();
    F.n_tids = 0;
    sw_dht_params_default(&p);
    p.seed = 42;
    p.rl_burst = 64;
    p.publishers_max = 4;
    p.store_max_records = 16;
    if (sw_dht_new(&d, F.pk[N_CONTACTS], "tcp://127.0.0.1:7400", &p, on_send, NULL) < 0)
        abort();
    for (int i = 0; i < N_CONTACTS; i++) {
        struct sw_dht_contact c;

        memset(&c, 0, sizeof(c));
        memcpy(c.pk, F.pk[i], 32);
        snprintf(c.ep, sizeof(c.ep), "tcp://127.0.0.%d:7400", i + 2);
        if (sw_dht_add_contact(d, &c, now) < 0)
            abort();
    }
    memset(key, 0x11, sizeof(key));
    memcpy(rec.key, key, 32);
    sw_dht_record_sign(&rec, F.sk[N_CONTACTS]);
    if (sw_dht_get(d, key, now, sink_get, NULL) < 0 ||
        sw_dht_put(d, &rec, now, sink_put, NULL) < 0 ||
        sw_dht_find_node(d, F.pk[3], now, sink_nodes, NULL) < 0)
        abort();

    while (off < size) {
        uint8_t op = data[off++];
        size_t len;

        if (op & 0x80) {
            now += (uint64_t)(op & 0x7f) * 100;
            sw_dht_tick(d, now);
            continue;
        }
        if (size - off < 2)
            break;
        len = data[off] | (size_t)data[off + 1] << 8;
        off += 2;
        len = SW_MIN(len, size - off);
        feed(d, op, data + off, len, now);
        off += len;
    }
    /* let everything time out and expire */
    for (int i = 0; i < 4; i++) {
        now += 120000;
        sw_dht_tick(d, now);
    }
    (void)sw_dht_count_records(d, now);
    sw_dht_free(d);
    return 0;
}

#ifdef SW_FUZZ_DHT_GEN
static void
put_chunk(FILE *f, uint8_t op, const struct sw_dht_msg *m)
{
    uint8_t *enc;
    size_t len;

    if (sw_dht_msg_encode(m, &enc, &len) < 0)
        abort();
    fputc(op, f);
    fputc((int)(len & 0xff), f);
    fputc((int)(len >> 8), f);
    fwrite(enc, 1, len, f);
    sw_free(enc);
}

int
main(int argc, char **argv)
{
    struct sw_dht_contact nodes[4];
    struct sw_dht_record recs[2];
    struct sw_dht_msg m;
    char path[4096];
    FILE *f;
    int n = 0;

    setup();
    if (argc != 2)
        return 2;
    for (int i = 0; i < 4; i++) {
        memset(&nodes[i], 0, sizeof(nodes[i]));
        memcpy(nodes[i].pk, F.pk[i], 32);
        sw_dht_id_of(nodes[i].id, nodes[i].pk);
        snprintf(nodes[i].ep, sizeof(nodes[i].ep), "tcp://127.0.0.%d:7400", i + 2);
    }
    for (int i = 0; i < 2; i++) {
        memset(&recs[i], 0, sizeof(recs[i]));
        memset(recs[i].key, 0x11, 32);
        recs[i].seq = 5 + i;
        recs[i].ttl_s = 30;
        recs[i].val = (const uint8_t *)"hello";
        recs[i].val_len = 5;
        sw_dht_record_sign(&recs[i], F.sk[i]);
    }
    if (memcmp(recs[0].pub, recs[1].pub, 32) > 0) {
        struct sw_dht_record t = recs[0];

        recs[0] = recs[1];
        recs[1] = t;
    }
#define OPEN()                                                                 \
    do {                                                                       \
        snprintf(path, sizeof(path), "%s/seed-%02d", argv[1], n++);            \
        if (!(f = fopen(path, "wb")))                                          \
            return 1;                                                          \
    } while (0)

    /* one file per request type, from a contact and from a stranger */
    for (int t = SW_DHT_PING; t <= SW_DHT_STORE; t += 2) {
        for (int c = 0; c < 2; c++) {
            OPEN();
            m = (struct sw_dht_msg){.type = t, .tid = 77};
            strcpy(m.ep, "tcp://10.1.2.3:7400");
            memset(m.target, 0x11, 32);
            if (t == SW_DHT_STORE) {
                m.recs = recs;
                m.n_recs = 1;
            }
            put_chunk(f, (uint8_t)((t - SW_DHT_PING) | (c ? 0x08 : 0)), &m);
            fputc(0x85, f);
            fclose(f);
        }
    }
    /* replies matched to outstanding requests, records re-signed or not */
    for (int t = SW_DHT_PONG; t <= SW_DHT_STORED; t += 2) {
        for (int rs = 0; rs < 2; rs++) {
            OPEN();
            m = (struct sw_dht_msg){.type = t, .tid = (uint64_t)n};
            strcpy(m.ep, "tcp://10.1.2.4:7400");
            m.nodes = nodes;
            m.n_nodes = t == SW_DHT_NODES || t == SW_DHT_VALUES ? 4 : 0;
            m.recs = recs;
            m.n_recs = t == SW_DHT_VALUES ? 2 : 0;
            m.more = t == SW_DHT_VALUES && rs;
            put_chunk(f, (uint8_t)((t - SW_DHT_PING) | 0x10 | (rs ? 0x20 : 0)), &m);
            put_chunk(f, (uint8_t)((t - SW_DHT_PING) | 0x18), &m);
            fputc(0x90, f);
            put_chunk(f, (uint8_t)((t - SW_DHT_PING) | 0x10), &m);
            fclose(f);
        }
    }
    /* a STORE then a FIND_VALUE for it, re-signed so that it is stored */
    OPEN();
    m = (struct sw_dht_msg){.type = SW_DHT_STORE, .tid = 1, .recs = recs, .n_recs = 1};
    put_chunk(f, (uint8_t)((SW_DHT_STORE - SW_DHT_PING) | 0x28), &m);
    m = (struct sw_dht_msg){.type = SW_DHT_FIND_VALUE, .tid = 2};
    memset(m.target, 0x11, 32);
    put_chunk(f, (uint8_t)((SW_DHT_FIND_VALUE - SW_DHT_PING) | 0x08), &m);
    fputc(0xff, f);
    put_chunk(f, (uint8_t)((SW_DHT_FIND_VALUE - SW_DHT_PING) | 0x08), &m);
    fclose(f);
    /* a burst of pings from one stranger (rate limit) and garbage */
    OPEN();
    m = (struct sw_dht_msg){.type = SW_DHT_PING, .tid = 3};
    for (int i = 0; i < 80; i++)
        put_chunk(f, 0, &m);
    fclose(f);
    OPEN();
    fwrite("\x00\x05\x00\xdd\xff\xff\xff\xff\x02\x03\x00\x81\xc1\x00", 1, 14, f);
    fclose(f);
    printf("wrote %d seeds\n", n);
    return 0;
}
#endif
