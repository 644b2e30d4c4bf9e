/*
 * test_peers_foreign - a node of another run tries to join a run's DHT
 * through the run's bootstrap: every request it sends (FIND_NODE) must be
 * dropped by the wire (wrong run id), so its join times out with nobody
 * answering and it can store nothing there.  Used by t0330-bad-manifest.sh.
 *
 *   test_peers_foreign RUN_ENDPOINT OTHER_MANIFEST
 * exit 0 when ignored, 1 when answered, 2 on usage or setup errors.
 */
#include "sw.h"

#include <stdio.h>
#include <string.h>

#include "dhtnode.h"
#include "manifest.h"
#include "node.h"
#include "proto.h"
#include "status.h"
#include "transport.h"

static int result = 1;
static bool done;

static void
on_joined(void *arg, int status, const struct sw_dht_contact *c, size_t n,
          const struct sw_dht_lookup_info *info)
{
    (void)arg;
    (void)c;
    (void)n;
    (void)info;
    result = status;
    done = true;
}

static void
on_closed(void *arg)
{
    (void)arg;
}

int
main(int argc, char **argv)
{
    struct sw_manifest man;
    struct sw_identity id;
    struct sw_transport *tr;
    struct sw_dhtnode *dht;
    struct sw_dht_params p;
    const char *eps[1];
    uv_loop_t loop;
    char why[512];

    if (argc != 3)
        return 2;
    if (sw_manifest_load(&man, argv[2], why, sizeof(why)) < 0) {
        fprintf(stderr, "%s\n", why);
        return 2;
    }
    uv_loop_init(&loop);
    sw_dht_params_default(&p);
    p.rpc_timeout_ms = 1500;
    eps[0] = argv[1];
    if (sw_identity_global_init() < 0 || sw_identity_generate(&id) < 0 ||
        sw_transport_new(&tr, &loop, &id, man.run_id, NULL) < 0 ||
        sw_dhtnode_new(&dht, &loop, tr, NULL, &p) < 0 ||
        sw_dhtnode_bootstrap(dht, eps, 1, on_joined, NULL) < 0)
        return 2;
    while (!done)
        uv_run(&loop, UV_RUN_ONCE);
    printf("# joining the DHT of another run: %s\n",
           result == 0 ? "answered" : sw_strerror(result));
    sw_dhtnode_close(dht);
    sw_transport_close(tr, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    sw_identity_release(&id);
    sw_manifest_release(&man);
    return result == -SW_ETIMEDOUT ? 0 : 1;
}
