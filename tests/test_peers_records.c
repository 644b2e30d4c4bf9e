/*
 * test_peers_records - a hostile process for t0381: it asks BOOT (the
 * bootstrap's lobby endpoint) for the run's endpoint, joins the run's DHT
 * as a client through it and, for SECONDS,
 * publishes every second COUNT stage records of stage STAGE, each signed
 * by a fresh key of its own, that claim a training node with a huge
 * capacity at the highest step the run's records tell, on an endpoint
 * where nobody serves (tcp://127.0.0.1:PORT, PORT a closed one).  Anyone
 * may publish records (swarm-protocol(7), Stage records): the nodes must
 * leave these out (unproven), send them nothing of the pipeline, and
 * swarmctl status must list them as unproven and count them nowhere.
 *
 *   test_peers_records MANIFEST BOOT SECONDS COUNT STAGE PORT
 * exit 0 after publishing, 2 on usage or setup errors.
 */
#include "sw.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dhtnode.h"
#include "identity.h"
#include "manifest.h"
#include "node.h"
#include "proto.h"
#include "status.h"
#include "transport.h"
#include "wire.h"

#define MAX_FAKES 100

struct ctx {
    uv_loop_t loop;
    struct sw_identity id, fake[MAX_FAKES];
    struct sw_transport *tr, *lobby;
    char boot[SW_PROTO_EP_MAX];
    bool answered;
    struct sw_dhtnode *dht;
    struct sw_status_scan scan;
    struct sw_manifest man;
    uv_timer_t tick;
    int count, stage, port, puts, rounds;
    uint64_t step, seq, until_ms;
    bool scanning, joined;
};

static void
on_closed(void *arg)
{
    (void)arg;
}

static void
on_manifest(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct ctx *c = arg;
    struct sw_manifest_reply r;

    (void)t;
    c->answered = true;
    if (status == 0 && sw_node_manifest_read(m, &r) == 0)
        snprintf(c->boot, sizeof(c->boot), "%s", r.boot[0] ? r.boot : r.ep);
    uv_stop(&c->loop);
}

static void
on_put(void *arg, int status, unsigned n_stored, const struct sw_dht_lookup_info *info)
{
    struct ctx *c = arg;

    (void)info;
    c->puts += status == 0 && n_stored > 0;
}

static void
on_scan(void *arg, int status, const struct sw_peer_rec *recs, int n, uint64_t max_step)
{
    struct ctx *c = arg;
    char mine[32];

    (void)max_step;
    c->scanning = false;
    snprintf(mine, sizeof(mine), "tcp://127.0.0.1:%d", c->port);
    if (status == 0 || status == -SW_ETIMEDOUT)
        for (int i = 0; i < n; i++) /* the real nodes' step */
            if (recs[i].step > c->step && strcmp(recs[i].ep, mine))
                c->step = recs[i].step;
}

static void
on_joined(void *arg, int status, const struct sw_dht_contact *nodes, size_t n,
          const struct sw_dht_lookup_info *info)
{
    struct ctx *c = arg;

    (void)nodes;
    (void)n;
    (void)info;
    c->joined |= status == 0;
}

/* Every second: the fakes' records, fresh (a new version each), at the run's step. */
static void
on_tick(uv_timer_t *h)
{
    struct ctx *c = h->data;
    uint8_t val[512];

    if (sw_now_ms() > c->until_ms) {
        uv_timer_stop(h);
        uv_stop(&c->loop);
        return;
    }
    if (!c->scanning && sw_status_scan_start(&c->scan, on_scan, c) == 0)
        c->scanning = true;
    c->seq++;
    c->rounds++;
    for (int i = 0; i < c->count; i++) {
        struct sw_peer_rec r;
        struct sw_wire_buf b;
        msgpack_packer pk;
        struct sw_dht_record d;

        memset(&r, 0, sizeof(r));
        snprintf(r.ep, sizeof(r.ep), "tcp://127.0.0.1:%d", c->port);
        r.stage = c->stage;
        r.state = SW_REC_TRAINING;
        r.step = c->step;
        r.tps = r.cap = 5e7;
        r.loss = -1;
        r.norm = 1;
        snprintf(r.hash, sizeof(r.hash), "%016x", (unsigned)i);
        sw_wire_buf_init(&b, val, sizeof(val));
        sw_wire_buf_packer(&pk, &b);
        sw_status_rec_pack(&pk, &r, 10, 0);
        if (b.overflow)
            continue;
        memset(&d, 0, sizeof(d));
        sw_status_stage_key(d.key, c->man.run_id, c->stage);
        d.seq = c->seq;
        d.ttl_s = 10;
        d.val = val;
        d.val_len = b.len;
        sw_dht_record_sign(&d, c->fake[i].sk);
        if (sw_dhtnode_put(c->dht, &d, on_put, c) < 0)
            fprintf(stderr, "test_peers_records: put failed\n");
    }
}

int
main(int argc, char **argv)
{
    static struct ctx c;
    char why[512];
    const char *eps[1];
    int err;

    if (argc != 7) {
        fprintf(stderr, "usage: test_peers_records MANIFEST BOOT SECONDS COUNT STAGE PORT\n");
        return 2;
    }
    c.count = atoi(argv[4]);
    c.stage = atoi(argv[5]);
    c.port = atoi(argv[6]);
    if (c.count < 1 || c.count > MAX_FAKES || c.port <= 0 || c.port > 65535)
        return 2;
    if (sw_manifest_load(&c.man, argv[1], why, sizeof(why)) < 0) {
        fprintf(stderr, "test_peers_records: %s\n", why);
        return 2;
    }
    if (c.stage < 0 || c.stage >= c.man.stages)
        return 2;
    uv_loop_init(&c.loop);
    if ((err = sw_identity_global_init()) < 0 || (err = sw_identity_generate(&c.id)) < 0)
        return 2;
    for (int i = 0; i < c.count; i++)
        if (sw_identity_generate(&c.fake[i]) < 0)
            return 2;
    if ((err = sw_transport_new(&c.lobby, &c.loop, &c.id, sw_proto_lobby_run, NULL)) < 0 ||
        (err = sw_transport_request(c.lobby, argv[2], SW_MSG_MANIFEST_GET, NULL, 0, NULL, 5000,
                                    1, on_manifest, &c)) < 0) {
        fprintf(stderr, "test_peers_records: lobby: %s\n", sw_strerror(err));
        return 2;
    }
    while (!c.answered)
        uv_run(&c.loop, UV_RUN_ONCE);
    if (!c.boot[0]) {
        fprintf(stderr, "test_peers_records: no run endpoint from '%s'\n", argv[2]);
        return 2;
    }
    if ((err = sw_transport_new(&c.tr, &c.loop, &c.id, c.man.run_id, NULL)) < 0 ||
        (err = sw_dhtnode_new(&c.dht, &c.loop, c.tr, NULL, NULL)) < 0 ||
        (err = sw_status_scan_init(&c.scan, c.dht, c.man.run_id, c.man.stages)) < 0) {
        fprintf(stderr, "test_peers_records: setup: %s\n", sw_strerror(err));
        return 2;
    }
    eps[0] = c.boot;
    if ((err = sw_dhtnode_bootstrap(c.dht, eps, 1, on_joined, &c)) < 0) {
        fprintf(stderr, "test_peers_records: bootstrap: %s\n", sw_strerror(err));
        return 2;
    }
    c.until_ms = sw_now_ms() + (uint64_t)(atof(argv[3]) * 1000);
    uv_timer_init(&c.loop, &c.tick);
    c.tick.data = &c;
    uv_timer_start(&c.tick, on_tick, 500, 1000);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    printf("# test_peers_records: %d records of stage %d at tcp://127.0.0.1:%d, %d rounds, "
           "%d puts stored, last step claimed %llu\n", c.count, c.stage, c.port, c.rounds,
           c.puts, (unsigned long long)c.step);
    uv_close((uv_handle_t *)&c.tick, NULL);
    if (c.scanning)
        sw_status_scan_cut(&c.scan);
    sw_dhtnode_close(c.dht);
    sw_transport_close(c.tr, on_closed, NULL);
    sw_transport_close(c.lobby, on_closed, NULL);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    sw_status_scan_release(&c.scan);
    sw_manifest_release(&c.man);
    for (int i = 0; i < c.count; i++)
        sw_identity_release(&c.fake[i]);
    sw_identity_release(&c.id);
    return 0;
}
