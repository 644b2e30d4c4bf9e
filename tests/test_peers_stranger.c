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
#include "hostile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admit.h"
#include "dht_codec.h"

#define NKEYS 3

static void
on_response(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    uint64_t *answered = arg;

    (void)t;
    (void)m;
    if (status == 0)
        (*answered)++;
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

    hostile_rec(&r, id->pk, "tcp://127.0.0.1:9", 0, 1000000, 5e7);
    if (hostile_signed_rec(man, id, &r, tid, 30, val, sizeof(val), &rec) < 0)
        return -1;
    memset(&m, 0, sizeof(m));
    m.type = SW_DHT_STORE;
    m.tid = tid;
    snprintf(m.ep, sizeof(m.ep), "tcp://127.0.0.1:9");
    m.recs = &rec;
    m.n_recs = 1;
    return sw_dht_msg_encode(&m, out, len);
}

static struct sw_manifest man;
static struct sw_identity id[NKEYS];
static struct sw_transport *tr[NKEYS];
static uint64_t answered, tid = 1;

/* One round's requests to t; how many were sent. */
static uint64_t
round_to(void *arg, const struct hostile_target *t)
{
    uint8_t body[1024], *store;
    size_t blen, slen;
    uint64_t sent = 0;

    (void)arg;
    blen = hostile_step_body(body, sizeof(body), 1000000);
    sent += sw_transport_request(tr[0], t->ep, SW_MSG_PREPARE, body, blen, NULL, 500, 0,
                                 on_response, &answered) == 0;
    if (store_body(&man, &id[0], tid++, &store, &slen) == 0) {
        sent += sw_transport_request(tr[0], t->ep, SW_DHT_STORE, store, slen, NULL, 500, 0,
                                     on_response, &answered) == 0;
        sw_free(store);
    }
    blen = hostile_state_get_body(body, sizeof(body), t->stage, 16, false);
    sent += sw_transport_request(tr[0], t->ep, SW_MSG_STATE_GET, body, blen, NULL, 500, 0,
                                 on_response, &answered) == 0;
    sent += sw_transport_request(tr[0], t->ep, SW_MSG_PING, NULL, 0, NULL, 500, 0, on_response,
                                 &answered) == 0;
    sent += sw_transport_request(tr[1], t->ep, SW_MSG_PING, NULL, 0, NULL, 500, 0, on_response,
                                 &answered) == 0;
    return sent;
}

int
main(int argc, char **argv)
{
    struct hostile_target *tg;
    uint8_t cert[SW_CERT_MAX];
    size_t clen;
    uv_loop_t loop;
    char why[512];
    int neps = argc - 4;
    uint64_t sent;

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
    if (hostile_targets("test_peers_stranger", argv + 4, neps, NULL, false, &tg) < 0)
        return 2;
    sent = hostile_rounds(&loop, atof(argv[2]), tg, neps, round_to, NULL);
    /* the last requests time out */
    hostile_run_for(&loop, 0.6, NULL);
    printf("# stranger: %llu requests sent to %d nodes, %llu answered\n",
           (unsigned long long)sent, neps, (unsigned long long)answered);
    for (int i = 0; i < NKEYS; i++)
        sw_transport_close(tr[i], hostile_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    for (int i = 0; i < NKEYS; i++)
        sw_identity_release(&id[i]);
    sw_manifest_release(&man);
    free(tg);
    return answered == 0 ? 0 : 1;
}
