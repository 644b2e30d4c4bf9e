/*
 * test_peers_records - a hostile process for t0386 and t0387: it asks
 * BOOT (the bootstrap's lobby endpoint) for the run's endpoint, joins the
 * run's DHT as a client through it and, for SECONDS, every second:
 *
 *   fakes COUNT STAGE PORT: publishes COUNT stage records of stage STAGE,
 *   each signed by a fresh key of its own, that claim a training node with
 *   a huge capacity at the highest step the run's records tell, on an
 *   endpoint where nobody serves (tcp://127.0.0.1:PORT, PORT a closed
 *   one).  Anyone may publish records (swarm-protocol(7), Stage records):
 *   the nodes must leave these out (unproven), send them nothing of the
 *   pipeline, and swarmctl status must list them as unproven.
 *
 *   zeros STAGE AHEAD: serves a run endpoint of its own (so its record is
 *   proven: it answers PING) and publishes one record of stage STAGE
 *   under a key above every other, claiming the stage's real node's hash
 *   and capacity at its step + AHEAD; it answers STATE_GET with all-zero
 *   parameters and moments at that step (the numel it learnt from the
 *   real node), a hash question (hstep) with -ENOENT, and PREPARE with
 *   "not ready".  No node may copy its state (swarm-protocol(7), Verified
 *   state).
 *
 *   test_peers_records MANIFEST BOOT SECONDS fakes COUNT STAGE PORT
 *   test_peers_records MANIFEST BOOT SECONDS zeros STAGE AHEAD
 * exit 0 after publishing, 2 on usage or setup errors.
 */
#include "hostile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAKES 100

struct ctx {
    uv_loop_t loop;
    struct sw_identity id, fake[MAX_FAKES];
    struct sw_transport *tr, *lobby;
    char boot[SW_PROTO_EP_MAX];
    struct sw_dhtnode *dht;
    struct sw_status_scan scan;
    struct sw_manifest man;
    uv_timer_t tick;
    int count, stage, port, puts, rounds;
    uint64_t step, seq, until_ms;
    bool scanning;
    /* zeros */
    bool zeros, asking;
    int ahead;
    char ep[SW_PROTO_EP_MAX], real_ep[SW_PROTO_EP_MAX], real_hash[17];
    uint64_t real_step, numel, served;
    double real_cap;
};

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
        for (int i = 0; i < n; i++) { /* the real nodes' step */
            if (recs[i].step > c->step && strcmp(recs[i].ep, mine) && strcmp(recs[i].ep, c->ep))
                c->step = recs[i].step;
            if (c->zeros && recs[i].stage == c->stage && strcmp(recs[i].ep, c->ep) &&
                sw_rec_training(recs[i].state) && recs[i].step >= c->real_step) {
                c->real_step = recs[i].step;
                c->real_cap = recs[i].cap;
                snprintf(c->real_ep, sizeof(c->real_ep), "%s", recs[i].ep);
                snprintf(c->real_hash, sizeof(c->real_hash), "%s", recs[i].hash);
            }
        }
}

/* zeros: the real node's answer to a STATE_GET of nothing tells the numel */
static void
on_numel(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"err", "step", "t", "lr_mult", "norm", "normc",
                                       "numel", "off", "n", NULL};
    struct ctx *c = arg;
    msgpack_unpacked u;
    uint64_t numel;

    (void)t;
    c->asking = false;
    if (status < 0 || !sw_proto_open(m->hdr.body, m->hdr.body_len, &u, keys))
        return;
    if (sw_proto_get_u64(&u.data, "numel", &numel) == 0 && numel > 0)
        c->numel = numel;
    msgpack_unpacked_destroy(&u);
}

static void
reply(struct ctx *c, const struct sw_transport_msg *m, uint32_t type, msgpack_sbuffer *sb,
      const float *pl, size_t plen)
{
    struct sw_payload p = {pl, plen, NULL, NULL, NULL};

    if (sw_transport_reply(c->tr, &m->route, type, sb->data, sb->size, plen ? &p : NULL) < 0)
        fprintf(stderr, "test_peers_records: reply failed\n");
}

static void
on_prepare(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    struct ctx *c = arg;
    msgpack_sbuffer sb;
    msgpack_packer pk;

    (void)t;
    if (!m->route.rid)
        return;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    sw_proto_pack_key(&pk, "step");
    msgpack_pack_uint64(&pk, c->real_step + (uint64_t)c->ahead);
    sw_proto_pack_key(&pk, "stage");
    msgpack_pack_uint32(&pk, (uint32_t)c->stage);
    sw_proto_pack_key(&pk, "ok");
    msgpack_pack_false(&pk);
    reply(c, m, SW_MSG_READY, &sb, NULL, 0);
    msgpack_sbuffer_destroy(&sb);
}

static void
on_state_get(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    static const char *const keys[] = {"stage", "which", "off", "n", "snap", "hstep", NULL};
    struct ctx *c = arg;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    uint64_t which = 0, off = 0, cnt = 0, hstep = 0, claim = c->real_step + (uint64_t)c->ahead;
    bool has_hstep, has_snap;

    (void)t;
    if (!m->route.rid || !sw_proto_open(m->hdr.body, m->hdr.body_len, &u, keys))
        return;
    has_hstep = sw_proto_get_u64(&u.data, "hstep", &hstep) == 0;
    has_snap = sw_proto_get(&u.data, "snap") != NULL;
    if (sw_proto_get_u64(&u.data, "which", &which) < 0 ||
        sw_proto_get_u64(&u.data, "off", &off) < 0 || sw_proto_get_u64(&u.data, "n", &cnt) < 0)
        which = off = cnt = 0;
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (has_hstep) {
        msgpack_pack_map(&pk, 3);
        sw_proto_pack_key(&pk, "err");
        msgpack_pack_int64(&pk, -SW_ENOENT);
        sw_proto_pack_key(&pk, "stage");
        msgpack_pack_uint64(&pk, (uint64_t)c->stage);
        sw_proto_pack_key(&pk, "step");
        msgpack_pack_uint64(&pk, hstep);
        reply(c, m, SW_MSG_STATE, &sb, NULL, 0);
    } else if (has_snap || which > 2 || !c->numel || off > c->numel || cnt > c->numel - off) {
        msgpack_pack_map(&pk, 2);
        sw_proto_pack_key(&pk, "err");
        msgpack_pack_int64(&pk, -SW_ENOENT);
        sw_proto_pack_key(&pk, "step");
        msgpack_pack_uint64(&pk, claim);
        reply(c, m, SW_MSG_STATE, &sb, NULL, 0);
    } else {
        float *zeros = calloc(cnt ? cnt : 1, sizeof(float));
        if (!zeros)
            abort();
        msgpack_pack_map(&pk, 8);
        sw_proto_pack_key(&pk, "err");
        msgpack_pack_int64(&pk, 0);
        sw_proto_pack_key(&pk, "step");
        msgpack_pack_uint64(&pk, claim);
        sw_proto_pack_key(&pk, "t");
        msgpack_pack_uint64(&pk, claim);
        sw_proto_pack_key(&pk, "lr_mult");
        msgpack_pack_double(&pk, 1.0);
        sw_proto_pack_key(&pk, "norm");
        msgpack_pack_double(&pk, 1.0);
        sw_proto_pack_key(&pk, "numel");
        msgpack_pack_uint64(&pk, c->numel);
        sw_proto_pack_key(&pk, "off");
        msgpack_pack_uint64(&pk, off);
        sw_proto_pack_key(&pk, "n");
        msgpack_pack_uint64(&pk, cnt);
        reply(c, m, SW_MSG_STATE, &sb, zeros, cnt * sizeof(float));
        c->served++;
        free(zeros);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* zeros: learn the numel, then publish this node's record. */
static void
zeros_tick(struct ctx *c)
{
    uint8_t val[512];
    struct sw_peer_rec r;
    struct sw_dht_record d;

    if (!c->real_ep[0])
        return;
    if (!c->numel && !c->asking) {
        uint8_t q[128];
        size_t qlen = hostile_state_get_body(q, sizeof(q), c->stage, 0, false);
        c->asking = sw_transport_request(c->tr, c->real_ep, SW_MSG_STATE_GET, q, qlen, NULL, 2000,
                                         0, on_numel, c) == 0;
    }
    if (!c->numel)
        return;
    hostile_rec(&r, NULL, c->ep, c->stage, c->real_step + (uint64_t)c->ahead, c->real_cap);
    r.norm = 1;
    snprintf(r.hash, sizeof(r.hash), "%s", c->real_hash);
    if (hostile_signed_rec(&c->man, &c->id, &r, c->seq, 10, val, sizeof(val), &d) < 0)
        return;
    if (sw_dhtnode_put(c->dht, &d, on_put, c) < 0)
        fprintf(stderr, "test_peers_records: put failed\n");
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
    if (c->zeros) {
        zeros_tick(c);
        return;
    }
    for (int i = 0; i < c->count; i++) {
        struct sw_peer_rec r;
        struct sw_dht_record d;
        char ep[32];

        snprintf(ep, sizeof(ep), "tcp://127.0.0.1:%d", c->port);
        hostile_rec(&r, NULL, ep, c->stage, c->step, 5e7);
        r.norm = 1;
        snprintf(r.hash, sizeof(r.hash), "%016x", (unsigned)i);
        if (hostile_signed_rec(&c->man, &c->fake[i], &r, c->seq, 10, val, sizeof(val), &d) < 0)
            continue;
        if (sw_dhtnode_put(c->dht, &d, on_put, c) < 0)
            fprintf(stderr, "test_peers_records: put failed\n");
    }
}

int
main(int argc, char **argv)
{
    static struct ctx c;
    char why[512];
    struct sw_manifest_reply mr;
    const char *eps[1] = {c.boot};
    int err;

    if (argc == 8 && !strcmp(argv[4], "fakes")) {
        c.count = atoi(argv[5]);
        c.stage = atoi(argv[6]);
        c.port = atoi(argv[7]);
    } else if (argc == 7 && !strcmp(argv[4], "zeros")) {
        c.zeros = true;
        c.count = 1;
        c.stage = atoi(argv[5]);
        c.ahead = atoi(argv[6]);
        c.port = 1;
    } else {
        fprintf(stderr, "usage: test_peers_records MANIFEST BOOT SECONDS fakes COUNT STAGE PORT\n"
                "       test_peers_records MANIFEST BOOT SECONDS zeros STAGE AHEAD\n");
        return 2;
    }
    if (c.count < 1 || c.count > MAX_FAKES || c.port <= 0 || c.port > 65535 || c.ahead < 0)
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
    /* zeros: a key above every other (the lowest key of stage 0 leads) */
    while (c.zeros && !(c.id.pk[0] == 0xff && c.id.pk[1] >= 0xf0)) {
        sw_identity_release(&c.id);
        if (sw_identity_generate(&c.id) < 0)
            return 2;
    }
    for (int i = 0; i < c.count; i++)
        if (sw_identity_generate(&c.fake[i]) < 0)
            return 2;
    if (hostile_manifest(&c.loop, &c.id, argv[2], 5000, 1, &c.lobby, &mr) == 0)
        snprintf(c.boot, sizeof(c.boot), "%s", mr.boot[0] ? mr.boot : mr.ep);
    if (!c.boot[0]) {
        fprintf(stderr, "test_peers_records: no run endpoint from '%s'\n", argv[2]);
        return 2;
    }
    if ((err = sw_transport_new(&c.tr, &c.loop, &c.id, c.man.run_id, NULL)) < 0 ||
        (err = sw_proto_pipeline_class(sw_transport_wire(c.tr))) < 0 ||
        (c.zeros && ((err = sw_transport_bind(c.tr, "tcp://127.0.0.1:*", c.ep, sizeof(c.ep))) < 0 ||
                     (err = sw_transport_on(c.tr, SW_MSG_STATE_GET, on_state_get, &c)) < 0 ||
                     (err = sw_transport_on(c.tr, SW_MSG_PREPARE, on_prepare, &c)) < 0)) ||
        (err = hostile_join(&c.loop, c.tr, NULL, eps, 1, false, &c.dht)) < 0 ||
        (err = sw_status_scan_init(&c.scan, c.dht, c.man.run_id, c.man.stages)) < 0) {
        fprintf(stderr, "test_peers_records: setup: %s\n", sw_strerror(err));
        return 2;
    }
    if (c.zeros) {
        char key[65];
        printf("# stranger serving at %s key %s\n", c.ep, sw_identity_hex(key, c.id.pk, 32));
        fflush(stdout);
    }
    c.until_ms = sw_now_ms() + (uint64_t)(atof(argv[3]) * 1000);
    uv_timer_init(&c.loop, &c.tick);
    c.tick.data = &c;
    uv_timer_start(&c.tick, on_tick, 500, 1000);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    if (c.zeros)
        printf("# test_peers_records: a stranger on stage %d at %s, %d rounds, %d puts stored, "
               "%llu zero pieces served, numel %llu\n", c.stage, c.ep, c.rounds, c.puts,
               (unsigned long long)c.served, (unsigned long long)c.numel);
    else
        printf("# test_peers_records: %d records of stage %d at tcp://127.0.0.1:%d, %d rounds, "
               "%d puts stored, last step claimed %llu\n", c.count, c.stage, c.port, c.rounds,
               c.puts, (unsigned long long)c.step);
    uv_close((uv_handle_t *)&c.tick, NULL);
    if (c.scanning)
        sw_status_scan_cut(&c.scan);
    sw_dhtnode_close(c.dht);
    sw_transport_close(c.tr, hostile_closed, NULL);
    sw_transport_close(c.lobby, hostile_closed, NULL);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    sw_status_scan_release(&c.scan);
    sw_manifest_release(&c.man);
    for (int i = 0; i < c.count; i++)
        sw_identity_release(&c.fake[i]);
    sw_identity_release(&c.id);
    return 0;
}
