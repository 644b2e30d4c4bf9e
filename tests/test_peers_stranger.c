/*
 * test_peers_stranger - a stranger for t0381: a process with valid keys, the
 * run's id and well-formed messages, but no certificate of the run's owner.
 * For SECONDS it sends to each ENDPOINT (the run transports of an
 * owner-mode run's nodes), every 20 ms:
 *   - PREPARE of step 1000000 (the stall of issue 12: a node that takes it
 *     believes the run ahead and copies its state again);
 *   - a DHT STORE of a fake stage-0 record claiming step 1000000 at a dead
 *     endpoint (sent by a serving stranger: its body names an "ep");
 *   - a well-formed STATE_GET of the endpoint's stage;
 *   - a transport PING;
 *   - a PING carrying FOREIGN_CERT, a valid certificate of another run.
 * An owner-mode node drops every one before any handler (counted as
 * swarm_wire_dropped_total{reason="admit"}); the run trains on unaffected.
 *
 *   test_peers_stranger MANIFEST SECONDS FOREIGN_CERT STAGE=ENDPOINT...
 * exit 0 after sending when no request was answered, 1 when one was, 2 on
 * usage or setup errors.  `test_peers_stranger --key` prints the key the
 * foreign certificate must name (its keys come from fixed seeds).
 */
#include "sw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admit.h"
#include "dht.h"
#include "dht_codec.h"
#include "manifest.h"
#include "proto.h"
#include "status.h"
#include "transport.h"
#include "wire.h"

#define NKEYS 3

static void
on_closed(void *arg)
{
    (void)arg;
}

static void
on_response(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    uint64_t *answered = arg;

    (void)t;
    (void)m;
    if (status == 0)
        (*answered)++;
}

static size_t
prepare_body(uint8_t *buf, size_t cap, uint64_t step)
{
    struct sw_wire_buf b;
    msgpack_packer pk;

    sw_wire_buf_init(&b, buf, cap);
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, 1);
    sw_proto_pack_key(&pk, "step");
    msgpack_pack_uint64(&pk, step);
    return b.len;
}

static size_t
state_get_body(uint8_t *buf, size_t cap, int stage)
{
    struct sw_wire_buf b;
    msgpack_packer pk;

    sw_wire_buf_init(&b, buf, cap);
    sw_wire_buf_packer(&pk, &b);
    msgpack_pack_map(&pk, 4);
    sw_proto_pack_key(&pk, "stage");
    msgpack_pack_uint64(&pk, (uint64_t)stage);
    sw_proto_pack_key(&pk, "which");
    msgpack_pack_uint64(&pk, 0);
    sw_proto_pack_key(&pk, "off");
    msgpack_pack_uint64(&pk, 0);
    sw_proto_pack_key(&pk, "n");
    msgpack_pack_uint64(&pk, 16);
    return b.len;
}

/* A DHT STORE of a signed fake stage-0 record of key id, into *out (sw_malloc'd). */
static int
store_body(const struct sw_manifest *man, const struct sw_identity *id, uint64_t tid,
           uint8_t **out, size_t *len)
{
    static uint8_t val[1024];
    struct sw_peer_rec r;
    struct sw_dht_record rec;
    struct sw_dht_msg m;
    struct sw_wire_buf b;
    msgpack_packer pk;

    memset(&r, 0, sizeof(r));
    memcpy(r.pk, id->pk, 32);
    snprintf(r.ep, sizeof(r.ep), "tcp://127.0.0.1:9");
    r.stage = 0;
    r.state = SW_REC_TRAINING;
    r.step = 1000000;
    r.tps = r.cap = 5e7;
    r.loss = -1;
    sw_wire_buf_init(&b, val, sizeof(val));
    sw_wire_buf_packer(&pk, &b);
    sw_status_rec_pack(&pk, &r, 30, 0);
    memset(&rec, 0, sizeof(rec));
    sw_status_stage_key(rec.key, man->run_id, 0);
    rec.seq = tid;
    rec.ttl_s = 30;
    rec.val = val;
    rec.val_len = b.len;
    sw_dht_record_sign(&rec, id->sk);
    memset(&m, 0, sizeof(m));
    m.type = SW_DHT_STORE;
    m.tid = tid;
    snprintf(m.ep, sizeof(m.ep), "tcp://127.0.0.1:9");
    m.recs = &rec;
    m.n_recs = 1;
    return sw_dht_msg_encode(&m, out, len);
}

int
main(int argc, char **argv)
{
    struct sw_manifest man;
    struct sw_identity id[NKEYS];
    struct sw_transport *tr[NKEYS];
    uint8_t body[1024], cert[SW_CERT_MAX];
    size_t blen, clen;
    uv_loop_t loop;
    char why[512];
    int neps = argc - 4;
    double until;
    uint64_t sent = 0, answered = 0, tid = 1;

    if (argc == 2 && !strcmp(argv[1], "--key")) {
        uint8_t seed[32];
        char hex[65];
        memset(seed, 0x41, sizeof(seed));
        if (sw_identity_global_init() < 0 || sw_identity_from_seed(&id[1], seed) < 0)
            return 2;
        printf("%s\n", sw_identity_hex(hex, id[1].pk, 32));
        sw_identity_release(&id[1]);
        return 0;
    }
    if (argc < 5) {
        fprintf(stderr, "usage: test_peers_stranger MANIFEST SECONDS FOREIGN_CERT "
                        "STAGE=ENDPOINT...\n");
        return 2;
    }
    if (sw_manifest_load(&man, argv[1], why, sizeof(why)) < 0) {
        fprintf(stderr, "%s\n", why);
        return 2;
    }
    if (sw_cert_load(argv[3], cert, &clen) < 0) {
        fprintf(stderr, "test_peers_stranger: cannot read '%s'\n", argv[3]);
        return 2;
    }
    uv_loop_init(&loop);
    if (sw_identity_global_init() < 0)
        return 2;
    /* 0: no certificate; 1: the foreign one (it names key 1: swarmctl admit --node) */
    for (int i = 0; i < NKEYS; i++) {
        uint8_t seed[32];
        memset(seed, 0x40 + i, sizeof(seed));
        if (sw_identity_from_seed(&id[i], seed) < 0 ||
            sw_transport_new(&tr[i], &loop, &id[i], man.run_id, NULL) < 0)
            return 2;
    }
    if (sw_wire_set_cert(sw_transport_wire(tr[1]), cert, clen) < 0)
        return 2;
    for (int e = 0; e < neps; e++)
        if (!strchr(argv[4 + e], '=')) {
            fprintf(stderr, "test_peers_stranger: want STAGE=ENDPOINT, got '%s'\n", argv[4 + e]);
            return 2;
        }
    until = sw_now_s() + atof(argv[2]);
    while (sw_now_s() < until) {
        for (int e = 0; e < neps; e++) {
            const char *ep = strchr(argv[4 + e], '=') + 1;
            int stage = atoi(argv[4 + e]);
            uint8_t *store;
            size_t slen;

            blen = prepare_body(body, sizeof(body), 1000000);
            sent += sw_transport_request(tr[0], ep, SW_MSG_PREPARE, body, blen, NULL, 500, 0,
                                         on_response, &answered) == 0;
            if (store_body(&man, &id[0], tid++, &store, &slen) == 0) {
                sent += sw_transport_request(tr[0], ep, SW_DHT_STORE, store, slen, NULL, 500, 0,
                                             on_response, &answered) == 0;
                sw_free(store);
            }
            blen = state_get_body(body, sizeof(body), stage);
            sent += sw_transport_request(tr[0], ep, SW_MSG_STATE_GET, body, blen, NULL, 500, 0,
                                         on_response, &answered) == 0;
            sent += sw_transport_request(tr[0], ep, SW_MSG_PING, NULL, 0, NULL, 500, 0,
                                         on_response, &answered) == 0;
            sent += sw_transport_request(tr[1], ep, SW_MSG_PING, NULL, 0, NULL, 500, 0,
                                         on_response, &answered) == 0;
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(20000);
    }
    /* the last requests time out */
    until = sw_now_s() + 0.6;
    while (sw_now_s() < until) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    printf("# stranger: %llu requests sent to %d nodes, %llu answered\n",
           (unsigned long long)sent, neps, (unsigned long long)answered);
    for (int i = 0; i < NKEYS; i++)
        sw_transport_close(tr[i], on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    for (int i = 0; i < NKEYS; i++)
        sw_identity_release(&id[i]);
    sw_manifest_release(&man);
    return answered == 0 ? 0 : 1;
}
