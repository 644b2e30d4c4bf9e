/*
 * test_swarm_sim.c - the swarm protocol under deterministic simulation: many
 * training nodes (peers/trainer.h, the same core swarmd runs) in one
 * process, over a simulated clock, network and DHT, each scenario drawn from
 * a seed (in the manner of FoundationDB's simulation and TigerBeetle's VOPR).
 *
 * Every source of time and chance is the simulator's: the clock is a
 * variable, events run in (time, sequence) order from one heap, every draw
 * comes from the scenario's splitmix64 stream, the nodes' keys and the
 * trainers' own draws too.  So a seed replays exactly:
 *   test_swarm_sim --seed N [--verbose]
 * prints the scenario, its events with --verbose, and what failed.
 *
 * The network: one-way delay per link with jitter, each sender's uplink a
 * queue at its rate, messages on one connection in order (as TCP) unless
 * the scenario reorders them, optional loss; requests time out as the
 * transport's do; PINGs are answered by the "transport" of a live node as
 * soon as its loop is free.  A node is busy while it computes (the stub
 * model charges simulated time per forward and backward): what it sends
 * leaves when the compute before it ends, and what it receives waits.  The
 * DHT is one directory of stage records with ttls, reached with a delay;
 * port probes are refused at killed nodes; a killed node's messages that had
 * not left its uplink when it died are lost.  Nodes are killed (kill -9),
 * whole stages at once, two adjacent stages, the leader; newcomers join with
 * --stage auto, some with a killed node's key.  Drawn apart from the rest
 * of a scenario (so that the others stay what they were): a sixth start
 * every node with --stage auto at once (the stage-choice race), a quarter
 * have a stranger (a key in no record) send PREPARE(step + 1000) and a GO
 * naming only itself to a live node every few seconds, an eighth churn (a
 * node, a stage or the leader killed every 3-8 s, newcomers a little
 * later), a quarter of those with neither kills nor moves lose their first
 * two partial gradients (a connection closed); --grad-loss has every
 * scenario lose them, kills and moves included (not all of those pass).
 *
 * The model is a stub (tests/stub_model.h): the protocol is what is under
 * test; swarm == swarmsim parity stays with the multi-process tests.
 *
 * Checked after every event:
 *   - the stub's own checks: every update has each visit of its step once,
 *     from that step, with the right activations (no microbatch lost to a
 *     replan or counted twice, no step applied twice);
 *   - the last stage's loss is the known loss of the step's microbatches;
 *   - two live nodes that applied the same step of a stage agree on the
 *     parameter hash (replicas stay bit-identical);
 *   - a node's step never goes back but when its state was replaced, and a
 *     rebuilt stage steps back at most one step;
 *   - a rebuild by CheckFree happens only when no node of the stage had been
 *     training for a while (copy first, DESIGN.md's order);
 *   - no stall: some node updates within SIM_STALL_MS of the last update or
 *     disturbance, until the run ends;
 *   - a stranger's PREPARE or GO changes nothing at the node (its phase,
 *     step, step phase, the PREPARE it answers);
 * and at the end: the run finished with every survivor at the last step and
 * exit 0, or it stopped with SW_EXIT_LOST where the lost stages really
 * could not be rebuilt (two adjacent stages, or a boundary stage without
 * CheckFree+; never before the run's first update); newcomers that then
 * found its records lapsed and wait alone at step 0 in a run of their own
 * (waits_anew) end the scenario too.
 */
#include "sw.h"

#include <signal.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "rng.h"
#include "stub_model.h"
#include "tap.h"
#include "trainer.h"

#define MAXN 48                  /* nodes of one scenario, newcomers included */
#define MAXS 8                   /* stages of one scenario, at most (reps[]) */
#define T0 1000000ull            /* the clock's start (ms) */
#define SIM_STALL_MS 45000       /* no update this long after a disturbance: a stall (the
                                    leader restarts or skips a step after 30 s) */
#define SIM_END_MS 900000        /* a scenario's time limit */
#define DHT_MS 5                 /* one way to the DHT, at least */
#define SIM_MAX_EVENTS 4000000   /* more in one scenario: a livelock */
#define SIM_SEEDS 5000           /* scenarios of a make check */

/* ---- the world ---- */

struct msg {
    int from, to;
    uint32_t type;
    uint8_t *body, *payload;
    size_t blen, plen;
    uint64_t rid;                /* a request's id (request or response) */
    bool response;
    uint64_t gone_at;            /* when its last byte leaves the sender's uplink */
};

enum { EV_DELIVER, EV_TIMEOUT, EV_TICK, EV_SCAN, EV_PUT, EV_PUT_DONE, EV_PROBE, EV_ACTION,
       EV_COMPUTED };

struct event {
    uint64_t t, seq;
    int kind, node;
    uint64_t a, b;               /* per kind: tick generation, request id, action... */
    struct msg *m;
    struct sw_peer_rec *rec;     /* EV_PUT */
};

struct request {
    int from, to;
    uint64_t tag;
    bool done;
};

struct record {
    bool used;
    struct sw_peer_rec rec;      /* pk, ep, stage, state, step, ...; heard_ms, step_ms, seq */
    uint64_t expires;
};

struct simnode {
    bool used, alive, closed;
    int id, exit_code, want_stage;
    uint8_t pk[32];
    char ep[32];
    struct sw_trainer t;
    struct sw_stub stub;
    bool have_stub;
    struct sw_trainer_env env;
    uint64_t busy_until;         /* its loop is blocked until then (compute) */
    uint64_t compute_gen;        /* the last EV_COMPUTED scheduled (compute apart) */
    uint64_t clock;              /* compute of the handler in progress (ms) */
    uint64_t tick_gen, tick_at;
    uint64_t last_step;          /* t.step after its last event */
    bool was_fresh;              /* and its state was freshly rebuilt (step.h, FRESH) */
    int installs;                /* stub installs seen */
    uint64_t train_since;        /* in TRAINING since (0: not) */
    int partition;               /* > 0: cut off from everyone (the group) */
    uint64_t killed_at;          /* when it was killed (0: never) */
    bool rogue;                  /* a stranger's key: no trainer, it only sends */
    bool hostile;                /* a stranger's process (hostile_deliver), no trainer */
};

struct scenario {
    uint64_t seed;
    int S, M, steps, reps[MAXS];
    bool plus, reorder;
    double delay_ms, jitter, rate, loss, cost_ms; /* rate: bytes per ms */
    int dead_ms;
    bool balance;            /* [balance] on, short hold and cool-down; imbalanced, movable */
    bool auto_start;         /* the first nodes too choose their stages (--stage auto) at once */
    bool hostile;            /* a stranger sends PREPARE(step + 1000) and GO now and then */
    bool churn;              /* kills of nodes, stages and the leader every few seconds */
    bool grad_loss;          /* the first 2 partial gradients sent are lost (a connection
                                closed under them: net/transport.h, Requests) */
    bool apart;              /* forwards and backwards compute apart from the loop (swarmd's
                                compute thread): the loop stays free meanwhile */
    int grad_lost;
    char what[640];
};

/* What the scenarios did (figures for the log). */
struct stats {
    uint64_t events, updates, recoveries[4], kills, newcomers, partials, stopped_lost, sim_ms;
    uint64_t hostile;        /* a stranger's PREPAREs and GOs delivered */
    uint64_t max_gap_ms;     /* the longest time without an update (but for a stopped run) */
    uint64_t max_gap_seed;
    uint64_t stale_ready, moves, balance_runs, early_sent, early_used, resends, resent;
    uint64_t relays_sent, relays_taken;
};

struct sim {
    struct scenario sc;
    struct sw_manifest man;
    uint64_t now, seq, rng;
    uint64_t xrng;               /* the hostile's and the churn's draws (apart from rng) */
    int rogue;                   /* the stranger's slot (-1: none) */
    struct event *heap;
    size_t nheap, capheap;
    struct simnode node[MAXN];
    int nnode;
    struct request *req;
    size_t nreq, capreq;
    struct record dir[MAXN];
    uint64_t link_free[MAXN];
    uint64_t chan_last[MAXN][MAXN][2];
    uint64_t lineages;
    /* the run, as the checks see it */
    uint64_t last_update, last_disturb;
    uint8_t (*hashes)[32];       /* [stage * (steps + 1) + step] first hash seen (0: none) */
    int *hash_node;              /* who set it */
    bool failed;
    char why[512];
    int verbose;
    struct stats st;
    /* hostile scenarios (hostile_run): fake records, a stranger's node */
    int nfakes, fake_stage;      /* records of endpoints where nobody serves */
    int bad, bad_ahead;          /* the stranger's node (-1: none); its claimed step's lead */
    bool bad_hash;               /* its record claims another hash than the real node's */
    int liar;                    /* hostile 5: 1 + the replica whose READYs lie "busy" (0: none) */
    uint64_t to_fakes;           /* pipeline messages sent to a fake's endpoint */
};

static struct sim *cur; /* for the abort handler */
static int harsh;        /* --harsh: message loss and nodes cut off too */
static bool all_grad_loss; /* --grad-loss: every scenario loses partials, disturbances too */
static int cur_node = -1; /* whose event runs (log lines) */

/* Log lines: simulated time and node. */
static int
log_prefix(char *buf, size_t len)
{
    return snprintf(buf, len, "%9.3f n%-2d ", cur ? (double)(cur->now - T0) / 1000.0 : 0.0,
                    cur_node);
}

static uint64_t
draw(struct sim *s)
{
    return sw_splitmix64(&s->rng);
}

static double
uniform(struct sim *s)
{
    return sw_rng_uniform01(&s->rng);
}

__attribute__((format(printf, 2, 3))) static void
fail(struct sim *s, const char *fmt, ...)
{
    va_list ap;

    if (s->failed)
        return;
    s->failed = true;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
}

/* ---- the event heap ---- */

static bool
before(const struct event *a, const struct event *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void
push(struct sim *s, struct event e)
{
    size_t i;

    if (s->nheap == s->capheap) {
        s->capheap = s->capheap ? 2 * s->capheap : 1024;
        s->heap = realloc(s->heap, s->capheap * sizeof(*s->heap));
        SW_ASSERT(s->heap);
    }
    e.seq = s->seq++;
    i = s->nheap++;
    while (i > 0 && before(&e, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = e;
}

static struct event
pop(struct sim *s)
{
    struct event top = s->heap[0], last = s->heap[--s->nheap];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->nheap)
            break;
        if (c + 1 < s->nheap && before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->nheap)
        s->heap[i] = last;
    return top;
}

static void
msg_free(struct msg *m)
{
    if (!m)
        return;
    free(m->body);
    free(m->payload);
    free(m);
}

/* ---- the network ---- */

static int
node_of_ep(struct sim *s, const char *ep)
{
    int i;

    if (sscanf(ep, "sim://%d", &i) != 1 || i < 0 || i >= s->nnode)
        return -1;
    return i;
}

static bool
cut(struct sim *s, int a, int b)
{
    return s->node[a].partition != s->node[b].partition;
}

/* When a message of bytes from a (after its compute so far) arrives at b, or 0 if lost. */
static uint64_t
transit(struct sim *s, int a, int b, size_t bytes, int chan)
{
    struct simnode *na = &s->node[a];
    uint64_t leave = s->now + na->clock, arrive;
    double d = s->sc.delay_ms * (1.0 + s->sc.jitter * uniform(s));

    if (a == b)
        return leave;
    if (s->link_free[a] > leave)
        leave = s->link_free[a];
    s->link_free[a] = leave + (uint64_t)((double)bytes / s->sc.rate);
    arrive = s->link_free[a] + (uint64_t)d;
    if (s->sc.loss > 0 && uniform(s) < s->sc.loss)
        return 0;
    if (!s->sc.reorder) {
        if (arrive < s->chan_last[a][b][chan])
            arrive = s->chan_last[a][b][chan];
        s->chan_last[a][b][chan] = arrive;
    }
    return arrive;
}

static struct msg *
msg_new(int from, int to, uint32_t type, const void *body, size_t blen,
        const struct sw_payload *p)
{
    struct msg *m = calloc(1, sizeof(*m));

    SW_ASSERT(m);
    m->from = from;
    m->to = to;
    m->type = type;
    m->blen = blen;
    if (blen) {
        m->body = malloc(blen);
        memcpy(m->body, body, blen);
    }
    if (p && p->len) {
        m->plen = p->len;
        m->payload = malloc(p->len);
        memcpy(m->payload, p->data, p->len);
    }
    if (p && p->free_cb)
        p->free_cb((void *)p->data, p->free_arg);
    return m;
}

static void
post(struct sim *s, struct msg *m, int chan)
{
    uint64_t at = cut(s, m->from, m->to) ? 0 : transit(s, m->from, m->to, m->blen + m->plen + 200,
                                                      chan);

    if (!at) {
        msg_free(m);
        return;
    }
    m->gone_at = m->from == m->to ? at : s->link_free[m->from];
    push(s, (struct event){.t = at, .kind = EV_DELIVER, .node = m->to, .m = m});
}

/* A pipeline message to a fake record's endpoint (hostile_run): counted. */
static void
fake_sent(struct sim *s, const char *ep, uint32_t type)
{
    int i;

    if (sscanf(ep, "sim://%d", &i) == 1 && i >= 1000 &&
        (type == SW_MSG_PREPARE || type == SW_MSG_GO || type == SW_MSG_FWD ||
         type == SW_MSG_BWD || type == SW_MSG_GRAD))
        s->to_fakes++;
}

static struct simnode *
env_node(void *arg)
{
    return arg;
}

static int
env_send(void *arg, const char *ep, uint32_t type, const void *body, size_t len,
         const struct sw_payload *p)
{
    struct simnode *n = env_node(arg);
    int to = node_of_ep(cur, ep);

    if (to < 0) {
        fake_sent(cur, ep, type);
        if (p && p->free_cb)
            p->free_cb((void *)p->data, p->free_arg);
        return 0; /* nobody there: the connection never comes up */
    }
    if (cur->sc.grad_loss && type == SW_MSG_GRAD && to != n->id && cur->sc.grad_lost < 2) {
        cur->sc.grad_lost++; /* taken, then lost with its connection */
        if (p && p->free_cb)
            p->free_cb((void *)p->data, p->free_arg);
        return 0;
    }
    post(cur, msg_new(n->id, to, type, body, len, p), 0);
    return 0;
}

static int
env_request(void *arg, const char *ep, uint32_t type, const void *body, size_t len,
            uint64_t timeout_ms, int retries, uint64_t tag)
{
    struct sim *s = cur;
    struct simnode *n = env_node(arg);
    int to = node_of_ep(s, ep);
    struct msg *m;

    if (s->nreq + 1 >= s->capreq) {
        s->capreq = s->capreq ? 2 * s->capreq : 1024;
        s->req = realloc(s->req, s->capreq * sizeof(*s->req));
        SW_ASSERT(s->req);
    }
    if (!s->nreq)
        s->nreq = 1; /* request ids start at 1: 0 is a one-way message's */
    s->req[s->nreq] = (struct request){n->id, to, tag, false};
    push(s, (struct event){.t = s->now + n->clock + timeout_ms * (uint64_t)(retries + 1),
                           .kind = EV_TIMEOUT, .node = n->id, .a = s->nreq});
    if (to >= 0) {
        m = msg_new(n->id, to, type, body, len, NULL);
        m->rid = s->nreq;
        post(s, m, 0);
    } else {
        fake_sent(s, ep, type);
    }
    s->nreq++;
    return 0;
}

/* Hostile 5: the liar's READY of an odd step from step 10 on says "busy"
 * (still summing the step before's partials) whatever the node holds; a
 * replica planned at the even steps, so the leader's plan of the step
 * before names it each time (lead.h, Exchanges). */
static int
liar_reply(struct simnode *n, int to, uint64_t rid, const void *body, size_t len)
{
    static const char *const keys[] = {"step", "stage", "ok", "hash", NULL};
    static struct sw_body b;
    msgpack_unpacked u;
    uint64_t step = 0;
    struct msg *m;

    if (sw_proto_open(body, len, &u, keys)) {
        if (sw_proto_get_u64(&u.data, "step", &step) < 0)
            step = 0;
        msgpack_unpacked_destroy(&u);
    }
    if (step < 10 || step % 2 == 0) {
        m = msg_new(n->id, to, SW_MSG_READY, body, len, NULL);
    } else {
        sw_body_init(&b);
        msgpack_pack_map(&b.pk, 4);
        sw_proto_pack_key(&b.pk, "step");
        msgpack_pack_uint64(&b.pk, step);
        sw_proto_pack_key(&b.pk, "stage");
        msgpack_pack_uint32(&b.pk, (uint32_t)n->t.stage);
        sw_proto_pack_key(&b.pk, "ok");
        msgpack_pack_false(&b.pk);
        sw_proto_pack_key(&b.pk, "busy");
        msgpack_pack_true(&b.pk);
        m = msg_new(n->id, to, SW_MSG_READY, b.b.data, b.b.len, NULL);
    }
    m->rid = rid;
    m->response = true;
    post(cur, m, 1);
    return 0;
}

static int
env_reply(void *arg, const struct sw_transport_route *r, uint32_t type, const void *body,
          size_t len, const struct sw_payload *p)
{
    struct simnode *n = env_node(arg);
    struct msg *m;
    int to;

    memcpy(&to, r->id, sizeof(to));
    if (cur->liar == n->id + 1 && type == SW_MSG_READY)
        return liar_reply(n, to, r->rid, body, len);
    m = msg_new(n->id, to, type, body, len, p);
    m->rid = r->rid;
    m->response = true;
    post(cur, m, 1);
    return 0;
}

static void
env_drop(void *arg, int reason)
{
    (void)arg;
    (void)reason;
}

static void
env_publish(void *arg, const struct sw_peer_rec *me, uint32_t ttl_s, uint64_t step_age_ms)
{
    struct sim *s = cur;
    struct simnode *n = env_node(arg);
    struct sw_peer_rec *r = malloc(sizeof(*r));
    uint64_t at = s->now + n->clock + DHT_MS + (uint64_t)s->sc.delay_ms;

    SW_ASSERT(r);
    *r = *me;
    r->heard_ms = at;
    r->step_ms = at - step_age_ms;
    if (n->partition)
        return free(r);
    push(s, (struct event){.t = at, .kind = EV_PUT, .node = n->id, .a = ttl_s, .rec = r});
}

static int
env_scan(void *arg)
{
    struct sim *s = cur;
    struct simnode *n = env_node(arg);

    push(s, (struct event){.t = s->now + n->clock + 2 * (DHT_MS + (uint64_t)s->sc.delay_ms),
                           .kind = EV_SCAN, .node = n->id});
    return 0;
}

static void
env_probe(void *arg, const uint8_t *pk, const char *ep, uint64_t timeout_ms)
{
    struct sim *s = cur;
    struct simnode *n = env_node(arg);
    int to = node_of_ep(s, ep);
    uint64_t rtt = 2 * (uint64_t)s->sc.delay_ms + 1;
    bool refused = to >= 0 && !s->node[to].alive && !cut(s, n->id, to);

    (void)pk;
    push(s, (struct event){.t = s->now + n->clock + (to < 0 || cut(s, n->id, to) ? timeout_ms
                                                                                    : rtt),
                           .kind = EV_PROBE, .node = n->id, .a = (uint64_t)to, .b = refused});
}

static void check_report(struct sim *s, struct simnode *n, const struct sw_step_report *r);

static void
env_stepped(void *arg, const struct sw_step_report *r)
{
    check_report(cur, env_node(arg), r);
}

/* ---- nodes ---- */

static struct simnode *
node_add(struct sim *s, int stage, const uint8_t *pk)
{
    struct simnode *n;
    struct sw_trainer_opts o;

    if (s->nnode >= MAXN)
        return NULL;
    n = &s->node[s->nnode];
    memset(n, 0, sizeof(*n));
    n->id = s->nnode++;
    n->used = n->alive = true;
    n->want_stage = stage;
    if (pk) {
        memcpy(n->pk, pk, 32);
    } else {
        for (int i = 0; i < 4; i++) {
            uint64_t r = draw(s);
            memcpy(n->pk + 8 * i, &r, 8);
        }
    }
    snprintf(n->ep, sizeof(n->ep), "sim://%d", n->id);
    n->env = (struct sw_trainer_env){n,         env_send,    env_request, env_reply,
                                     env_drop,  env_publish, env_scan,    env_probe,
                                     env_stepped, NULL,      NULL};
    memset(&o, 0, sizeof(o));
    o.stage = stage;
    o.movable = stage < 0 || s->sc.balance; /* as if it had chosen its stage by auto */
    o.dead_ms = s->sc.dead_ms;
    o.ban_ms = 60000;
    o.linger_ms = 200;
    o.exit_at_end = true;
    o.rng = draw(s);
    if (sw_trainer_init(&n->t, n->pk, n->ep, &s->man, &o, &n->env, s->now) < 0)
        fail(s, "node %d: trainer init failed", n->id);
    push(s, (struct event){.t = s->now, .kind = EV_TICK, .node = n->id, .a = n->tick_gen});
    return n;
}

static void
node_kill(struct sim *s, struct simnode *n)
{
    if (!n->alive)
        return;
    n->alive = false;
    n->train_since = 0;
    n->killed_at = s->now;
    s->st.kills++;
    s->last_disturb = s->now;
    if (s->verbose)
        fprintf(stderr, "%8llu kill node %d (stage %d, step %llu)\n",
                (unsigned long long)(s->now - T0), n->id, n->t.stage,
                (unsigned long long)n->t.step);
}

/* After any event at n: the stage set up when chosen, the tick rescheduled, the checks. */
static void check_node(struct sim *s, struct simnode *n);

static void
after(struct sim *s, struct simnode *n, uint64_t wake)
{
    if (n->alive && !n->closed && sw_trainer_wants_stage(&n->t)) {
        if (n->have_stub) { /* a move: the old stage goes first */
            sw_stub_release(&n->stub);
            n->have_stub = false;
            n->installs = 0;
        }
        if (sw_stub_init(&n->stub, &s->man, n->t.stage, s->sc.cost_ms, &n->clock, &s->lineages) <
                0 ||
            sw_trainer_set_stage(&n->t, &sw_stub_ops, &n->stub, n->stub.P) < 0) {
            fail(s, "node %d: stage setup failed", n->id);
            return;
        }
        n->stub.apart = s->sc.apart;
        n->have_stub = true;
        wake = s->now;
    }
    if (n->have_stub && n->stub.pending && !n->stub.scheduled) {
        /* computing apart: the result comes back after the compute's cost */
        n->stub.scheduled = true;
        push(s, (struct event){.t = s->now + n->clock + (uint64_t)s->sc.cost_ms,
                               .kind = EV_COMPUTED, .node = n->id, .a = ++n->compute_gen,
                               .b = n->stub.gen});
    }
    if (n->clock) {
        n->busy_until = s->now + n->clock;
        n->clock = 0;
    }
    if (n->t.phase == SW_PHASE_CLOSED && !n->closed) {
        n->closed = true;
        n->exit_code = n->t.exit_code;
        if (n->exit_code == SW_EXIT_LOST)
            s->st.stopped_lost++;
        if (s->verbose)
            fprintf(stderr, "%8llu node %d closed: exit %d at step %llu\n",
                    (unsigned long long)(s->now - T0), n->id, n->exit_code,
                    (unsigned long long)n->t.step);
        return;
    }
    check_node(s, n);
    if (!n->closed && wake != UINT64_MAX && (n->tick_at <= s->now || wake < n->tick_at)) {
        n->tick_at = SW_MAX(wake, s->now);
        push(s, (struct event){.t = n->tick_at, .kind = EV_TICK, .node = n->id,
                               .a = ++n->tick_gen});
    }
}

/* ---- the checks ---- */

static void
check_report(struct sim *s, struct simnode *n, const struct sw_step_report *r)
{
    size_t k = (size_t)n->t.stage * ((size_t)s->sc.steps + 1) + r->step;
    double want = 0;

    s->st.updates++;
    s->last_update = s->now;
    if (r->step >= (uint64_t)s->sc.steps) {
        fail(s, "node %d applied step %llu of a %d-step run", n->id, (unsigned long long)r->step,
             s->sc.steps);
        return;
    }
    if (r->loss >= 0 && n->stub.partial == 0) {
        for (int m = 0; m < s->sc.M; m++)
            want += sw_stub_loss((int64_t)r->step * s->sc.M + m);
        if (r->loss != want / s->sc.M)
            fail(s, "node %d (last stage) reported loss %.6f for step %llu, want %.6f", n->id,
                 r->loss, (unsigned long long)r->step, want / s->sc.M);
    }
    /* against a node still in the run: one that left it (gone, or done with
     * the run's last step and leaving) takes its state along, like a dead
     * one, and a later rebuild of the stage may differ (seed 4759: a node
     * finished the last step and left; the last stage had not, and the
     * stage it left was rebuilt and trained that step again) */
    if (s->hash_node[k] >= 0 && s->node[s->hash_node[k]].alive &&
        s->node[s->hash_node[k]].t.phase < SW_PHASE_DONE &&
        s->hash_node[k] != n->id && memcmp(s->hashes[k], n->t.phash, 32))
        fail(s, "nodes %d and %d of stage %d disagree on the parameters after step %llu",
             s->hash_node[k], n->id, n->t.stage, (unsigned long long)r->step);
    if (s->hash_node[k] < 0 || !s->node[s->hash_node[k]].alive ||
        s->node[s->hash_node[k]].t.phase >= SW_PHASE_DONE) {
        memcpy(s->hashes[k], n->t.phash, 32);
        s->hash_node[k] = n->id;
    }
}

/* CheckFree only where no node of the stage was training (DESIGN.md's order). */
static void
check_rebuild(struct sim *s, struct simnode *n)
{
    uint64_t settled = (uint64_t)s->sc.dead_ms + 4000;

    for (int i = 0; i < s->nnode; i++) {
        struct simnode *o = &s->node[i];
        if (o != n && o->alive && !o->closed && o->t.stage == n->t.stage && o->train_since &&
            s->now - o->train_since > settled && !o->partition && !n->partition)
            fail(s, "node %d rebuilt stage %d by %s while node %d had been training it for %llu "
                 "ms", n->id, n->t.stage, n->stub.last_install == 3 ? "checkfree+" : "checkfree",
                 o->id, (unsigned long long)(s->now - o->train_since));
    }
}

static void
check_node(struct sim *s, struct simnode *n)
{
    uint64_t step = n->t.step;

    if (n->have_stub && n->stub.violations)
        fail(s, "node %d (stage %d): %s", n->id, n->t.stage, n->stub.why);
    if (n->have_stub && n->stub.installs != n->installs) {
        /* a new state: copied, rebuilt, restored or drawn */
        n->installs = n->stub.installs;
        if (n->stub.last_install >= 2) {
            s->st.recoveries[n->stub.last_install]++;
            check_rebuild(s, n);
        } else if (n->stub.last_install == 1 && step > 0) {
            s->st.recoveries[1]++;
        }
    } else if (step < n->last_step && !(n->last_step - step == 1 && n->was_fresh)) {
        fail(s, "node %d (stage %d) went back from step %llu to %llu", n->id, n->t.stage,
             (unsigned long long)n->last_step, (unsigned long long)step);
    }
    n->last_step = step;
    n->was_fresh = n->t.st.phase == SW_STEP_FRESH;
    if (trainer_in_run(&n->t) && !n->train_since)
        n->train_since = s->now;
    else if (!trainer_in_run(&n->t))
        n->train_since = 0;
    s->st.partials += (uint64_t)n->stub.partial;
    n->stub.partial = 0;
}

/* ---- running events ---- */

static bool run_over(struct sim *s);

/* The run's step never goes back: no PREPARE or GO for a step two behind
 * what a live node has completed (one behind is a stage rebuilt from a
 * source that had finished the step, which steps back into it).  Once the
 * run is over (run_over), a newcomer that finds none of its records proven
 * seeds a run of its own (waits_anew), whose steps are not the old run's. */
static void
check_barrier(struct sim *s, const struct msg *m)
{
    static const char *const pkeys[] = {"step", NULL}, *const gkeys[] = {"step", "ver", "plan",
                                                                          NULL};
    msgpack_unpacked u;
    uint64_t step;

    if (run_over(s))
        return;
    if (!sw_proto_open(m->body, m->blen, &u, m->type == SW_MSG_GO ? gkeys : pkeys))
        return;
    if (sw_proto_get_u64(&u.data, "step", &step) == 0)
        for (int i = 0; i < s->nnode; i++)
            if (s->node[i].alive && !s->node[i].closed && s->node[i].t.step > step + 1)
                fail(s, "node %d sent %s for step %llu, node %d has completed %llu steps",
                     m->from, m->type == SW_MSG_GO ? "GO" : "PREPARE", (unsigned long long)step,
                     i, (unsigned long long)s->node[i].t.step);
    msgpack_unpacked_destroy(&u);
}

static void
deliver(struct sim *s, struct simnode *n, struct event *e)
{
    struct msg *m = e->m;
    struct sw_transport_msg tm;
    struct request *q;

    memset(&tm, 0, sizeof(tm));
    tm.hdr.type = m->type;
    memcpy(tm.hdr.sender, s->node[m->from].pk, 32);
    tm.hdr.body = m->body;
    tm.hdr.body_len = m->blen;
    tm.payload = m->payload;
    tm.payload_len = m->plen;
    if (m->response) {
        q = &s->req[m->rid];
        if (q->done || q->from != n->id)
            return;
        q->done = true;
        sw_trainer_response(&n->t, s->now, q->tag, 0, &tm);
        return;
    }
    if (m->type == SW_MSG_PING) {
        /* the transport answers (net/transport.h), once the loop is free */
        struct msg *r = msg_new(n->id, m->from, SW_MSG_PING + 1, NULL, 0, NULL);
        r->rid = m->rid;
        r->response = true;
        post(s, r, 1);
        return;
    }
    memcpy(tm.route.id, &m->from, sizeof(m->from));
    tm.route.len = sizeof(m->from);
    tm.route.rid = m->rid;
    if (s->node[m->from].rogue) {
        /* a stranger's PREPARE or GO: counted and dropped, nothing else */
        uint64_t step = n->t.step;
        int phase = n->t.phase, sphase = n->t.st.phase;
        s->st.hostile++;
        sw_trainer_input(&n->t, s->now, &tm);
        if (n->t.step != step || n->t.phase != phase || n->t.st.phase != sphase ||
            !memcmp(n->t.st.prep.pk, s->node[m->from].pk, 32))
            fail(s, "node %d took a stranger's %s (phase %s -> %s, step %llu -> %llu)", n->id,
                 m->type == SW_MSG_GO ? "GO" : "PREPARE", sw_phase_name(phase),
                 sw_phase_name(n->t.phase), (unsigned long long)step,
                 (unsigned long long)n->t.step);
        return;
    }
    if (m->type == SW_MSG_GO || m->type == SW_MSG_PREPARE)
        check_barrier(s, m);
    sw_trainer_input(&n->t, s->now, &tm);
}

/* The directory's records for a scan (as sw_status_scan gives them). */
static void
scan(struct sim *s, struct simnode *n)
{
    static struct sw_peer_rec recs[MAXN];
    static uint8_t gone[MAXN][32];
    int cnt = 0, ngone = 0;
    uint64_t max_step = 0;

    if (n->partition) {
        sw_trainer_scanned(&n->t, s->now, -SW_ETIMEDOUT, NULL, 0, NULL, 0, 0);
        return;
    }
    for (int i = 0; i < MAXN; i++) {
        struct record *d = &s->dir[i];
        if (!d->used || d->expires <= s->now)
            continue;
        if (d->rec.step > max_step)
            max_step = d->rec.step;
        if (d->rec.state == SW_REC_LEAVING)
            memcpy(gone[ngone++], d->rec.pk, 32);
        else
            recs[cnt++] = d->rec;
    }
    /* by stage, then key */
    for (int i = 1; i < cnt; i++)
        for (int j = i; j > 0 && (recs[j - 1].stage > recs[j].stage ||
                                  (recs[j - 1].stage == recs[j].stage &&
                                   memcmp(recs[j - 1].pk, recs[j].pk, 32) > 0));
             j--) {
            struct sw_peer_rec t = recs[j];
            recs[j] = recs[j - 1];
            recs[j - 1] = t;
        }
    sw_trainer_scanned(&n->t, s->now, 0, recs, cnt, (const uint8_t(*)[32])gone, ngone, max_step);
}

static void
put(struct sim *s, struct simnode *n, struct sw_peer_rec *r, uint32_t ttl)
{
    struct record *d = NULL;

    for (int i = 0; i < MAXN && !d; i++)
        if (s->dir[i].used && !memcmp(s->dir[i].rec.pk, r->pk, 32))
            d = &s->dir[i];
    for (int i = 0; i < MAXN && !d; i++)
        if (!s->dir[i].used || s->dir[i].expires <= s->now)
            d = &s->dir[i];
    if (d) {
        d->used = true;
        d->rec = *r;
        d->rec.seq = s->now;
        d->expires = s->now + (uint64_t)ttl * 1000;
    }
    push(s, (struct event){.t = s->now + DHT_MS + (uint64_t)s->sc.delay_ms, .kind = EV_PUT_DONE,
                           .node = n->id});
}

static void action(struct sim *s, struct event *e);
static void hostile_deliver(struct sim *s, struct simnode *n, const struct msg *m);

static void
run_event(struct sim *s, struct event *e)
{
    struct simnode *n = e->kind == EV_ACTION ? NULL : &s->node[e->node];
    uint64_t wake = UINT64_MAX;

    if (n && n->hostile) {
        if (e->kind == EV_DELIVER && !cut(s, e->m->from, n->id))
            hostile_deliver(s, n, e->m);
        msg_free(e->m);
        free(e->rec);
        return;
    }
    if (n && (!n->alive || n->closed)) {
        msg_free(e->m);
        free(e->rec);
        return;
    }
    if (n && n->busy_until > e->t && e->kind != EV_PUT) {
        /* its loop is computing: this waits */
        e->t = n->busy_until;
        push(s, *e);
        return;
    }
    s->st.events++;
    cur_node = n ? n->id : -1;
    if (s->verbose > 1)
        fprintf(stderr, "%9.3f n%-2d event %d type %u\n", (double)(s->now - T0) / 1000.0,
                cur_node, e->kind, e->m ? e->m->type : 0);
    switch (e->kind) {
    case EV_DELIVER:
        /* a kill -9 takes with it what had not left its uplink yet: of the
         * messages one handler sent (a leader's GOs), some arrive, not all */
        if (!cut(s, e->m->from, n->id) &&
            !(s->node[e->m->from].killed_at && e->m->gone_at > s->node[e->m->from].killed_at))
            deliver(s, n, e);
        msg_free(e->m);
        break;
    case EV_TIMEOUT:
        if (!s->req[e->a].done) {
            s->req[e->a].done = true;
            sw_trainer_response(&n->t, s->now, s->req[e->a].tag, -SW_ETIMEDOUT, NULL);
        }
        break;
    case EV_TICK:
        if (e->a != n->tick_gen)
            return;
        n->tick_at = 0;
        wake = sw_trainer_tick(&n->t, s->now);
        break;
    case EV_SCAN:
        scan(s, n);
        break;
    case EV_PUT:
        put(s, n, e->rec, (uint32_t)e->a);
        free(e->rec);
        return;
    case EV_PUT_DONE:
        sw_trainer_put_done(&n->t);
        break;
    case EV_PROBE:
        sw_trainer_probed(&n->t, s->node[e->a].pk, e->b);
        break;
    case EV_COMPUTED:
        /* not one cancelled, nor one of an earlier stage or process */
        if (e->a != n->compute_gen || !n->have_stub || !n->stub.pending || e->b != n->stub.gen)
            break;
        sw_stub_computed(&n->stub);
        sw_trainer_computed(&n->t, s->now, 0, n->stub.pending_loss);
        break;
    case EV_ACTION:
        action(s, e);
        return;
    }
    if (wake == UINT64_MAX)
        wake = sw_trainer_tick(&n->t, s->now);
    after(s, n, wake);
}

/* ---- scenarios ---- */

enum { ACT_KILL_NODE, ACT_KILL_STAGE, ACT_KILL_ADJACENT, ACT_KILL_LEADER, ACT_NEWCOMER,
       ACT_RESTART, ACT_CUT, ACT_HEAL, ACT_REFILL, ACT_HOSTILE, ACT_CHURN,
       ACT_FAKES };

static void hostile_action(struct sim *s, struct event *e);

/* A live, unclosed node of stage st (the k-th), or NULL. */
static struct simnode *
live_of(struct sim *s, int st, int k)
{
    for (int i = 0; i < s->nnode; i++) {
        struct simnode *n = &s->node[i];
        if (n->alive && !n->closed && n->t.stage == st && n->t.phase >= SW_PHASE_SYNC && !k--)
            return n;
    }
    return NULL;
}

static struct simnode *
leader(struct sim *s)
{
    struct simnode *best = NULL;

    for (int i = 0; i < s->nnode; i++) {
        struct simnode *n = &s->node[i];
        if (n->alive && !n->closed && n->t.phase == SW_PHASE_TRAINING && n->t.stage == 0 &&
            (!best || memcmp(n->pk, best->pk, 32) < 0))
            best = n;
    }
    return best;
}

/* Newcomers for every stage left with no live node, a little later; and a
 * look again later, since newcomers choose their stages themselves (two may
 * take one stage and leave another empty) and may fail. */
static void
refill(struct sim *s, uint64_t within, uint64_t rounds)
{
    bool any = false;

    for (int st = 0; st < s->sc.S; st++)
        if (!live_of(s, st, 0)) {
            any = true;
            push(s, (struct event){.t = s->now + 300 + draw(s) % within, .kind = EV_ACTION,
                                   .a = ACT_NEWCOMER});
        }
    if (any && rounds)
        push(s, (struct event){.t = s->now + within + 8000, .kind = EV_ACTION, .a = ACT_REFILL,
                               .b = rounds - 1});
}

static bool all_closed(struct sim *s);

/* A node finished the run's last step. */
static bool
run_finished(struct sim *s)
{
    for (int i = 0; i < s->nnode; i++)
        if (s->node[i].t.trained && s->node[i].t.step == (uint64_t)s->sc.steps)
            return true;
    return false;
}

/* The run finished or stopped: refills stop.  Newcomers come to keep a run
 * going; after its end they find its records lapsed and seed a run of their
 * own, which never ends (a faster step moved seed 1874's disturbances past
 * the run's end). */
static bool
run_over(struct sim *s)
{
    return s->st.stopped_lost || run_finished(s);
}

/*
 * The stranger (a key in no record, no plan): PREPARE of a step 1000 past
 * the run's, and a GO of a live node's own step naming only itself, to a
 * live node; the next one a few seconds later.  deliver() checks that
 * neither changes anything at the node.
 */
static void
hostile(struct sim *s)
{
    struct simnode *r = &s->node[s->rogue], *n = NULL;
    uint64_t max = 0;
    int live = 0, k;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    struct msg *m;

    if (all_closed(s))
        return;
    push(s, (struct event){.t = s->now + 1000 + sw_splitmix64(&s->xrng) % 4000,
                           .kind = EV_ACTION, .a = ACT_HOSTILE});
    for (int i = 0; i < s->nnode; i++)
        if (s->node[i].alive && !s->node[i].closed && s->node[i].have_stub) {
            live++;
            max = SW_MAX(max, s->node[i].t.step);
        }
    if (!live)
        return;
    k = (int)(sw_splitmix64(&s->xrng) % (uint64_t)live);
    for (int i = 0; i < s->nnode && !n; i++)
        if (s->node[i].alive && !s->node[i].closed && s->node[i].have_stub && !k--)
            n = &s->node[i];
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    sw_proto_pack_key(&pk, "step");
    msgpack_pack_uint64(&pk, max + 1000);
    m = msg_new(r->id, n->id, SW_MSG_PREPARE, sb.data, sb.size, NULL);
    m->rid = UINT32_MAX; /* a request (its READY, if any, goes nowhere) */
    post(s, m, 0);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 3);
    sw_proto_pack_key(&pk, "step");
    msgpack_pack_uint64(&pk, n->t.step);
    sw_proto_pack_key(&pk, "ver");
    msgpack_pack_uint64(&pk, 1ull << 40);
    sw_proto_pack_key(&pk, "plan");
    msgpack_pack_array(&pk, (size_t)s->sc.S);
    for (int st = 0; st < s->sc.S; st++) {
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 3);
        sw_proto_pack_key(&pk, "pk");
        sw_proto_pack_bin(&pk, r->pk, 32);
        sw_proto_pack_key(&pk, "ep");
        sw_proto_pack_str(&pk, r->ep);
        sw_proto_pack_key(&pk, "w");
        msgpack_pack_double(&pk, 1);
    }
    m = msg_new(r->id, n->id, SW_MSG_GO, sb.data, sb.size, NULL);
    post(s, m, 0);
    msgpack_sbuffer_destroy(&sb);
}

static void
action(struct sim *s, struct event *e)
{
    struct simnode *n = NULL;
    int st = (int)(e->b % (uint64_t)s->sc.S);

    switch ((int)e->a) {
    case ACT_KILL_NODE:
        if ((n = live_of(s, st, (int)(e->b >> 8) % 2)) || (n = live_of(s, st, 0)))
            node_kill(s, n);
        break;
    case ACT_KILL_STAGE:
        while ((n = live_of(s, st, 0)))
            node_kill(s, n);
        break;
    case ACT_KILL_ADJACENT:
        st = st == s->sc.S - 1 ? st - 1 : st;
        while ((n = live_of(s, st, 0)) || (n = live_of(s, st + 1, 0)))
            node_kill(s, n);
        break;
    case ACT_KILL_LEADER:
        if ((n = leader(s)))
            node_kill(s, n);
        break;
    case ACT_NEWCOMER:
        s->st.newcomers++;
        s->last_disturb = s->now;
        node_add(s, -1, NULL);
        return;
    case ACT_RESTART:
        for (int i = 0; i < s->nnode && !n; i++)
            if (!s->node[i].alive && !s->node[i].rogue)
                n = &s->node[i];
        if (n) {
            s->st.newcomers++;
            s->last_disturb = s->now;
            node_add(s, -1, n->pk);
        }
        return;
    case ACT_CUT:
        if ((n = live_of(s, st, 0))) {
            n->partition = 1;
            s->last_disturb = s->now;
        }
        push(s, (struct event){.t = s->now + e->b % 4000 + 500, .kind = EV_ACTION, .a = ACT_HEAL});
        return;
    case ACT_HEAL:
        for (int i = 0; i < s->nnode; i++)
            s->node[i].partition = 0;
        s->last_disturb = s->now;
        return;
    case ACT_REFILL:
        if (!run_over(s))
            refill(s, 6000, e->b);
        return;
    case ACT_HOSTILE:
        hostile(s);
        return;
    case ACT_CHURN:
        /* kill a node, a stage or the leader, and come back in a few seconds */
        if (s->st.stopped_lost || all_closed(s))
            return;
        push(s, (struct event){.t = s->now + 3000 + sw_splitmix64(&s->xrng) % 5000,
                               .kind = EV_ACTION, .a = ACT_CHURN});
        {
            uint64_t r = sw_splitmix64(&s->xrng);
            int k = (int)(r % 10);
            e->a = k < 5 ? ACT_KILL_NODE : k < 8 ? ACT_KILL_STAGE : ACT_KILL_LEADER;
            e->b = r >> 8;
            action(s, e);
        }
        return;
    case ACT_FAKES:
        hostile_action(s, e);
        return;
    }
    if (n && s->verbose)
        fprintf(stderr, "%8llu action %d stage %d\n", (unsigned long long)(s->now - T0),
                (int)e->a, st);
    if (!run_over(s))
        refill(s, 6000, 4);
}

static int
manifest(struct sim *s)
{
    char text[1024], why[256];
    int n = snprintf(text, sizeof(text),
                     "[run]\nname = sim\nstages = %d\nsteps = %d\nseed = %llu\n\n"
                     "[model]\npreset = tiny\nd_model = 8\nn_heads = 2\nn_kv_heads = 2\n"
                     "n_layers = %d\nffn_hidden = 16\nvocab_size = 256\n\n"
                     "[batch]\nsize = 1\nmicro = %d\nseq_len = 4\n\n[recovery]\nmode = %s\n"
                     "%s",
                     s->sc.S, s->sc.steps, (unsigned long long)s->sc.seed, s->sc.S * 2, s->sc.M,
                     s->sc.plus ? "checkfree+" : "checkfree",
                     s->sc.balance ? "\n[balance]\nthreshold = 0.75\nhold = 1\ncooldown = 2\n" : "");

    if (sw_manifest_parse(&s->man, "sim", text, (size_t)n, why, sizeof(why)) < 0) {
        fail(s, "manifest: %s", why);
        return -1;
    }
    return 0;
}

/* The scenario of a seed: the run, the network, the disturbances. */
static void
draw_scenario(struct sim *s, uint64_t seed)
{
    struct scenario *c = &s->sc;
    static const double delays[] = {0.2, 1, 5, 12, 25, 50};
    static const double rates[] = {1e3, 1.25e4, 1.25e5, 1.25e6}; /* 8 Mbit/s .. 10 Gbit/s */

    memset(c, 0, sizeof(*c));
    c->seed = seed;
    s->rng = seed * 0x9e3779b97f4a7c15ull + 17;
    c->plus = draw(s) % 3 == 0;
    c->S = c->plus ? 4 + (int)(draw(s) % 2) : 2 + (int)(draw(s) % 4);
    c->M = 1 + (int)(draw(s) % 4);
    c->steps = 8 + (int)(draw(s) % 24);
    for (int st = 0; st < c->S; st++)
        c->reps[st] = draw(s) % 4 == 0 ? 2 : 1;
    c->delay_ms = delays[draw(s) % SW_ARRAY_SIZE(delays)];
    c->jitter = (double)(draw(s) % 4) * 0.1;
    c->rate = rates[draw(s) % SW_ARRAY_SIZE(rates)];
    c->reorder = draw(s) % 5 == 0;
    c->cost_ms = (double)(1 + draw(s) % 8);
    c->dead_ms = 3000;
    if (harsh)
        c->loss = (double)(draw(s) % 3) * 0.005;
    /* a quarter of the seeds rebalance: a rich stage of three movable
     * nodes, a longer run (drawn apart from s->rng: the other scenarios,
     * the pinned seeds' too, stay what they were) */
    {
        uint64_t b = seed ^ 0x5bd1e9955bd1e995ull;
        b = sw_splitmix64(&b);
        if (b % 4 == 0) {
            c->balance = true;
            c->reps[(b >> 8) % (uint64_t)c->S] = 3;
            c->steps += 40;
        }
    }
    /* a sixth start with --stage auto, a quarter have a stranger sending
     * PREPARE and GO, an eighth churn (drawn apart too) */
    {
        uint64_t b = seed ^ 0x2545f4914f6cdd1dull;
        b = sw_splitmix64(&b);
        c->auto_start = b % 6 == 0;
        c->hostile = (b >> 8) % 4 == 0;
        c->churn = (b >> 16) % 8 == 0;
        /* partials lost, alone: lost partials beside kills or rebalancing
         * still break invariants (seeds 1811, 3485, 3938, 378: not solved) */
        c->grad_loss = all_grad_loss || ((b >> 24) % 4 == 0 && !c->balance && !c->churn);
        c->apart = (b >> 32) % 2 == 0;
        s->xrng = b;
    }
    snprintf(c->what, sizeof(c->what), "S=%d%s M=%d steps=%d%s%s%s%s%s%s reps=", c->S,
             c->plus ? " checkfree+" : "", c->M, c->steps, c->balance ? " balance" : "",
             c->auto_start ? " auto" : "", c->hostile ? " hostile" : "", c->churn ? " churn" : "",
             c->grad_loss ? " grad-loss" : "", c->apart ? " apart" : "");
    for (int st = 0; st < c->S; st++)
        snprintf(c->what + strlen(c->what), sizeof(c->what) - strlen(c->what), "%d", c->reps[st]);
    snprintf(c->what + strlen(c->what), sizeof(c->what) - strlen(c->what),
             " delay=%.1fms jitter=%.0f%% rate=%.0fMbit/s%s compute=%.0fms loss=%.1f%%",
             c->delay_ms, c->jitter * 100, c->rate * 8 / 1000, c->reorder ? " reorder" : "",
             c->cost_ms, c->loss * 100);
}

/* Disturbances at random times of the run's expected length. */
static void
draw_disturbances(struct sim *s)
{
    int n = (int)(draw(s) % 4);

    if (s->sc.grad_loss && !all_grad_loss)
        n = 0; /* see draw_scenario */
    uint64_t span = (uint64_t)s->sc.steps * (uint64_t)(s->sc.M * s->sc.S * 4 *
                                                       (s->sc.cost_ms + s->sc.delay_ms) + 200);

    for (int i = 0; i < n; i++) {
        uint64_t r = draw(s), at = T0 + 3000 + r % (span + 1);
        int kind = (int)((r >> 20) % 100);
        int act = kind < 40   ? ACT_KILL_NODE
                  : kind < 60 ? ACT_KILL_STAGE
                  : kind < 70 ? ACT_KILL_LEADER
                  : kind < 80 ? ACT_KILL_ADJACENT
                  : kind < 90 ? ACT_RESTART
                  : harsh && kind >= 95 ? ACT_CUT
                              : ACT_NEWCOMER;
        push(s, (struct event){.t = at, .kind = EV_ACTION, .a = (uint64_t)act, .b = draw(s)});
        snprintf(s->sc.what + strlen(s->sc.what), sizeof(s->sc.what) - strlen(s->sc.what),
                 " %s@%llums",
                 (const char *[]){"kill", "kill-stage", "kill-adjacent", "kill-leader",
                                  "newcomer", "restart", "cut", "heal"}[act],
                 (unsigned long long)(at - T0));
    }
}

/* Every live node closed? */
static bool
all_closed(struct sim *s)
{
    for (int i = 0; i < s->nnode; i++)
        if (s->node[i].alive && !s->node[i].closed)
            return false;
    return true;
}

/* The end: every live node closed, and the run finished or stopped, or no
 * newcomer to come (a run whose nodes were all killed gets its newcomers). */
/* The run is over (stopped for good, exit 5: never before its first
 * update, so it was past step 0; or finished), and node n is at step 0 in
 * a run of its own: a newcomer that found the old run's records lapsed and
 * seeded one (or waits to), as a newcomer to an empty DHT does.  Nothing of
 * the old run is left in it to check. */
static bool
waits_anew(struct sim *s, const struct simnode *n)
{
    return run_over(s) && n->t.step == 0;
}

static bool
ended(struct sim *s)
{
    bool anew = run_over(s);

    for (int i = 0; i < s->nnode && anew; i++)
        if (s->node[i].alive && !s->node[i].closed && !waits_anew(s, &s->node[i]))
            anew = false;
    if (anew)
        return true;
    if (!all_closed(s))
        return false;
    if (run_over(s))
        return true;
    for (size_t i = 0; i < s->nheap; i++)
        if (s->heap[i].kind == EV_ACTION)
            return false;
    return true;
}

/* A live node of stage st that holds its state (and under CheckFree+, as
 * the partner of a lost boundary stage, its replica); not one that moved
 * there and has yet to get it: it trained, but another stage, and gave
 * that state up (its hash); nor a newcomer that, once the run had updated,
 * initialised the stage from the run seed: it found no record of the run
 * (all lapsed after its loss) and seeded a run of its own. */
static bool
holds(struct sim *s, int st, bool replica)
{
    for (int i = 0; i < s->nnode; i++) {
        struct simnode *n = &s->node[i];
        if (n->alive && !n->closed && n->t.stage == st && n->t.trained && n->t.hash[0] &&
            n->t.moved_from < 0 && (n->t.step > 0 || s->st.updates == 0) &&
            (!replica || n->t.rep_have))
            return true;
    }
    return false;
}

/* Could the run have gone on?  Not when its lost stages cannot come back
 * in any order of rebuilds: a stage comes back from its two neighbours
 * holding theirs (or back themselves); under CheckFree+ a boundary stage
 * from its partner holding the replica, and the partner (1 or S-2) from its
 * boundary stage alone.  Never before the run's first update: the run seed
 * initialises any stage then. */
static bool
lost_for_good(struct sim *s)
{
    int S = s->sc.S;
    bool back[MAXS], more = true;

    if (s->st.updates == 0)
        return false;
    for (int st = 0; st < S; st++)
        back[st] = holds(s, st, false);
    while (more) {
        more = false;
        for (int st = 0; st < S; st++) {
            if (back[st])
                continue;
            if (st == 0 || st == S - 1)
                back[st] = s->sc.plus && holds(s, st == 0 ? 1 : S - 2, true);
            else if (s->sc.plus && (st == 1 || st == S - 2))
                back[st] = back[st == S - 2 ? S - 1 : 0];
            else
                back[st] = back[st - 1] && back[st + 1];
            more |= back[st];
        }
    }
    for (int st = 0; st < S; st++)
        if (!back[st])
            return true;
    return false;
}

/*
 * The end: every live node closed with 0 or SW_EXIT_LOST (a stop checked
 * when it came, in run); with 0 only, the run is finished: a stage applied
 * the last step (nodes behind it then, with a stage lost in the last step,
 * say so and end too: trainer.c, finished_elsewhere).
 */
static void
finish(struct sim *s)
{
    bool lost = false, done = false, live = false;

    for (int i = 0; i < s->nnode; i++) {
        struct simnode *n = &s->node[i];
        if (n->t.step == (uint64_t)s->sc.steps && n->t.trained)
            done = true;
        if (!n->alive)
            continue;
        live = true; /* (a run whose every node was killed ends with nothing to check) */
        if (!n->closed && waits_anew(s, n))
            continue;
        if (!n->closed) {
            fail(s, "node %d (stage %d, phase %s, step %llu) still running at the end", n->id,
                 n->t.stage, sw_phase_name(n->t.phase), (unsigned long long)n->t.step);
            return;
        }
        lost |= n->exit_code == SW_EXIT_LOST;
        if (n->exit_code != SW_EXIT_OK && n->exit_code != SW_EXIT_LOST)
            fail(s, "node %d exited %d", n->id, n->exit_code);
    }
    if (!lost && !done && live)
        fail(s, "the run ended short of its %d steps", s->sc.steps);
}

static void
sim_release(struct sim *s)
{
    for (int i = 0; i < s->nnode; i++) {
        s->st.stale_ready += s->node[i].t.lead.stale_ready;
        s->st.early_sent += s->node[i].t.lead.early_sent;
        s->st.early_used += s->node[i].t.lead.early_used;
        s->st.resends += s->node[i].t.lead.resends;
        s->st.resent += s->node[i].t.st.resent;
        s->st.relays_sent += s->node[i].t.st.relays_sent;
        s->st.relays_taken += s->node[i].t.st.relays_taken;
        s->st.moves += s->node[i].t.moves;
    }
    s->st.balance_runs += s->sc.balance;
    for (int i = 0; i < s->nnode; i++) {
        if (s->node[i].rogue)
            continue;
        sw_trainer_release(&s->node[i].t);
        if (s->node[i].have_stub)
            sw_stub_release(&s->node[i].stub);
    }
    while (s->nheap) {
        struct event e = pop(s);
        msg_free(e.m);
        free(e.rec);
    }
    free(s->heap);
    free(s->req);
    free(s->hashes);
    free(s->hash_node);
    if (s->man.bytes)
        sw_manifest_release(&s->man);
}

/* What each live node waits for (--verbose, after a failure). */
static void
dump(struct sim *s)
{
    for (int i = 0; i < s->nnode; i++) {
        struct simnode *n = &s->node[i];
        const struct sw_step *st = &n->t.st;
        char f[64] = "", b[64] = "", d[64] = "";
        if (!n->alive || n->closed || !n->have_stub)
            continue;
        for (int u = 0; u < s->sc.M * n->t.V && u < 60; u++) {
            f[u] = st->fwd_done[u] ? 'F' : '.';
            b[u] = st->bwd_done[u] ? 'B' : '.';
            d[u] = st->have_dx[u] ? (st->early_dx[u] ? 'e' : 'D') : '.';
        }
        fprintf(stderr, "# n%d stage %d phase %s step %llu step-phase %d lead-phase %d "
                "plan %llu/v%llu me %d own %d/%d fwd %s bwd %s dx %s\n", n->id, n->t.stage,
                sw_phase_name(n->t.phase), (unsigned long long)n->t.step, st->phase,
                n->t.lead.phase, (unsigned long long)st->plan.step,
                (unsigned long long)st->plan.ver, st->myidx, st->n_bwd, st->n_own, f, b, d);
    }
}

/* One scenario; 0 when every check held. */
static int
run(uint64_t seed, int verbose, struct stats *out_stats)
{
    static struct sim sim;
    struct sim *s = &sim;
    size_t nh;

    memset(s, 0, sizeof(*s));
    cur = s;
    s->verbose = verbose;
    s->now = T0;
    draw_scenario(s, seed);
    if (manifest(s) < 0)
        goto out;
    nh = (size_t)s->sc.S * ((size_t)s->sc.steps + 1);
    s->hashes = calloc(nh, 32);
    s->hash_node = malloc(nh * sizeof(int));
    for (size_t i = 0; i < nh; i++)
        s->hash_node[i] = -1;
    for (int st = 0; st < s->sc.S; st++)
        for (int r = 0; r < s->sc.reps[st]; r++)
            node_add(s, s->sc.auto_start ? -1 : st, NULL);
    draw_disturbances(s);
    s->rogue = -1;
    if (s->sc.hostile && s->nnode < MAXN) {
        struct simnode *r = &s->node[s->nnode];
        memset(r, 0, sizeof(*r));
        r->id = s->rogue = s->nnode++;
        r->used = r->rogue = true; /* never alive: what is sent to it is dropped */
        for (int i = 0; i < 4; i++) {
            uint64_t x = sw_splitmix64(&s->xrng);
            memcpy(r->pk + 8 * i, &x, 8);
        }
        snprintf(r->ep, sizeof(r->ep), "sim://%d", r->id);
        push(s, (struct event){.t = s->now + 1500, .kind = EV_ACTION, .a = ACT_HOSTILE});
    }
    if (s->sc.churn)
        push(s, (struct event){.t = s->now + 3000 + sw_splitmix64(&s->xrng) % 5000,
                               .kind = EV_ACTION, .a = ACT_CHURN});
    s->last_update = s->last_disturb = s->now;
    while (s->nheap && !s->failed) {
        struct event e = pop(s);
        bool was_lost;
        s->now = e.t;
        if (s->now - T0 > SIM_END_MS) {
            fail(s, "still running after %d s of simulated time", SIM_END_MS / 1000);
            break;
        }
        if (s->st.events > SIM_MAX_EVENTS) {
            fail(s, "%d events at %.3f s: a livelock", SIM_MAX_EVENTS,
                 (double)(s->now - T0) / 1000.0);
            break;
        }
        was_lost = s->st.stopped_lost > 0;
        run_event(s, &e);
        if (!was_lost && s->st.stopped_lost && !lost_for_good(s) && getenv("DBGH"))
            for (int i = 0; i < s->nnode; i++) fprintf(stderr, "DBG n%d alive %d closed %d stage %d trained %d hash %s moved %d phase %s\n", i, s->node[i].alive, s->node[i].closed, s->node[i].t.stage, s->node[i].t.trained, s->node[i].t.hash, s->node[i].t.moved_from, sw_phase_name(s->node[i].t.phase));
        if (!was_lost && s->st.stopped_lost && !lost_for_good(s))
            fail(s, "a node stopped the run (exit %d) though no lost stage was beyond "
                 "rebuilding", SW_EXIT_LOST);
        if (!s->st.stopped_lost && !all_closed(s) &&
            s->now - SW_MAX(s->last_update, s->last_disturb) > s->st.max_gap_ms) {
            s->st.max_gap_ms = s->now - SW_MAX(s->last_update, s->last_disturb);
            s->st.max_gap_seed = seed;
        }
        if (!s->st.stopped_lost && !all_closed(s) &&
            s->now - SW_MAX(s->last_update, s->last_disturb) > SIM_STALL_MS)
            fail(s, "no step for %d s", SIM_STALL_MS / 1000);
        if (ended(s))
            break;
    }
    if (!s->failed)
        finish(s);
    if (s->failed && verbose)
        dump(s);
out:
    if (verbose || s->failed)
        fprintf(stderr, "# seed %llu: %s: %s%s\n", (unsigned long long)seed, s->sc.what,
                s->failed ? "FAILED: " : "ok", s->failed ? s->why : "");
    if (out_stats) {
        out_stats->events += s->st.events;
        out_stats->updates += s->st.updates;
        out_stats->kills += s->st.kills;
        out_stats->newcomers += s->st.newcomers;
        out_stats->partials += s->st.partials;
        out_stats->stopped_lost += s->st.stopped_lost ? 1 : 0;
        out_stats->hostile += s->st.hostile;
        if (s->st.max_gap_ms > out_stats->max_gap_ms) {
            out_stats->max_gap_ms = s->st.max_gap_ms;
            out_stats->max_gap_seed = s->st.max_gap_seed;
        }
        for (int i = 0; i < 4; i++)
            out_stats->recoveries[i] += s->st.recoveries[i];
        out_stats->sim_ms += s->now - T0;
    }
    sim_release(s);
    if (out_stats) {
        out_stats->stale_ready += s->st.stale_ready;
        out_stats->early_sent += s->st.early_sent;
        out_stats->early_used += s->st.early_used;
        out_stats->resends += s->st.resends;
        out_stats->resent += s->st.resent;
        out_stats->relays_sent += s->st.relays_sent;
        out_stats->relays_taken += s->st.relays_taken;
        out_stats->moves += s->st.moves;
        out_stats->balance_runs += s->st.balance_runs;
    }
    return s->failed ? -1 : 0;
}

/* ---- hostile scenarios (issue 12): records are claims, states are verified ---- */

/* The live, real node of stage st that completed the most steps, or NULL. */
static struct simnode *
real_of(struct sim *s, int st)
{
    struct simnode *best = NULL;

    for (int i = 0; i < s->nnode; i++) {
        struct simnode *n = &s->node[i];
        if (n->alive && !n->closed && !n->hostile && n->t.stage == st && n->t.trained &&
            (!best || n->t.step > best->t.step))
            best = n;
    }
    return best;
}

/* A record put straight into the DHT's directory, fresh. */
static void
dir_set(struct sim *s, const struct sw_peer_rec *r)
{
    struct record *d = NULL;

    for (int i = 0; i < MAXN && !d; i++)
        if (s->dir[i].used && !memcmp(s->dir[i].rec.pk, r->pk, 32))
            d = &s->dir[i];
    for (int i = 0; i < MAXN && !d; i++)
        if (!s->dir[i].used || s->dir[i].expires <= s->now)
            d = &s->dir[i];
    if (!d)
        return;
    d->used = true;
    d->rec = *r;
    d->rec.seq = d->rec.heard_ms = d->rec.step_ms = s->now;
    d->expires = s->now + 10000;
}

/* Every 250 ms: the fake records (endpoints where nobody serves, claiming
 * the run's step and a huge capacity) and the stranger's record (stage 0,
 * the real stage-0 node's step plus bad_ahead and its hash), fresh. */
static void
hostile_refresh(struct sim *s)
{
    uint64_t run = 0;
    struct sw_peer_rec r;

    for (int i = 0; i < s->nnode; i++)
        if (s->node[i].alive && !s->node[i].hostile)
            run = SW_MAX(run, s->node[i].t.step);
    for (int i = 0; i < s->nfakes; i++) {
        memset(&r, 0, sizeof(r));
        r.pk[0] = 0xf0;
        r.pk[1] = (uint8_t)i;
        r.pk[31] = 0x77;
        snprintf(r.ep, sizeof(r.ep), "sim://%d", 1000 + i);
        r.stage = s->fake_stage;
        r.state = SW_REC_TRAINING;
        r.step = run;
        r.tps = r.cap = 1e6;
        r.loss = -1;
        r.norm = 1;
        snprintf(r.hash, sizeof(r.hash), "00000000000000%02x", (unsigned)(i & 0xff));
        dir_set(s, &r);
    }
    if (s->bad >= 0) {
        struct simnode *b = &s->node[s->bad], *real = real_of(s, 0);
        memset(&r, 0, sizeof(r));
        memcpy(r.pk, b->pk, 32);
        snprintf(r.ep, sizeof(r.ep), "%s", b->ep);
        r.state = SW_REC_TRAINING;
        r.step = (real ? real->t.step : run) + (uint64_t)s->bad_ahead;
        r.loss = -1;
        if (real) {
            /* 4: another state at the real node's step, which a node of
             * stage 0 that a plan named must not give its own up for
             * (trainer.c, diverged) */
            snprintf(r.hash, sizeof(r.hash), "%s",
                     s->bad_hash ? "0000000000000000" : real->t.hash);
            r.cap = real->t.cap;
            r.tps = real->t.tps;
        }
        dir_set(s, &r);
    }
}

static void
hostile_action(struct sim *s, struct event *e)
{
    if (e->b == 1) { /* a newcomer for stage 0 */
        s->st.newcomers++;
        s->last_disturb = s->now;
        node_add(s, 0, NULL);
        return;
    }
    hostile_refresh(s);
    push(s, (struct event){.t = s->now + 250, .kind = EV_ACTION, .a = ACT_FAKES});
}

static void
hostile_reply(struct sim *s, struct simnode *n, const struct msg *m, uint32_t type,
              const msgpack_sbuffer *sb, const float *pl, size_t plen)
{
    struct sw_payload p = {pl, plen, NULL, NULL, NULL};
    struct msg *r = msg_new(n->id, m->from, type, sb ? sb->data : NULL, sb ? sb->size : 0,
                            plen ? &p : NULL);

    r->rid = m->rid;
    r->response = true;
    post(s, r, 1);
}

/*
 * The stranger's node: answers PING (it serves its endpoint, so its record
 * is proven), PREPARE with "not ready" (the run does not wait on it), a
 * hash question (STATE_GET hstep) with "cannot tell", and serves all-zero
 * parameters and moments at the step its record claims.
 */
static void
hostile_deliver(struct sim *s, struct simnode *n, const struct msg *m)
{
    static const char *const keys[] = {"stage", "which", "off", "n", "snap", "hstep", "step",
                                       NULL};
    struct simnode *real = real_of(s, 0);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    uint64_t which = 0, off = 0, cnt = 0, step = 0, hstep = 0;
    bool has_hstep;

    if (m->response || !m->rid)
        return;
    if (m->type == SW_MSG_PING) {
        hostile_reply(s, n, m, SW_MSG_PING + 1, NULL, NULL, 0);
        return;
    }
    if ((m->type != SW_MSG_PREPARE && m->type != SW_MSG_STATE_GET) ||
        !sw_proto_open(m->body, m->blen, &u, keys))
        return;
    has_hstep = sw_proto_get_u64(&u.data, "hstep", &hstep) == 0;
    if (sw_proto_get_u64(&u.data, "which", &which) < 0 ||
        sw_proto_get_u64(&u.data, "off", &off) < 0 || sw_proto_get_u64(&u.data, "n", &cnt) < 0)
        which = off = cnt = 0;
    if (sw_proto_get_u64(&u.data, "step", &step) < 0)
        step = 0;
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (m->type == SW_MSG_PREPARE) {
        msgpack_pack_map(&pk, 3);
        sw_proto_pack_key(&pk, "step");
        msgpack_pack_uint64(&pk, step);
        sw_proto_pack_key(&pk, "stage");
        msgpack_pack_uint32(&pk, 0);
        sw_proto_pack_key(&pk, "ok");
        msgpack_pack_false(&pk);
        hostile_reply(s, n, m, SW_MSG_READY, &sb, NULL, 0);
    } else if (has_hstep || which == 3 || !real || cnt > real->t.numel) {
        msgpack_pack_map(&pk, 3);
        sw_proto_pack_key(&pk, "err");
        msgpack_pack_int64(&pk, -SW_ENOENT);
        sw_proto_pack_key(&pk, "stage");
        msgpack_pack_uint64(&pk, 0);
        sw_proto_pack_key(&pk, "step");
        msgpack_pack_uint64(&pk, hstep);
        hostile_reply(s, n, m, SW_MSG_STATE, &sb, NULL, 0);
    } else {
        uint64_t claim = real->t.step + (uint64_t)s->bad_ahead;
        float *zeros = calloc(cnt ? cnt : 1, sizeof(float));
        SW_ASSERT(zeros);
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
        msgpack_pack_uint64(&pk, real->t.numel);
        sw_proto_pack_key(&pk, "off");
        msgpack_pack_uint64(&pk, off);
        sw_proto_pack_key(&pk, "n");
        msgpack_pack_uint64(&pk, cnt);
        hostile_reply(s, n, m, SW_MSG_STATE, &sb, zeros, cnt * sizeof(float));
        free(zeros);
    }
    msgpack_sbuffer_destroy(&sb);
}

/*
 * One hostile scenario (4 stages, one node each, 60 steps, loopback-like
 * network), checked as the seeded ones are and then for what it is about:
 *   0  30 fake stage-2 records with dead endpoints, then stage 2's node
 *      killed: nothing of the pipeline goes to the fakes, every node leaves
 *      them out (unproven), and the newcomer that joins with --stage auto
 *      chooses stage 2;
 *   1  a stranger's node that answers pings and serves all-zero weights
 *      under a stage-0 record two steps ahead of the real node: a newcomer
 *      of stage 0 trains with the real node's copy (it prefers a source
 *      whose step another node reached, and refuses all-zero weights);
 *   2  the same stranger claiming step + 1000: no node copies from it and
 *      the run trains on;
 *   3  the stranger's record at the real node's step, with the lowest key
 *      of all, from the start (no node saw a plan yet): it never leads, the
 *      nodes pass it over (lead.h, "Candidates") and the run trains;
 *   4  the same from the middle of the run, with another hash than the real
 *      node's (it does not copy it), then a newcomer of stage 0: the
 *      nodes of the run never take the stranger for the leader (it is in no
 *      plan), none passes a leader over, and the newcomer trains;
 *   5  no stranger: a second node of stage 1 whose READYs of odd steps from
 *      step 10 say "busy" (the simulated network rewrites them), so that
 *      the leader's plan of the step before names it each time: the
 *      leader waits for it once, then doubts it (lead.h, Exchanges; 25
 *      waits of 30 s without the doubt);
 * in 1 to 4 no node of the run even tries to copy its state again.
 */
static int
hostile_run(int kind, int verbose)
{
    static struct sim sim;
    struct sim *s = &sim;
    struct scenario *c = &s->sc;
    size_t nh;
    int first_new;

    memset(s, 0, sizeof(*s));
    cur = s;
    s->verbose = verbose;
    s->now = T0;
    s->bad = -1;
    draw_scenario(s, 91000 + (uint64_t)kind);
    c->plus = c->reorder = c->balance = false;
    c->S = 4;
    c->M = 2;
    /* 0: long enough that the kill at 4 s comes mid-run (60 steps of 28 ms
     * end before it when the nodes prove each other before the fakes come) */
    c->steps = kind == 0 ? 300 : 60;
    for (int st = 0; st < 8; st++)
        c->reps[st] = 1;
    c->delay_ms = 1;
    c->jitter = 0;
    c->rate = 1.25e5;
    c->cost_ms = 2;
    c->loss = 0;
    snprintf(c->what, sizeof(c->what), "hostile %d: %s", kind,
             (const char *[]){"30 fake stage-2 records, stage 2 killed",
                              "a stranger serving zero weights on stage 0, 2 steps ahead",
                              "a stranger claiming step + 1000 on stage 0",
                              "a stranger with the lowest key on stage 0 from the start",
                              "a stranger with the lowest key on stage 0 mid-run, a newcomer",
                              "a planned replica of stage 1 that says busy at odd steps"}[kind]);
    if (manifest(s) < 0)
        goto out;
    nh = (size_t)c->S * ((size_t)c->steps + 1);
    s->hashes = calloc(nh, 32);
    s->hash_node = malloc(nh * sizeof(int));
    for (size_t i = 0; i < nh; i++)
        s->hash_node[i] = -1;
    for (int st = 0; st < c->S; st++)
        node_add(s, st, NULL);
    if (kind == 5) {
        node_add(s, 1, NULL);
        s->liar = s->nnode; /* the node just added, + 1 */
    } else if (kind == 0) {
        s->nfakes = 30;
        s->fake_stage = 2;
        push(s, (struct event){.t = T0 + 4000, .kind = EV_ACTION, .a = ACT_KILL_STAGE, .b = 2});
    } else {
        struct simnode *b = &s->node[s->nnode];
        memset(b, 0, sizeof(*b));
        b->id = s->nnode++;
        b->used = b->alive = b->closed = b->hostile = true;
        /* 1, 2: the highest key (what they test is the copies); 3, 4: the
         * lowest, a record that would be the leader's by key alone */
        memset(b->pk, kind >= 3 ? 0x00 : 0xff, 32);
        b->pk[31] = kind >= 3 ? 0x01 : 0xff;
        snprintf(b->ep, sizeof(b->ep), "sim://%d", b->id);
        s->bad = b->id;
        s->bad_ahead = kind == 1 ? 2 : kind == 2 ? 1000 : 0;
        s->bad_hash = kind == 4;
        if (kind == 1)
            push(s, (struct event){.t = T0 + 3000, .kind = EV_ACTION, .a = ACT_FAKES, .b = 1});
        else if (kind == 4)
            push(s, (struct event){.t = T0 + 6000, .kind = EV_ACTION, .a = ACT_FAKES, .b = 1});
    }
    first_new = s->nnode;
    push(s, (struct event){.t = T0 + (kind == 4 ? 3000 : 200), .kind = EV_ACTION,
                           .a = ACT_FAKES});
    s->last_update = s->last_disturb = s->now;
    while (s->nheap && !s->failed) {
        struct event e = pop(s);
        s->now = e.t;
        if (s->now - T0 > SIM_END_MS) {
            fail(s, "still running after %d s of simulated time", SIM_END_MS / 1000);
            break;
        }
        run_event(s, &e);
        if (s->st.stopped_lost)
            fail(s, "a node stopped the run (exit %d)", SW_EXIT_LOST);
        if (!all_closed(s) && s->now - SW_MAX(s->last_update, s->last_disturb) > SIM_STALL_MS)
            fail(s, "no step for %d s", SIM_STALL_MS / 1000);
        if (ended(s))
            break;
    }
    if (!s->failed)
        finish(s);
    if (!s->failed && s->to_fakes)
        fail(s, "%llu pipeline messages went to fake records' endpoints",
             (unsigned long long)s->to_fakes);
    if (!s->failed && kind == 0) {
        int unproven = 0;
        for (int i = 0; i < first_new; i++)
            unproven = SW_MAX(unproven, s->node[i].t.nunproven);
        if (first_new >= s->nnode || s->node[first_new].t.stage != 2)
            fail(s, "the first newcomer chose stage %d, not the empty stage 2",
                 first_new < s->nnode ? s->node[first_new].t.stage : -1);
        else if (unproven < s->nfakes)
            fail(s, "the nodes saw %d unproven records, not the %d fakes", unproven, s->nfakes);
    }
    if (!s->failed && kind == 5) {
        const struct sw_lead *L = &s->node[0].t.lead;
        if (L->busy_waits != 1)
            fail(s, "the leader waited %llu times for the replica that says busy (once is "
                 "right: then it doubts it)", (unsigned long long)L->busy_waits);
    }
    for (int i = 0; !s->failed && kind > 0 && kind < 5 && i < s->nnode; i++) {
        struct simnode *n = &s->node[i];
        if (!n->hostile && strstr(n->t.rec_from, s->node[s->bad].ep))
            fail(s, "node %d copied stage %d from the stranger", n->id, n->t.stage);
        else if (kind == 1 && i == first_new &&
                 (!n->t.trained || n->t.stage != 0))
            fail(s, "the stage-0 newcomer trained %d, refused %llu copies", n->t.trained,
                 (unsigned long long)n->t.rc.copies_refused);
        else if (kind == 4 && i == first_new && (!n->t.trained || n->t.stage != 0))
            fail(s, "the stage-0 newcomer trained %d, on stage %d", (int)n->t.trained, n->t.stage);
        else if (kind == 4 && i < first_new - 1 && n->t.lead.passed_over)
            fail(s, "node %d passed over %llu leaders (it took the stranger for one)", n->id,
                 (unsigned long long)n->t.lead.passed_over);
        else if (kind == 3 && i < first_new - 1 && !n->t.trained)
            fail(s, "node %d never trained", n->id);
        else if (i < first_new - 1 && (n->t.recoveries || n->t.rc.copies_refused))
            fail(s, "node %d of the run recovered its stage %llu times, refused %llu copies "
                 "(a lone record ahead made it copy again)", n->id,
                 (unsigned long long)n->t.recoveries,
                 (unsigned long long)n->t.rc.copies_refused);
    }
    if (s->failed && verbose)
        dump(s);
out:
    if (verbose || s->failed)
        fprintf(stderr, "# %s: %s%s\n", c->what, s->failed ? "FAILED: " : "ok",
                s->failed ? s->why : "");
    sim_release(s);
    return s->failed ? -1 : 0;
}

static void
on_abort(int sig)
{
    if (cur)
        fprintf(stderr, "# aborted in seed %llu (%s)\n", (unsigned long long)cur->sc.seed,
                cur->sc.what);
    signal(sig, SIG_DFL);
    raise(sig);
}

/*
 * Seeds that found a bug (each fixed in the commit that pinned it): they run
 * in every make check, whatever range the run covers.
 */
struct pin {
    uint64_t seed;
    const char *found;
};

static const struct pin pinned[] = {
    {7, "a newcomer to a finished run took a stage, and stopped the run with exit 5"},
    {175, "a node back under its key on another endpoint got nothing resent by the replan; "
          "the stalled step was then planned again identically for ever"},
    {784, "a node that copied its state a moment before the run ended waited for ever"},
    {2447, "a stage-0 node that copied its state mid-step led, and restarted a step that "
           "other stages had finished: the run deadlocked"},
    {3970, "a rebuilt stage (about to step back) was copied: its replicas diverged"},
    {4248, "checkfree+: the partner held no replica; the newcomer retried for ever"},
    {6149, "a PREPARE round outlived its leader and sent GO for a step long done"},
    {8465, "a refused copy was retried at once, in the same millisecond: a livelock"},
    {8768, "the only stage-0 node was joining (a copy) when its source died: nobody led"},
    {8778, "a partner without a replica answered -EINVAL instead of -ENOENT"},
    {11117, "a rebuilt stage refused its parameters to a neighbour's rebuild"},
    {15869, "a replan resent only to neighbours that changed: a restarted stage waited"},
    {18450, "a replica waited for the GRAD of a partner restarted under its key"},
    {4987, "three newcomers rebuilt one stage at once; a rebuilt state refused every copy"},
    {14638, "two newcomers rebuilt one stage at once and both were planned: replicas diverged"},
    {37110, "a leader that inherited a step replanned without the capacities: a replica ran a "
            "microbatch its partner had run, counted twice"},
    {37449, "a rebuilt stage 0 that took the lost leader's step over planned two states of "
            "one stage"},
    {3940, "a node that moved to stage 0 was planned in its source's step; the source (the "
           "leader) died in it, and a joining node never took the step over: a stall"},
    {6132, "a replica of the last stage died after its stage updated; the stalled step was "
           "restarted with PREPARE, which the node past it refused for ever, and stage 0 copied "
           "itself in a loop"},
    {10104, "checkfree+ with a move: a churn stall (no step for 90 s)"},
    {11717, "a newcomer copied the sole node of the last stage, which then died before the "
            "newcomer was planned: it waited, behind, for ever"},
    {16675, "a replan after the leader died moved a microbatch that one live replica had run "
            "to another: counted twice"},
    {17923, "checkfree+ with a move and a stage killed: a churn stall (no step for 90 s)"},
    {4725, "churn: a stage-0 node that led a step, then copied its state again, kept its "
           "stale lead and replanned the step over another leader's plan: two states"},
    {5506, "stage auto: nodes planned out of a step (another state) skipped to the next one "
           "instead of copying: replicas diverged"},
    {6811, "churn: a takeover without the step's plan split a stage's microbatches between a "
           "node that had run them all and a newcomer: counted twice"},
    {1186, "churn, checkfree+: a copied partner without the replica declared the run lost "
           "while its source, at its step, held one"},
    {1294, "a node that skipped a step copied its mate, which had taken it, and refused the "
           "copy on its own record's hash: the mate distrusted, the stage looked empty and was "
           "rebuilt by checkfree while the mate trained"},
    {2096, "a copy of a stage rebuilt at step s was refused on the hash a dead node had at s: "
           "the stage rebuilt again by checkfree+ while the copied node trained"},
    {2542, "a leader that took over a step without its plan left a replica out and told it "
           "nothing: it waited for its partner's partial gradient, then updated alone: two states"},
    {3879, "churn, hostile: a stage rebuilt by checkfree+ while a node trained it (gone with "
           "the takeover's GO to the replicas it leaves out)"},
    {4150, "churn, hostile: two states of one stage (gone with the takeover's GO to the "
           "replicas it leaves out)"},
    {4614, "two stage-0 newcomers took the lost leader's step over at once and each told the "
           "other it was left out of the step: a BWD for a visit the node did not run"},
    {301, "churn, checkfree+: a stage rebuilt while a node trained it (gone once a copy's "
          "verification no longer counted the copier's own hash)"},
    {3189, "churn, hostile: a node that gave its state up to copy a mate's (two states) failed "
           "the copy, the mate left, and it waited in sync for ever with its own state: stall"},
    {4732, "churn, hostile: nodes left out of the last step led it again after the nodes that "
           "finished it had left: two states of a stage after the last step"},
    {3243, "churn, stage auto: a stage rebuilt while a node trained it (gone once a copy's "
           "verification no longer counted the copier's own hash)"},
    {4205, "churn: a copy refused while the stage's other node, behind its step, could not "
           "attest it: the copier resumed its older state and led beside the source, and the "
           "stage was rebuilt by checkfree+ while a node trained it"},
    {2015, "churn, hostile: a newcomer behind the leader's PREPARE resumed its own state (the "
           "only mate's record ahead was a lone claim) and PREPAREd a step the run had left"},
    {6872, "churn, checkfree+: a newcomer asked a partner copied after the last push for the "
           "replica, and the run stopped though the partner's stage mate held one"},
    {10361, "churn: a takeover without the step's plan did not tell a joining stage-0 node "
            "still in the step with the lost leader's plan: it updated alone, two states"},
    {8571, "churn, checkfree+: a stage-0 newcomer rebuilt after stage 2's last node died, never "
           "counted stage 2 as lost, and waited for good when stage 1 died too"},
    {704, "a killed node's unsent messages lost: a stage-0 node that inherited a step another "
          "stage-0 node had led the run past restarted it on a stall (PREPARE of a step left)"},
    {4433, "churn, checkfree+: stages 1 and 2 of five lost, taken for lost for good, though "
           "stage 1 comes back from stage 0 alone and then stage 2; (with the newcomer waiting a "
           "dead time) the run waited for good"},
    {4421, "rebalance, hostile: a node that moved to stage 0 was counted as holding its state, "
           "so a lost stage 0 looked rebuildable"},
};

/* ... found with --harsh, and run so */
static const struct pin pinned_harsh[] = {
    {355, "loss: a newcomer's one PING to a live stage-2 node was lost, so it left that node's "
          "record out, took stage 2 for empty and stopped the run (exit 5)"},
    {180, "loss: a newcomer left a live node's record out after one lost PING and rebuilt "
          "stage 1 beside it"},
    {980, "loss: the nodes in the run stopped it as lost (exit 5) while a newcomer's record of "
          "the lost stage was on its second proof, the first PING lost"},
    {112, "stage 0 killed at step 0: the nodes in the run stopped it as lost (exit 5) while a "
          "newcomer initialised the stage from the run seed; the run then waited for good"},
    {18, "loss, 50 ms links: a lost FWD or BWD stalled a step until its restart (30 s while the "
         "period was unknown); the run went 45 s without a step"},
    {960, "loss: a lost BWD stalled a step 21 s until it was skipped, and the next one stalled "
          "too; no step for 45 s"},
    {1619, "stage auto: a node moved to an empty stage after it answered READY for stage 1, "
           "the GO named it there, and step 0 stalled 30 s to its restart and again"},
    {476, "cut: a newcomer gave the run up (exit 5) 200 ms after it came, while a node of the "
          "lost pair was only cut off; its proofs had failed meanwhile, and it never counted "
          "the node when it came back"},
    {4555, "partials lost: both replicas of stage 1 waited for the other's; the leader's GO "
           "with resend sent FWDs and BWDs again but no partial, and step 0 waited 30 s for "
           "its restart"},
    {1036, "3 replicas: one died after its partial reached one stage-mate and before the "
           "other; one updated with its share, one without, and they held two states"},
    {2631, "the same, on stage 0 under loss, kills and a stranger's records"},
    {4942, "the same, on the last stage, under loss and a cut"},
    {9205, "stage 0 rebuilt from a stage-1 node still in the lost leader's step took the step "
           "past it, and waited 30 s for a stage at that step before it prepared it"},
    {4894, "a copier that saw no plan naming the node the rebalancer moved to stage 0 (which "
           "led) dropped its GOs, sat in EARLY with its FWDs and never passed the old leader "
           "over; that leader's resends came 15 s apart (its period lost with the move)"},
    {5614, "stage 3's only node updated in a try of step 5 that was restarted after a stage-0 "
           "replica died; it answered every PREPARE of step 5 not ready, and the leader waited "
           "for good"},
};

/* ... found with --grad-loss, and run so */
static const struct pin pinned_grad_loss[] = {
    {107, "partials lost: a replica sent its own again to a node that had moved to another "
          "stage, which banned it as malformed, took its stage for lost and stopped the run"},
    {1092, "partials lost: the replicas waited for each other's partial; a resend sent no "
           "partial again"},
    {1117, "a stage rebuilt from a source still summing partials of the step the run had left "
           "took the source's step: the leader waited for the stage and it for the leader"},
};

static void
usage(void)
{
    fprintf(stderr, "usage: test_swarm_sim [--seeds FIRST COUNT | --seed N] [--harsh] "
            "[--grad-loss] [--verbose | --trace] | --hostile K\n"
            "  default: seeds 0..%d and the pinned ones; --harsh: message loss (0.5%%, 1%%)\n"
            "  and nodes cut off from everyone for a while, which the make check set leaves out;\n"
            "  --grad-loss: every scenario loses its first two partials, kills and moves too\n"
            "  (the make check set loses them in a quarter of the scenarios without either)\n",
            SIM_SEEDS - 1);
}

int
main(int argc, char **argv)
{
    uint64_t first = 0, count = SIM_SEEDS;
    int verbose = 0, failed = 0, runs = 0, hostile = -1;
    bool with_pinned = true;
    struct stats stats;

    memset(&stats, 0, sizeof(stats));
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            first = strtoull(argv[++i], NULL, 10);
            count = 1;
            with_pinned = false;
        } else if (!strcmp(argv[i], "--seeds") && i + 2 < argc) {
            first = strtoull(argv[++i], NULL, 10);
            count = strtoull(argv[++i], NULL, 10);
            with_pinned = false;
        } else if (!strcmp(argv[i], "--verbose")) {
            verbose = 1;
        } else if (!strcmp(argv[i], "--trace")) {
            verbose = 2;
        } else if (!strcmp(argv[i], "--harsh")) {
            harsh = 1;
        } else if (!strcmp(argv[i], "--grad-loss")) {
            all_grad_loss = true;
        } else if (!strcmp(argv[i], "--hostile") && i + 1 < argc) {
            hostile = atoi(argv[++i]);
            verbose = 1;
        } else {
            usage();
            return 2;
        }
    }
    if (sodium_init() < 0)
        return 1;
    sw_log_level = verbose ? SW_LOG_DEBUG : SW_LOG_NONE;
    sw_log_set_prefix(log_prefix);
    signal(SIGABRT, on_abort);
    signal(SIGSEGV, on_abort);
    if (hostile >= 0 && hostile < 6) /* one hostile scenario, verbose */
        return hostile_run(hostile, 1) < 0;
    tap_plan(with_pinned ? 4 : 1);
    for (uint64_t seed = first; seed < first + count && failed < 10; seed++, runs++)
        failed += run(seed, verbose, &stats) < 0;
    tap_diag("%d scenarios from seed %llu: %llu events, %.0f s simulated, %llu updates, "
             "%llu kills, %llu newcomers; recoveries: %llu copies, %llu checkfree, %llu "
             "checkfree+; %llu runs stopped (lost for good); %llu updates without a gone "
             "replica's share; %llu late READYs of an earlier round dropped; %llu moves "
             "in %llu rebalancing scenarios; %llu PREPAREs and GOs of a stranger dropped; "
             "longest time without an update after a disturbance %.1f s (seed %llu); "
             "early PREPAREs: %llu sent, %llu of their READYs taken by a round; GOs with "
             "resend: %llu, taken %llu times; gone replicas' partials relayed: %llu sent, "
             "%llu taken",
             runs, (unsigned long long)first, (unsigned long long)stats.events,
             stats.sim_ms / 1000.0, (unsigned long long)stats.updates,
             (unsigned long long)stats.kills, (unsigned long long)stats.newcomers,
             (unsigned long long)stats.recoveries[1], (unsigned long long)stats.recoveries[2],
             (unsigned long long)stats.recoveries[3], (unsigned long long)stats.stopped_lost,
             (unsigned long long)stats.partials, (unsigned long long)stats.stale_ready,
             (unsigned long long)stats.moves, (unsigned long long)stats.balance_runs,
             (unsigned long long)stats.hostile, stats.max_gap_ms / 1000.0,
             (unsigned long long)stats.max_gap_seed, (unsigned long long)stats.early_sent,
             (unsigned long long)stats.early_used, (unsigned long long)stats.resends,
             (unsigned long long)stats.resent, (unsigned long long)stats.relays_sent,
             (unsigned long long)stats.relays_taken);
    tap_ok(failed == 0, "%d seeded scenarios kept the invariants (%d failed; replay one with "
           "--seed N --verbose)", runs, failed);
    if (with_pinned) {
        int bad = 0;
        size_t np = SW_ARRAY_SIZE(pinned), ng = SW_ARRAY_SIZE(pinned_grad_loss);
        size_t nh = SW_ARRAY_SIZE(pinned_harsh);
        bool gl = all_grad_loss;
        int hs = harsh;

        for (size_t i = 0; i < np + ng + nh; i++) {
            const struct pin *p = i < np        ? &pinned[i]
                                  : i < np + ng ? &pinned_grad_loss[i - np]
                                                : &pinned_harsh[i - np - ng];

            all_grad_loss = gl || (i >= np && i < np + ng);
            harsh = hs || i >= np + ng;
            if (run(p->seed, verbose, NULL) < 0) {
                bad++;
                tap_diag("pinned seed %llu%s (it once found: %s) fails again",
                         (unsigned long long)p->seed,
                         i >= np + ng ? " --harsh" : i >= np ? " --grad-loss" : "", p->found);
            }
        }
        all_grad_loss = gl;
        harsh = hs;
        tap_ok(bad == 0, "the %zu seeds that found bugs pass", np + ng + nh);
        bad = 0;
        for (int k = 0; k < 6; k++)
            bad += hostile_run(k, verbose) < 0;
        tap_ok(bad == 0, "hostile records and a stranger's node (fake records with dead "
               "endpoints; zero weights 2 steps ahead; step + 1000; the lowest key, from the "
               "start and mid-run), a replica that says busy: %d of 6 failed "
               "(replay one with --hostile K)", bad);
        /* the barrier off the step's path (lead.h, Early PREPAREs): most
         * rounds take the READYs of the PREPAREs sent before they began;
         * churn, loss and harsh links leave some to the round's own */
        tap_ok(stats.early_sent > 0 && stats.early_used * 10 >= stats.early_sent * (harsh ? 5 : 8),
               "the rounds took %llu of the %llu READYs to early PREPAREs (%d%% at least)",
               (unsigned long long)stats.early_used, (unsigned long long)stats.early_sent,
               harsh ? 50 : 80);
    }
    return tap_done();
}
