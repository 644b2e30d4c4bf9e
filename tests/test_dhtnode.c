/*
 * test_dhtnode.c - five DHT nodes on real transports (tcp on loopback, one
 * libuv loop, one process): they join through the first, one publishes a
 * signed record, every other one finds it; then everything closes cleanly.
 */
#include "sw.h"

#include <sodium.h>
#include <string.h>

#include "dhtnode.h"
#include "identity.h"
#include "tap.h"
#include "transport.h"

#define NN 5

static uv_loop_t loop;
static int pending, closed;
static bool deadline_hit;

struct peer {
    struct sw_identity id;
    struct sw_transport *t;
    struct sw_dhtnode *n;
    char ep[SW_TRANSPORT_MAX_ENDPOINT];
    int join_status;
    int get_n;
    char got[32];
};

static struct peer peers[NN];

static void
join_cb(void *arg, int status, const struct sw_dht_contact *c, size_t n,
        const struct sw_dht_lookup_info *info)
{
    ((struct peer *)arg)->join_status = status;
    pending--;
}

static void
put_cb(void *arg, int status, unsigned n, const struct sw_dht_lookup_info *info)
{
    *(int *)arg = status == 0 ? (int)n : status;
    pending--;
}

static void
get_cb(void *arg, int status, const struct sw_dht_record *recs, size_t n,
       const struct sw_dht_lookup_info *info)
{
    struct peer *p = arg;

    p->get_n = status == 0 ? (int)n : status;
    if (n == 1 && recs[0].val_len < sizeof(p->got))
        memcpy(p->got, recs[0].val, recs[0].val_len);
    pending--;
}

static void
on_deadline(uv_timer_t *h)
{
    deadline_hit = true;
}

static void
closed_cb(void *arg)
{
    closed++;
}

/* Runs the loop until nothing is pending or 10 s passed. */
static uv_timer_t deadline;

static void
wait_all(void)
{
    deadline_hit = false;
    uv_timer_start(&deadline, on_deadline, 10000, 0);
    while (pending > 0 && !deadline_hit)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&deadline);
}

int
main(void)
{
    uint8_t run[SW_WIRE_RUN_BYTES] = {0x42};
    struct sw_dht_params p;
    struct sw_dht_record r;
    uint8_t key[32];
    int joined = 0, found = 0, put_n = 0;

    if (sw_identity_global_init() < 0)
        return tap_skip_all("libsodium unavailable");
    sw_log_level = SW_LOG_ERROR;
    uv_loop_init(&loop);
    uv_timer_init(&loop, &deadline);
    sw_dht_params_default(&p);
    p.rpc_timeout_ms = 1000;
    for (int i = 0; i < NN; i++) {
        uint8_t seed[32] = {(uint8_t)(i + 1), 0x77};

        if (sw_identity_from_seed(&peers[i].id, seed) < 0 ||
            sw_transport_new(&peers[i].t, &loop, &peers[i].id, run, NULL) < 0 ||
            sw_transport_bind(peers[i].t, "tcp://127.0.0.1:*", peers[i].ep,
                              sizeof(peers[i].ep)) < 0 ||
            sw_dhtnode_new(&peers[i].n, &loop, peers[i].t, peers[i].ep, &p) < 0) {
            tap_ok(0, "node %d set up", i);
            return tap_done();
        }
    }
    tap_ok(1, "%d nodes bound on loopback (first at %s)", NN, peers[0].ep);

    for (int i = 1; i < NN; i++) {
        const char *boot[1] = {peers[0].ep};

        pending++;
        if (sw_dhtnode_bootstrap(peers[i].n, boot, 1, join_cb, &peers[i]) < 0)
            pending--;
        wait_all();
        joined += peers[i].join_status == 0;
    }
    tap_ok(joined == NN - 1, "%d of %d nodes joined through the first", joined, NN - 1);
    tap_ok(sw_dht_count_contacts(sw_dhtnode_dht(peers[0].n)) == NN - 1,
           "the first knows all the others (%zu)",
           sw_dht_count_contacts(sw_dhtnode_dht(peers[0].n)));

    memset(&r, 0, sizeof(r));
    crypto_generichash(key, sizeof(key), (const uint8_t *)"run/stage/0", 11, NULL, 0);
    memcpy(r.key, key, 32);
    r.seq = 1;
    r.ttl_s = 60;
    r.val = (const uint8_t *)"hello swarm";
    r.val_len = 11;
    sw_dht_record_sign(&r, peers[2].id.sk);
    pending++;
    tap_ok(sw_dhtnode_put(peers[2].n, &r, put_cb, &put_n) == 0, "put started");
    wait_all();
    tap_ok(put_n == NN, "the record is stored on all %d nodes (k > N) (%d)", NN, put_n);

    for (int i = 0; i < NN; i++) {
        pending++;
        if (sw_dhtnode_get(peers[i].n, key, get_cb, &peers[i]) < 0)
            pending--;
    }
    wait_all();
    for (int i = 0; i < NN; i++)
        found += peers[i].get_n == 1 && strcmp(peers[i].got, "hello swarm") == 0;
    tap_ok(found == NN, "every node finds it over tcp (%d of %d)", found, NN);

    for (int i = 0; i < NN; i++)
        sw_dhtnode_close(peers[i].n);
    for (int i = 0; i < NN; i++)
        sw_transport_close(peers[i].t, closed_cb, NULL);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    tap_ok(closed == NN && uv_loop_close(&loop) == 0, "nodes and transports closed, loop empty");
    for (int i = 0; i < NN; i++)
        sw_identity_release(&peers[i].id);
    return tap_done();
}
