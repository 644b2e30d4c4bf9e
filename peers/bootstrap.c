/*
 * bootstrap.c - swarmd bootstrap: a run's seed (node.h).  It serves the
 * signed manifest on its lobby (node.c), seeds the run's DHT, trains
 * nothing, and reads the stage records every SW_NODE_BOOT_SCAN_MS for the
 * operator's log (who came and went) and its metrics.  Once a scan shows the
 * run's last step done, it publishes the end record (status.h) and puts it
 * again every SW_STATUS_END_EVERY_MS, so that swarmctl status shows the run
 * finished after the nodes left.
 */
#include "sw.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "live.h"
#include "node.h"

struct bootstrap {
    struct sw_node_live live; /* who is alive, as a training node judges it (no pings) */
    struct sw_peer_rec dir[SW_PROTO_MAX_NODES];
    int ndir;
    uint64_t run_step, scan_ms;
    double loss;            /* the last stage's newest loss seen (-1: none) */
    uint64_t loss_step;     /* the step it was seen at */
    uint64_t end_ms, end_seq; /* the end record's last put (0: none yet), its version */
    bool end_loss;            /* that record has the last loss */
    bool stop;
};

static struct bootstrap *
self(struct sw_node *n)
{
    return n->self;
}

static int
boot_start(struct sw_node *n)
{
    struct bootstrap *b;
    char rh[65], oh[65], ep[2 * SW_PROTO_EP_MAX + 16];

    if (!(b = n->self = sw_calloc(1, sizeof(struct bootstrap))))
        return SW_EXIT_FAIL;
    sw_node_live_init(&b->live, n);
    b->loss = -1;
    sw_log(SW_LOG_INFO, "bootstrap of run %s (owner %s) on %s (run transport %s)",
           sw_identity_hex(rh, n->man.run_id, 32), sw_identity_hex(oh, n->owner, 32),
           n->lobby_ep, n->ep);
    snprintf(ep, sizeof(ep), "\"ep\":");
    sw_json_str(ep + strlen(ep), sizeof(ep) - strlen(ep), n->lobby_ep);
    sw_log_out("listening", ep, "listening %s", n->lobby_ep);
    return 0;
}

/* The end record (status.h), signed with the bootstrap's key. */
static void
publish_end(struct sw_node *n, uint64_t now)
{
    struct bootstrap *b = self(n);
    struct sw_run_end e = {b->run_step, b->loss_step == b->run_step ? b->loss : -1, n->cert,
                           n->cert_len};
    int err;

    if (!b->end_ms)
        sw_log(SW_LOG_INFO, "the run is finished at step %llu: publishing its end record",
               (unsigned long long)b->run_step);
    /* a higher seq replaces the last record, also across restarts with the same key */
    b->end_seq = SW_MAX(b->end_seq + 1, (uint64_t)time(NULL) * 1000);
    b->end_ms = now;
    b->end_loss = e.loss >= 0;
    if ((err = sw_status_end_publish(n->dht, n->man.run_id, n->id.sk, &e, b->end_seq)) < 0)
        sw_log(SW_LOG_WARN, "cannot publish the end record: %s", sw_strerror(err));
}

static uint64_t
boot_tick(struct sw_node *n, uint64_t now)
{
    struct bootstrap *b = self(n);

    if (b->stop)
        return SW_NODE_DONE;
    if (now - b->scan_ms >= SW_NODE_BOOT_SCAN_MS && sw_node_scan(n) == 0)
        b->scan_ms = now;
    if (b->end_ms && now - b->end_ms >= SW_STATUS_END_EVERY_MS)
        publish_end(n, now);
    /* a scan still running: look again a little later */
    return SW_MAX(b->scan_ms + SW_NODE_BOOT_SCAN_MS, now + SW_NODE_TICK_MS);
}

static void
boot_signal(struct sw_node *n, int sig)
{
    sw_log(SW_LOG_INFO, "signal %d: leaving", sig);
    self(n)->stop = true;
}

static bool
listed(const struct sw_peer_rec *recs, int cnt, const uint8_t *pk)
{
    for (int i = 0; i < cnt; i++)
        if (!memcmp(recs[i].pk, pk, 32))
            return true;
    return false;
}

/* The operator's log: who came and went. */
static void
boot_scanned(struct sw_node *n, int status, const struct sw_peer_rec *recs, int cnt,
             uint64_t max_step)
{
    static struct sw_peer_rec alive[SW_PROTO_MAX_NODES];
    struct bootstrap *b = self(n);
    char who[13];

    if (status < 0) {
        SW_LOG_RATELIMITED(SW_LOG_WARN, 5000, "cannot read the stages from the DHT: %s",
                           sw_strerror(status));
        return;
    }
    /* liveness: a record whose version has not changed for dead_ms is a dead node's */
    cnt = sw_live_scan(&b->live.lv, sw_now_ms(), recs, SW_MIN(cnt, SW_PROTO_MAX_NODES),
                       (const uint8_t(*)[32])n->scan.gone, n->scan.ngone, 500, alive);
    recs = alive;
    for (int i = 0; i < cnt; i++)
        if (!listed(b->dir, b->ndir, recs[i].pk))
            sw_log(SW_LOG_INFO, "node %s joined stage %d at %s", sw_proto_who(who, recs[i].pk),
                   recs[i].stage, recs[i].ep);
    for (int i = 0; i < b->ndir; i++)
        if (!listed(recs, cnt, b->dir[i].pk))
            sw_log(SW_LOG_INFO, "node %s of stage %d left or expired",
                   sw_proto_who(who, b->dir[i].pk), b->dir[i].stage);
    memcpy(b->dir, recs, (size_t)cnt * sizeof(*recs));
    b->ndir = cnt;
    if (max_step > b->run_step)
        b->run_step = max_step;
    for (int i = 0; i < cnt; i++)
        if (recs[i].stage == n->man.stages - 1 && recs[i].loss >= 0 &&
            recs[i].step >= b->loss_step) {
            b->loss = recs[i].loss;
            b->loss_step = recs[i].step;
        }
    /* the run's last step is done: say so in the DHT (again once its last loss is known) */
    if (b->run_step >= (uint64_t)n->man.steps &&
        (!b->end_ms || (!b->end_loss && b->loss_step == b->run_step)))
        publish_end(n, sw_now_ms());
}

static int
boot_metrics(struct sw_node *n, char *buf, size_t len, size_t *off)
{
    struct bootstrap *b = self(n);
    int S = n->man.stages;

#define OUT(...) SW_NODE_METRIC(buf, len, off, __VA_ARGS__)
    OUT("# HELP swarm_stage_nodes Live nodes per stage.\n# TYPE swarm_stage_nodes gauge\n");
    for (int s = 0; s < S; s++) {
        int c = 0;
        for (int i = 0; i < b->ndir; i++)
            c += b->dir[i].stage == s;
        OUT("swarm_stage_nodes{stage=\"%d\"} %d\n", s, c);
    }
    OUT("# HELP swarm_stage_step Highest step completed per stage.\n"
        "# TYPE swarm_stage_step gauge\n");
    for (int s = 0; s < S; s++) {
        uint64_t st = 0;
        for (int i = 0; i < b->ndir; i++)
            if (b->dir[i].stage == s && b->dir[i].step > st)
                st = b->dir[i].step;
        OUT("swarm_stage_step{stage=\"%d\"} %llu\n", s, (unsigned long long)st);
    }
    OUT("# HELP swarm_stage_tokens_per_second Tokens per second per stage.\n"
        "# TYPE swarm_stage_tokens_per_second gauge\n");
    for (int s = 0; s < S; s++) {
        double t = 0;
        for (int i = 0; i < b->ndir; i++)
            if (b->dir[i].stage == s)
                t += b->dir[i].tps;
        OUT("swarm_stage_tokens_per_second{stage=\"%d\"} %.1f\n", s, t);
    }
    OUT("# HELP swarm_run_step Highest step any node completed.\n# TYPE swarm_run_step gauge\n"
        "swarm_run_step %llu\n", (unsigned long long)b->run_step);
    for (int i = 0; i < b->ndir; i++)
        if (b->dir[i].stage == S - 1 && b->dir[i].loss >= 0) {
            OUT("# HELP swarm_run_loss Training loss of the last step.\n"
                "# TYPE swarm_run_loss gauge\nswarm_run_loss %.6f\n", b->dir[i].loss);
            break;
        }
#undef OUT
    return 0;
}

static void
boot_release(struct sw_node *n)
{
    sw_free(n->self);
    n->self = NULL;
}

const struct sw_role sw_bootstrap_role = {"bootstrap",  boot_start,   boot_tick,   boot_signal,
                                          boot_scanned, boot_metrics, boot_release};
