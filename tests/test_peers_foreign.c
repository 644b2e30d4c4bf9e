/*
 * test_peers_foreign - a node of another run talks to a run's bootstrap:
 * its ANNOUNCE must be dropped (wire "run" drop, never listed) and its
 * DIR_GET never answered.  Used by t0330-bad-manifest.sh.
 *
 *   test_peers_foreign RUN_ENDPOINT OTHER_MANIFEST
 * exit 0 when ignored, 1 when answered, 2 on usage or setup errors.
 */
#include "sw.h"

#include <stdio.h>
#include <string.h>

#include "manifest.h"
#include "node.h"
#include "proto.h"
#include "status.h"
#include "transport.h"

static int result = -1;

static void
on_reply(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    (void)t;
    (void)m;
    (void)arg;
    result = status;
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
    struct sw_peer_rec r;
    uint8_t buf[4096];
    struct sw_wire_buf b;
    msgpack_packer pk;
    uv_loop_t loop;
    char why[512];

    if (argc != 3)
        return 2;
    if (sw_manifest_load(&man, argv[2], why, sizeof(why)) < 0) {
        fprintf(stderr, "%s\n", why);
        return 2;
    }
    uv_loop_init(&loop);
    if (sw_identity_global_init() < 0 || sw_identity_generate(&id) < 0 ||
        sw_transport_new(&tr, &loop, &id, man.run_id, NULL) < 0)
        return 2;
    memset(&r, 0, sizeof(r));
    snprintf(r.ep, sizeof(r.ep), "tcp://127.0.0.1:9");
    r.stage = 0;
    r.state = SW_NODE_TRAINING;
    r.loss = -1;
    sw_wire_buf_init(&b, buf, sizeof(buf));
    sw_wire_buf_packer(&pk, &b);
    sw_status_rec_pack(&pk, &r, false, 0);
    if (sw_transport_send(tr, argv[1], SW_MSG_ANNOUNCE, b.data, b.len, NULL) < 0 ||
        sw_transport_request(tr, argv[1], SW_MSG_DIR_GET, NULL, 0, NULL, 1500, 0, on_reply,
                             NULL) < 0)
        return 2;
    while (result == -1)
        uv_run(&loop, UV_RUN_ONCE);
    printf("# DIR_GET from another run: %s\n", result == 0 ? "answered" : sw_strerror(result));
    sw_transport_close(tr, on_closed, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    sw_identity_release(&id);
    sw_manifest_release(&man);
    return result == -SW_ETIMEDOUT ? 0 : 1;
}
