/*
 * swarmctl - look at a swarm run, and sign its manifest.
 *
 *   swarmctl status   --peer ADDR [--json] [--watch SECONDS] [--deadline-ms MS]
 *   swarmctl peers    --peer ADDR [--json]
 *   swarmctl manifest --peer ADDR
 *   swarmctl manifest sign  --run FILE --key DIR
 *   swarmctl manifest check --run FILE [--owner HEX]
 *   swarmctl manifest keys
 *   swarmctl key --key DIR
 *   swarmctl admit --key DIR (--manifest FILE | --run FILE|HEX) --node HEX [--stage N]
 *                  [--days D | --expires UNIX] [--delegate] [--cert FILE] -o FILE
 *   swarmctl revoke --key OWNERDIR --peer ADDR NODEKEY...
 *   swarmctl checkpoint list|verify|export --dir DIR [--out OUT] [--step N]
 *
 * Exit status of status/peers/manifest --peer: 0 healthy, 1 degraded (a
 * stage empty or stalled), 2 unreachable (or the peer's manifest does not
 * verify), 3 usage.  The JSON of `status --json` is documented in
 * swarmctl(1); its keys only ever grow.
 *
 * status and peers join the run's DHT as a client that does not serve
 * (net/dhtnode.h, no endpoint) and read the stage records (status.h) and
 * the run's end record in one round: the gets of every key start together
 * as soon as the bootstrap (or the peer) answered, with requests that time
 * out after 3/8 of --deadline-ms, and whatever has come by the deadline is
 * shown; a stage whose get did not end by then shows "unknown".  In an
 * owner-mode run a record whose publisher has no valid certificate is left
 * out, as the nodes leave it out.  A dead
 * node that the DHT still lists so costs one short timeout, not a 2 s one
 * per lookup, and nothing is read twice.  Over a slow link the deadline
 * grows with the time the manifest took (client_open): every DHT node is a
 * fresh connection, whose handshakes alone cost two or three round trips.
 */
#include "sw.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admit.h"
#include "cfg.h"
#include "ckptcli.h"
#include "manifest.h"
#include "node.h"
#include "proto.h"
#include "status.h"
#include "transport.h"

#define EXIT_USAGE 3

struct opts {
    char peer[256];
    char run[4096];
    char key[4096];
    char owner[80];
    int json;
    float watch;
    int timeout_ms, deadline_ms;
    char log_level[16];
    /* admit */
    char manifest[4096];
    char node[80];
    int stage;
    float days;
    unsigned long long expires;
    int delegate;
    char cert[4096];
    char out[4096];
};

#define T struct opts
static const struct sw_cfg_entry tab[] = {
    SW_CFG_STR(T, "peer", peer, "tcp://127.0.0.1:7400", "lobby endpoint of the bootstrap or of any node"),
    SW_CFG_BOOL(T, "json", json, 0, "print JSON (see swarmctl(1))"),
    SW_CFG_FLOAT(T, "watch", watch, 0, 0, 86400, "print again every SECONDS (0: once)"),
    SW_CFG_STR(T, "owner", owner, "", "expected owner key (64 hex digits)"),
    SW_CFG_STR(T, "run", run, "", "manifest file (sign, check)"),
    SW_CFG_STR(T, "key", key, "", "key directory (sign, key)"),
    SW_CFG_INT(T, "timeout-ms", timeout_ms, 2000, 100, 600000, "the peer's answer (manifest)"),
    SW_CFG_INT(T, "deadline-ms", deadline_ms, 400, 50, 600000,
               "reading the DHT: what has come by then is shown"),
    SW_CFG_STR(T, "log-level", log_level, "warn", "debug, info, warn or error"),
    SW_CFG_STR(T, "manifest", manifest, "", "manifest file (admit: the run to admit to)"),
    SW_CFG_STR(T, "node", node, "", "admit: the node's key (64 hex digits, swarmctl key)"),
    SW_CFG_INT(T, "stage", stage, -1, -1, 1023, "admit: the only stage the node may serve (-1: any)"),
    SW_CFG_FLOAT(T, "days", days, 30, 0.0001f, 36500, "admit: days the certificate is good for"),
    SW_CFG_U64(T, "expires", expires, 0, "admit: expiry as Unix seconds instead of --days (0: use --days)"),
    SW_CFG_BOOL(T, "delegate", delegate, 0, "admit: the node may itself issue certificates"),
    SW_CFG_STR(T, "cert", cert, "", "admit: the delegate certificate of the --key that signs"),
    SW_CFG_STR(T, "out", out, "", "admit: the certificate file to write (also -o)"),
};
#undef T

static const char *prog = "swarmctl";

struct client {
    uv_loop_t loop;
    struct sw_identity id;
    struct sw_transport *lobby, *tr;
    struct sw_manifest man;
    bool have_man;
    uint8_t owner[32], sig[64];
    char ep[SW_PROTO_EP_MAX], boot[SW_PROTO_EP_MAX];
    /* the run's stages and its end, read from the DHT (client_dir) */
    struct sw_dhtnode *dht;
    struct sw_status_scan scan;
    bool have_scan;
    uv_check_t check;     /* starts the gets once the DHT has a contact */
    uv_timer_t deadline;
    bool have_check, have_deadline;
    const char *eps[2];   /* the DHT's entry points: the bootstrap's and the peer's */
    size_t neps;
    bool scanning, scanned, end_pending, rejoin;
    struct sw_peer_rec recs[SW_PROTO_MAX_NODES];
    int nrec;
    uint64_t run_step;
    int proving;          /* proof pings in flight (client_prove) */
    struct sw_run_end end; /* step 0: no end record found */
    bool have_end;
    int end_unadmitted;    /* end records whose publisher has no valid certificate */
    bool revoke_pending;   /* owner mode: the revocation list's get */
    uint64_t revoke_seq;   /* the list applied (0: none) */
    int revoked_out;       /* records left out because the list revokes them */
    struct sw_admit admit; /* an owner-mode run: whose records count */
    bool have_admit;
    int status;
    bool done;
    /* the DHT's deadline: --deadline-ms, or longer where the manifest took
     * long (client_open) */
    int deadline_ms;
};

static void
on_manifest(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct client *c = arg;
    struct sw_manifest_reply r;
    char why[512];

    (void)t;
    c->done = true;
    c->status = status;
    if (status < 0)
        return;
    if (sw_node_manifest_read(m, &r) < 0) {
        fprintf(stderr, "%s: malformed manifest reply\n", prog);
        c->status = -SW_EMSG;
        return;
    }
    snprintf(c->ep, sizeof(c->ep), "%s", r.ep);
    snprintf(c->boot, sizeof(c->boot), "%s", r.boot);
    if (sw_manifest_parse(&c->man, "manifest from peer", r.bytes, r.len, why, sizeof(why)) < 0) {
        fprintf(stderr, "%s: %s\n", prog, why);
        c->status = -SW_ECONFIG;
        return;
    }
    c->have_man = true;
    memcpy(c->owner, r.owner, 32);
    memcpy(c->sig, r.sig, 64);
    if (!sw_manifest_verify(c->owner, c->man.run_id, c->sig)) {
        fprintf(stderr, "%s: the peer's manifest signature does not verify\n", prog);
        c->status = -SW_ESIG;
    }
}

/* The DHT read is over when the scan and the gets of the end record and
 * the revocation list ended.  The records of revoked keys (or of keys a
 * revoked delegate certified) are left out then, as the nodes leave them:
 * their certificates were verified during the scan, and the list drops
 * them from the admitter's cache (admit.h) */
static void
dir_check_done(struct client *c)
{
    int k = 0;

    if (!c->scanned || c->end_pending || c->revoke_pending || c->done)
        return;
    c->done = true;
    if (!c->have_admit || !c->revoke_seq)
        return;
    for (int i = 0; i < c->nrec; i++) {
        if (sw_admit_check(&c->admit, c->recs[i].pk, NULL, 0, (uint64_t)time(NULL), NULL) !=
            SW_ADMIT_OK) {
            c->revoked_out++;
            continue;
        }
        c->recs[k++] = c->recs[i];
    }
    c->nrec = k;
}

/* The revocation list: the newest one the run owner signed. */
static void
on_revoked(void *arg, int status, const struct sw_dht_record *recs, size_t n,
           const struct sw_dht_lookup_info *info)
{
    struct client *c = arg;
    struct sw_revoked l, best;
    bool have = false;

    (void)info;
    if (status == -SW_ECANCELED || !c->revoke_pending)
        return;
    c->revoke_pending = false;
    for (size_t i = 0; status == 0 && i < n; i++)
        if (!memcmp(recs[i].pub, c->owner, 32) &&
            sw_revoked_decode(recs[i].val, recs[i].val_len, c->man.run_id, c->owner, &l) == 0 &&
            (!have || l.seq > best.seq)) {
            best = l;
            have = true;
        }
    if (have && sw_admit_set_revoked(&c->admit, &best))
        c->revoke_seq = best.seq;
    dir_check_done(c);
}

/* Nobody answered the join (a busy machine): ask again until the deadline. */
static void
on_joined(void *arg, int status, const struct sw_dht_contact *nodes, size_t n,
          const struct sw_dht_lookup_info *info)
{
    struct client *c = arg;

    (void)nodes;
    (void)n;
    (void)info;
    if (status == -SW_ECANCELED || status == 0 || c->scanning || c->scanned)
        return;
    /* the join is asked again after this turn of the loop (on_check): the
     * DHT is still booting while it calls back */
    c->rejoin = true;
}

static void
on_scan(void *arg, int status, const struct sw_peer_rec *recs, int n, uint64_t max_step)
{
    struct client *c = arg;

    c->scanning = false;
    c->scanned = true;
    /* a get that heard nobody or did not end in time: its stage shows "unknown" */
    c->status = status == -SW_ETIMEDOUT ? 0 : status;
    memcpy(c->recs, recs, (size_t)n * sizeof(*recs));
    c->nrec = n;
    c->run_step = max_step;
    dir_check_done(c);
}

static void
on_end(void *arg, int status, const struct sw_dht_record *recs, size_t n,
       const struct sw_dht_lookup_info *info)
{
    struct client *c = arg;

    (void)info;
    if (status == -SW_ECANCELED || !c->end_pending)
        return;
    c->end_pending = false;
    /* an admitted publisher's (any in an open run): the one with the highest step */
    for (size_t i = 0; status == 0 && i < n; i++) {
        struct sw_run_end e;
        if (sw_status_end_from_dht(&recs[i], &e) < 0)
            continue;
        if (c->have_admit && sw_admit_check(&c->admit, recs[i].pub, e.cert, e.cert_len,
                                            (uint64_t)time(NULL), NULL) != SW_ADMIT_OK) {
            c->end_unadmitted++;
            continue;
        }
        e.cert = NULL; /* it pointed into the DHT's record */
        e.cert_len = 0;
        if (!c->have_end || e.step > c->end.step) {
            c->end = e;
            c->have_end = true;
        }
    }
    dir_check_done(c);
}

/* After each turn of the loop: once a contact answered, every get starts at once. */
static void
on_check(uv_check_t *h)
{
    struct client *c = h->data;
    uint8_t key[32];
    int err;

    if (c->rejoin && !c->scanning && !c->scanned) {
        /* an error other than "still booting" leaves it to the deadline */
        err = sw_dhtnode_bootstrap(c->dht, c->eps, c->neps, on_joined, c);
        c->rejoin = err == -SW_EAGAIN;
    }
    if (c->scanning || c->scanned || !sw_dht_count_contacts(sw_dhtnode_dht(c->dht)))
        return;
    uv_check_stop(h);
    if ((err = sw_status_scan_start(&c->scan, on_scan, c)) < 0) {
        c->status = err;
        c->scanned = true;
        c->done = true;
        return;
    }
    c->scanning = true;
    sw_status_end_key(key, c->man.run_id);
    c->end_pending = sw_dhtnode_get(c->dht, key, on_end, c) == 0;
    if (c->have_admit) {
        sw_revoked_key(key, c->man.run_id);
        c->revoke_pending = sw_dhtnode_get(c->dht, key, on_revoked, c) == 0;
    }
}

/* The deadline: what has come is shown, the rest is abandoned. */
static void
on_deadline(uv_timer_t *h)
{
    struct client *c = h->data;

    c->end_pending = false;
    c->revoke_pending = false;
    if (c->scanning)
        sw_status_scan_cut(&c->scan); /* calls on_scan */
    c->scanned = true; /* no DHT node answered in time: every stage unknown */
    dir_check_done(c);
}

static int
wait_done(struct client *c)
{
    while (!c->done)
        uv_run(&c->loop, UV_RUN_ONCE);
    c->done = false;
    return c->status;
}

static void
on_closed(void *arg)
{
    (void)arg;
}

/* own_key: the transports sign with the key of --key (revoke: the owner's,
 * whom an owner-mode run admits); else with a fresh one. */
static int
client_open(struct client *c, const struct opts *o, bool own_key)
{
    int err;

    memset(c, 0, sizeof(*c));
    uv_loop_init(&c->loop);
    if ((err = sw_identity_global_init()) < 0 ||
        (err = own_key ? sw_identity_load_or_create(&c->id, o->key)
                       : sw_identity_generate(&c->id)) < 0 ||
        (err = sw_transport_new(&c->lobby, &c->loop, &c->id, sw_proto_lobby_run, NULL)) < 0)
        return err;
    uint64_t t0 = uv_hrtime();
    if ((err = sw_transport_request(c->lobby, o->peer, SW_MSG_MANIFEST_GET, NULL, 0, NULL,
                                    (uint64_t)o->timeout_ms, 1, on_manifest, c)) < 0)
        return err;
    if ((err = wait_done(c)) < 0)
        return err;
    /* Over a slow link every DHT node is a fresh connection too: its
     * requests get twice what the manifest took at least (a 40 ms round
     * trip makes that about 0.3 s, a third of which is TCP's and ZeroMQ's
     * handshakes), and the deadline 8/3 of their timeout, as on loopback */
    uint64_t manifest_ms = (uv_hrtime() - t0) / 1000000;
    c->deadline_ms = o->deadline_ms;
    if (manifest_ms * 2 > (uint64_t)o->deadline_ms * 3 / 8)
        c->deadline_ms = (int)SW_MIN(manifest_ms * 2 * 8 / 3, 600000);
    if (o->owner[0]) {
        uint8_t want[32];
        if (strlen(o->owner) != 64 || sw_hex_decode(want, 32, o->owner) < 0) {
            fprintf(stderr, "%s: --owner: want 64 hex digits\n", prog);
            return -SW_ECONFIG;
        }
        if (sodium_memcmp(want, c->owner, 32)) {
            fprintf(stderr, "%s: the run is signed by another owner\n", prog);
            return -SW_EPERM;
        }
    }
    return sw_transport_new(&c->tr, &c->loop, &c->id, c->man.run_id, NULL);
}

/* An owner-mode run's record counts when its publisher's certificate
 * verifies for its stage (the revocation list is the nodes' to apply). */
static bool
rec_admitted(void *arg, const struct sw_peer_rec *r)
{
    struct client *c = arg;

    return sw_admit_check_rec(&c->admit, r->pk, r->cert, r->cert_len, r->stage,
                              (uint64_t)time(NULL)) == SW_ADMIT_OK;
}

/*
 * Joins the run's DHT as a client that does not serve (no endpoint) through
 * the bootstrap's run endpoint and the peer's and, as soon as one of them
 * answered, reads every stage key and the end key at once (on_check), until
 * they all ended or --deadline-ms passed (on_deadline).  The DHT's requests
 * time out after 3/8 of the deadline, so that a lookup that met a dead node
 * still ends in time with what the live ones said.
 */
static int
client_dir(struct client *c, const struct opts *o)
{
    struct sw_dht_params p;
    int err;

    sw_dht_params_default(&p);
    p.rpc_timeout_ms = (uint32_t)SW_MAX(20, SW_MIN(c->deadline_ms * 3 / 8, 2000));
    if ((err = sw_dhtnode_new(&c->dht, &c->loop, c->tr, NULL, &p)) < 0)
        return err;
    if ((err = sw_status_scan_init(&c->scan, c->dht, c->man.run_id, c->man.stages)) < 0)
        return err;
    c->have_scan = true;
    if (!c->man.admission_open) { /* what the nodes count, status shows */
        if ((err = sw_admit_init(&c->admit, c->man.run_id, c->owner, false, 0)) < 0)
            return err;
        c->have_admit = true;
        c->scan.admit = rec_admitted;
        c->scan.admit_arg = c;
    }
    uv_check_init(&c->loop, &c->check);
    uv_timer_init(&c->loop, &c->deadline);
    c->check.data = c->deadline.data = c;
    c->have_check = c->have_deadline = true;
    uv_check_start(&c->check, on_check);
    uv_timer_start(&c->deadline, on_deadline, (uint64_t)c->deadline_ms, 0);
    c->eps[0] = c->boot[0] ? c->boot : c->ep;
    c->eps[1] = c->ep;
    c->neps = c->boot[0] && strcmp(c->boot, c->ep) ? 2 : 1;
    if ((err = sw_dhtnode_bootstrap(c->dht, c->eps, c->neps, on_joined, c)) < 0)
        return err;
    err = wait_done(c);
    uv_timer_stop(&c->deadline);
    uv_check_stop(&c->check);
    return err;
}

/* A proof's answer (status.h, unproven). */
struct proof {
    struct client *c;
    int i;
};

static void
on_proof(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct proof *p = arg;
    struct client *c = p->c;

    (void)t;
    if (status == 0 && m && !memcmp(m->hdr.sender, c->recs[p->i].pk, 32))
        c->recs[p->i].unproven = false;
    if (--c->proving == 0)
        c->done = true;
}

/*
 * Every record's node is asked to prove it serves the endpoint its record
 * names (swarm-protocol(7), STAGE RECORDS): a PING there, answered with the
 * record's key within the deadline; the others are unproven, listed as such
 * and not counted (status.h).
 */
static int
client_prove(struct client *c, const struct opts *o)
{
    static struct proof pr[SW_PROTO_MAX_NODES];

    c->proving = 0;
    /* an owner-mode run: the records left are those whose certificate the
     * owner signed (client_dir), and the nodes answer no key without one,
     * this client's included: the certificate vouches for them */
    if (c->have_admit)
        return 0;
    for (int i = 0; i < c->nrec; i++) {
        c->recs[i].unproven = true;
        if (c->recs[i].state == SW_REC_LEAVING)
            continue;
        pr[i].c = c;
        pr[i].i = i;
        if (sw_transport_request(c->tr, c->recs[i].ep, SW_MSG_PING, NULL, 0, NULL,
                                 (uint64_t)SW_MAX(c->deadline_ms, 200), 0, on_proof, &pr[i]) == 0)
            c->proving++;
    }
    if (c->proving)
        wait_done(c);
    return 0;
}

static void
client_close(struct client *c)
{
    if (c->have_check)
        uv_close((uv_handle_t *)&c->check, NULL);
    if (c->have_deadline)
        uv_close((uv_handle_t *)&c->deadline, NULL);
    if (c->dht)
        sw_dhtnode_close(c->dht); /* before its transport */
    if (c->tr)
        sw_transport_close(c->tr, on_closed, NULL);
    if (c->lobby)
        sw_transport_close(c->lobby, on_closed, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    uv_loop_close(&c->loop);
    if (c->have_scan)
        sw_status_scan_release(&c->scan);
    if (c->have_admit)
        sw_admit_release(&c->admit);
    if (c->have_man)
        sw_manifest_release(&c->man);
    sw_identity_release(&c->id);
}

static void
json_num(double v, bool null_if_negative)
{
    if ((null_if_negative && v < 0) || !isfinite(v))
        printf("null");
    else
        printf("%.6g", v);
}

/* A JSON string: records are printable ASCII (sw_proto_str), so only '"' and '\\' are escaped. */
static void
json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

/* A peer's "last_recovery": {method, from, bytes, seconds} or null. */
static void
json_last_recovery(const struct sw_peer_rec *r)
{
    if (!r->rec_method[0]) {
        printf("null");
        return;
    }
    printf("{\"method\":");
    json_str(r->rec_method);
    printf(",\"from\":");
    json_str(r->rec_from);
    printf(",\"bytes\":%llu,\"seconds\":%.3f}", (unsigned long long)r->rec_bytes,
           (double)r->rec_ms / 1000.0);
}

/* "12.3 MB": bytes for a person */
static const char *
human_bytes(char *buf, size_t cap, uint64_t b)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    double v = (double)b;
    int u = 0;

    while (v >= 1000 && u < 4) {
        v /= 1000;
        u++;
    }
    snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

static const char *health_names[] = {"healthy", "degraded", "unreachable"};

/* A record's reachability verdict (reach.h), for the JSON: a string, or null when not said. */
static const char *
reach_json(const struct sw_peer_rec *r)
{
    static const char *const v[] = {"null", "\"unknown\"", "\"reachable\"", "\"unreachable\""};
    return r->reach >= 0 && r->reach <= 3 ? v[r->reach] : "null";
}

/* The relay a record names (reach.h, Relays) into relay; false when none. */
static bool
rec_relay(const struct sw_peer_rec *r, char *relay, size_t cap)
{
    return sw_transport_endpoint_is_relay(r->ep, NULL, relay, cap);
}

/* How a record's node is reached: "outbound-only" when its endpoint is its
 * key's connection (reach.h, Outbound-only mode) or its relay, else "direct". */
static const char *
mode_name(const struct sw_peer_rec *r)
{
    char relay[SW_PROTO_EP_MAX];

    return sw_transport_endpoint_is_key(r->ep, NULL) || rec_relay(r, relay, sizeof(relay))
               ? "outbound-only" : "direct";
}

/*
 * The hops between adjacent stages that go through a relay (both ends
 * outbound-only, reach.h, Relays): one line each, under a heading, once.
 */
static void
print_relayed_hops(const struct sw_peer_rec *recs, int n)
{
    char key[65], key2[65], relay[SW_PROTO_EP_MAX], relay2[SW_PROTO_EP_MAX];
    int shown = 0;

    for (int i = 0; i < n; i++) {
        if (!rec_relay(&recs[i], relay, sizeof(relay)))
            continue;
        for (int k = 0; k < n; k++) {
            if (recs[k].stage != recs[i].stage + 1 || !rec_relay(&recs[k], relay2, sizeof(relay2)))
                continue;
            if (!shown++)
                printf("relayed hops (both ends outbound-only):\n");
            printf("  stage %d %.16s -> stage %d %.16s through %s, back through %s\n",
                   recs[i].stage, sw_identity_hex(key, recs[i].pk, 32), recs[k].stage,
                   sw_identity_hex(key2, recs[k].pk, 32), relay2, relay);
        }
    }
}

/* ... and for the tables: "-" when not said. */
static const char *
reach_text(const struct sw_peer_rec *r)
{
    return r->reach > 0 ? sw_reach_verdict_name(r->reach - 1) : "-";
}

static int
print_status(struct client *c, const struct opts *o)
{
    const struct sw_manifest *m = &c->man;
    struct sw_stage_summary *sum = sw_calloc((size_t)m->stages, sizeof(*sum));
    uint64_t now = sw_now_ms();
    char run[65], owner[65], key[65];
    double tps = 0, loss;
    int health, unknown = 0, nodes = 0, unproven = 0;
    /* the run's step: the highest in any proven record (an unproven one
     * claims what it likes), the end record's included; every record's
     * when none is proven */
    uint64_t step = c->run_step;
    bool finished;

    for (int i = 0, first = 1; i < c->nrec; i++)
        if (!c->recs[i].unproven) {
            step = first || c->recs[i].step > step ? c->recs[i].step : step;
            first = 0;
        }
    if (c->have_end && c->end.step > step)
        step = c->end.step;
    finished = step >= (uint64_t)m->steps;

    if (!sum)
        return SW_HEALTH_UNREACHABLE;
    health = sw_status_summarize(c->recs, c->nrec, m->stages, step, m->steps, now,
                                 c->scan.answered, sum);
    loss = sum[m->stages - 1].loss;
    if (loss < 0 && finished && c->have_end)
        loss = c->end.loss; /* the nodes have left */
    for (int s = 0; s < m->stages; s++) {
        unknown += !strcmp(sum[s].state, "unknown");
        unproven += sum[s].unproven;
    }
    for (int i = 0; i < c->nrec; i++)
        nodes += !c->recs[i].unproven;
    for (int s = 0; s < m->stages; s++)
        if (sum[s].nodes && (s == 0 || sum[s].tps < tps))
            tps = sum[s].tps;
    sw_identity_hex(run, m->run_id, 32);
    sw_identity_hex(owner, c->owner, 32);
    if (o->json) {
        printf("{\"version\":1,\"run\":{\"id\":\"%s\",\"name\":\"%s\",\"owner\":\"%s\","
               "\"stages\":%d,\"steps\":%d,\"step\":%llu,\"loss\":",
               run, m->name, owner, m->stages, m->steps, (unsigned long long)step);
        json_num(loss, true);
        printf(",\"tokens_per_s\":%.1f,\"nodes\":%d,\"unproven\":%d,\"health\":\"%s\","
               "\"finished\":%s,\"state\":\"%s\",\"unanswered\":%d,\"bootstrap\":\"%s\"},"
               "\"stages\":[",
               tps, nodes, unproven, health_names[health], finished ? "true" : "false",
               finished ? "finished" : "running", unknown, c->boot);
        for (int s = 0; s < m->stages; s++) {
            const struct sw_stage_summary *x = &sum[s];
            printf("%s{\"stage\":%d,\"nodes\":%d,\"state\":\"%s\",\"unproven\":%d,\"step\":",
                   s ? "," : "", s, x->nodes, x->state, x->unproven);
            if (x->nodes)
                printf("%llu", (unsigned long long)x->step);
            else
                printf("null");
            printf(",\"loss\":");
            json_num(x->loss, true);
            printf(",\"tokens_per_s\":%.1f,\"capacity\":%.1f,\"last_heard_s\":", x->tps, x->cap);
            json_num(x->last_heard_s, true);
            printf(",\"recoveries\":%llu,\"bottleneck\":%s,\"answered\":%s}",
                   (unsigned long long)x->recoveries, x->bottleneck ? "true" : "false",
                   c->scan.answered[s] ? "true" : "false");
        }
        printf("],\"peers\":[");
        for (int i = 0; i < c->nrec; i++) {
            const struct sw_peer_rec *r = &c->recs[i];
            printf("%s{\"key\":\"%s\",\"endpoint\":\"%s\",\"proven\":%s,\"stage\":%d,"
                   "\"state\":\"%s\",\"step\":%llu,\"loss\":",
                   i ? "," : "", sw_identity_hex(key, r->pk, 32), r->ep,
                   r->unproven ? "false" : "true", r->stage, sw_status_state_name(r->state),
                   (unsigned long long)r->step);
            json_num(r->loss, true);
            printf(",\"tokens_per_s\":%.1f,\"capacity\":%.1f,\"grad_norm\":%.6g,\"hash\":\"%s\","
                   "\"last_heard_s\":%.3f,\"recoveries\":%llu,\"last_recovery\":",
                   r->tps, r->cap, r->norm, r->hash, (double)(now - r->heard_ms) / 1000.0,
                   (unsigned long long)r->recoveries);
            json_last_recovery(r);
            {
                char relay[SW_PROTO_EP_MAX];

                printf(",\"reach\":%s,\"mode\":\"%s\",\"relay\":", reach_json(r), mode_name(r));
                if (rec_relay(r, relay, sizeof(relay)))
                    printf("\"%s\"}", relay);
                else
                    printf("null}");
            }
        }
        printf("]}\n");
    } else {
        if (finished)
            printf("run %.16s \"%s\"  finished at step %llu  %d nodes", run, m->name,
                   (unsigned long long)step, nodes);
        else
            printf("run %.16s \"%s\"  step %llu/%d  %s  %d nodes  %.0f tokens/s", run, m->name,
                   (unsigned long long)step, m->steps, health_names[health], nodes, tps);
        if (unproven)
            printf("  %d unproven", unproven);
        if (loss >= 0)
            printf("  loss %.4f", loss);
        printf("\n%-6s %-5s %-8s %-8s %-9s %-11s %-11s %-10s %-5s %s\n", "STAGE", "NODES",
               "STATE", "STEP", "LOSS", "TOKENS/S", "CAPACITY", "HEARD", "RECOV", "");
        for (int s = 0; s < m->stages; s++) {
            const struct sw_stage_summary *x = &sum[s];
            char st[24] = "-", ls[24] = "-", heard[24] = "-";
            if (x->nodes)
                snprintf(st, sizeof(st), "%llu", (unsigned long long)x->step);
            if (x->loss >= 0)
                snprintf(ls, sizeof(ls), "%.4f", x->loss);
            if (x->last_heard_s >= 0)
                snprintf(heard, sizeof(heard), "%.1fs ago", x->last_heard_s);
            printf("%-6d %-5d %-8s %-8s %-9s %-11.0f %-11.0f %-10s %-5llu %s\n", s, x->nodes,
                   x->state, st, ls, x->tps, x->cap, heard,
                   (unsigned long long)x->recoveries, x->bottleneck ? "<- bottleneck" : "");
        }
        if (unknown)
            printf("%d stage%s unknown: no answer from the DHT within %d ms (--deadline-ms)\n",
                   unknown, unknown > 1 ? "s" : "", c->deadline_ms);
        if (c->have_scan && c->scan.unadmitted)
            printf("%llu record%s left out: no valid certificate of the run owner "
                   "(swarm-protocol(7), ADMISSION)\n", (unsigned long long)c->scan.unadmitted,
                   c->scan.unadmitted > 1 ? "s" : "");
        if (c->revoked_out)
            printf("%d record%s left out: revoked by the run owner (revocation list %llu)\n",
                   c->revoked_out, c->revoked_out > 1 ? "s" : "",
                   (unsigned long long)c->revoke_seq);
        if (c->end_unadmitted)
            printf("%d end record%s left out: no valid certificate of the run owner\n",
                   c->end_unadmitted, c->end_unadmitted > 1 ? "s" : "");
        for (int s = 0; s < m->stages; s++)
            if (sum[s].unproven)
                printf("stage %d: %d unproven record%s (not counted: no answer signed by the "
                       "record's key at its endpoint)\n", s, sum[s].unproven,
                       sum[s].unproven > 1 ? "s" : "");
        /* every node's reachability verdict, once any record says one (reach.h) */
        for (int i = 0, shown = 0; i < c->nrec; i++) {
            const struct sw_peer_rec *r = &c->recs[i];
            bool any = false;
            for (int k = 0; k < c->nrec && !any; k++)
                any = c->recs[k].reach > 0;
            if (!any)
                break;
            if (!shown++)
                printf("reachability (per node):\n%-6s %-16s %-11s %-13s %s\n", "STAGE",
                       "NODE", "REACH", "MODE", "ENDPOINT");
            printf("%-6d %.16s %-11s %-13s %s%s\n", r->stage, sw_identity_hex(key, r->pk, 32),
                   reach_text(r), mode_name(r), r->ep,
                   !r->unproven ? "" : sw_transport_endpoint_is_key(r->ep, NULL)
                   ? " (unproven: swarmctl cannot dial an outbound-only node without a relay)"
                   : " (unproven)");
        }
        print_relayed_hops(c->recs, c->nrec);
        /* the last recovery of every node that had one (records sorted by stage) */
        for (int i = 0, shown = 0; i < c->nrec; i++) {
            const struct sw_peer_rec *r = &c->recs[i];
            char bytes[32], dur[32];
            if (!r->rec_method[0])
                continue;
            if (!shown++)
                printf("recoveries (last per node):\n%-6s %-16s %-11s %-10s %-9s %s\n", "STAGE",
                       "NODE", "METHOD", "BYTES", "DURATION", "FROM");
            if (r->rec_ms < 1000)
                snprintf(dur, sizeof(dur), "%llums", (unsigned long long)r->rec_ms);
            else
                snprintf(dur, sizeof(dur), "%.1fs", (double)r->rec_ms / 1000.0);
            printf("%-6d %.16s %-11s %-10s %-9s %s\n", r->stage, sw_identity_hex(key, r->pk, 32),
                   r->rec_method, human_bytes(bytes, sizeof(bytes), r->rec_bytes), dur,
                   r->rec_from);
        }
    }
    fflush(stdout);
    sw_free(sum);
    return health;
}

static void
print_peers(struct client *c, const struct opts *o)
{
    uint64_t now = sw_now_ms();
    char key[65];

    if (o->json)
        printf("[");
    else
        printf("%-16s %-5s %-9s %-8s %-10s %-17s %-11s %s\n", "KEY", "STAGE", "STATE", "STEP",
               "TOKENS/S", "PARAMS", "REACH", "ENDPOINT");
    for (int i = 0; i < c->nrec; i++) {
        const struct sw_peer_rec *r = &c->recs[i];
        sw_identity_hex(key, r->pk, 32);
        if (o->json)
            printf("%s{\"key\":\"%s\",\"endpoint\":\"%s\",\"proven\":%s,\"stage\":%d,"
                   "\"state\":\"%s\",\"step\":%llu,\"tokens_per_s\":%.1f,\"hash\":\"%s\","
                   "\"last_heard_s\":%.3f,\"reach\":%s}",
                   i ? "," : "", key, r->ep, r->unproven ? "false" : "true", r->stage,
                   sw_status_state_name(r->state),
                   (unsigned long long)r->step, r->tps, r->hash,
                   (double)(now - r->heard_ms) / 1000.0, reach_json(r));
        else
            printf("%.16s %-5d %-9s %-8llu %-10.0f %-17s %-11s %s%s\n", key, r->stage,
                   sw_status_state_name(r->state), (unsigned long long)r->step, r->tps, r->hash,
                   reach_text(r), r->ep, r->unproven ? " (unproven)" : "");
    }
    if (o->json)
        printf("]\n");
    fflush(stdout);
}

static int
cmd_remote(const char *cmd, const struct opts *o)
{
    int rc = SW_HEALTH_OK;

    for (;;) {
        struct client c;
        int err = client_open(&c, o, false);
        if (err >= 0 && strcmp(cmd, "manifest") != 0)
            err = client_dir(&c, o);
        if (err >= 0 && strcmp(cmd, "manifest") != 0)
            err = client_prove(&c, o);
        if (err < 0) {
            if (o->json && !strcmp(cmd, "status"))
                printf("{\"version\":1,\"run\":null,\"health\":\"unreachable\",\"error\":\"%s\"}\n",
                       sw_strerror(err));
            else
                fprintf(stderr, "%s: cannot reach '%s': %s\n", prog, o->peer, sw_strerror(err));
            rc = SW_HEALTH_UNREACHABLE;
        } else if (!strcmp(cmd, "status")) {
            rc = print_status(&c, o);
        } else if (!strcmp(cmd, "peers")) {
            print_peers(&c, o);
        } else {
            char run[65], owner[65];
            printf("# run %s\n# owner %s\n# bootstrap %s\n", sw_identity_hex(run, c.man.run_id, 32),
                   sw_identity_hex(owner, c.owner, 32), c.boot);
            fwrite(c.man.bytes, 1, c.man.len, stdout);
        }
        client_close(&c);
        if (o->watch <= 0)
            break;
        usleep((useconds_t)(o->watch * 1e6));
        if (!o->json)
            printf("\n");
    }
    return rc;
}

static int
cmd_sign(const struct opts *o)
{
    struct sw_manifest m;
    struct sw_identity id;
    char why[512], text[512], path[4200];
    uint8_t sig[64];
    FILE *f;
    int err;

    if (!o->run[0] || !o->key[0]) {
        fprintf(stderr, "%s: manifest sign needs --run FILE and --key DIR\n", prog);
        return EXIT_USAGE;
    }
    if (sw_manifest_load(&m, o->run, why, sizeof(why)) < 0) {
        fprintf(stderr, "%s: %s\n", prog, why);
        return 1;
    }
    if ((err = sw_identity_global_init()) < 0 || (err = sw_identity_load_or_create(&id, o->key)) < 0) {
        sw_manifest_release(&m);
        return 1;
    }
    err = sw_manifest_sign(&id, m.run_id, sig);
    if (err == 0)
        err = sw_manifest_sig_format(text, sizeof(text), id.pk, sig);
    snprintf(path, sizeof(path), "%s.sig", o->run);
    if (err == 0 && (!(f = fopen(path, "w")) || fputs(text, f) < 0 || fclose(f) != 0))
        err = -SW_EIO;
    if (err == 0) {
        char run[65], owner[65];
        printf("signed '%s'\nrun %s\nowner %s\n", path, sw_identity_hex(run, m.run_id, 32),
               sw_identity_hex(owner, id.pk, 32));
    } else {
        fprintf(stderr, "%s: cannot write '%s': %s\n", prog, path, sw_strerror(err));
    }
    sw_identity_release(&id);
    sw_manifest_release(&m);
    return err == 0 ? 0 : 1;
}

static int
cmd_check(const struct opts *o)
{
    struct sw_manifest m;
    uint8_t want[32], owner[32], sig[64];
    char why[512];
    int err;

    if (!o->run[0]) {
        fprintf(stderr, "%s: manifest check needs --run FILE\n", prog);
        return EXIT_USAGE;
    }
    if (sw_manifest_load(&m, o->run, why, sizeof(why)) < 0) {
        fprintf(stderr, "%s: %s\n", prog, why);
        return 1;
    }
    if (o->owner[0] && (strlen(o->owner) != 64 || sw_hex_decode(want, 32, o->owner) < 0)) {
        fprintf(stderr, "%s: --owner: want 64 hex digits\n", prog);
        sw_manifest_release(&m);
        return EXIT_USAGE;
    }
    if ((err = sw_identity_global_init()) == 0)
        err = sw_manifest_check_sigfile(&m, o->run, o->owner[0] ? want : NULL, owner, sig);
    if (err == 0) {
        char run[65], oh[65];
        printf("ok: run %s, owner %s\n", sw_identity_hex(run, m.run_id, 32),
               sw_identity_hex(oh, owner, 32));
        sw_manifest_dump(&m, stdout);
    }
    sw_manifest_release(&m);
    return err == 0 ? 0 : 1;
}

static int
cmd_key(const struct opts *o)
{
    struct sw_identity id;
    char hex[65];

    if (!o->key[0]) {
        fprintf(stderr, "%s: key needs --key DIR\n", prog);
        return EXIT_USAGE;
    }
    if (sw_identity_global_init() < 0 || sw_identity_load_or_create(&id, o->key) < 0)
        return 1;
    printf("%s\n", sw_identity_hex(hex, id.pk, 32));
    sw_identity_release(&id);
    return 0;
}

/* --node/--peer key arguments: 64 hex digits into out; false when not. */
static bool
hex_key(const char *s, uint8_t out[32])
{
    return strlen(s) == 64 && sw_hex_decode(out, 32, s) == 0;
}

/* A signing key must exist: a fresh one would sign for nobody. */
static bool
has_key(const char *dir)
{
    char path[4200];

    snprintf(path, sizeof(path), "%s/%s", dir, SW_IDENTITY_FILE);
    if (access(path, F_OK) == 0)
        return true;
    fprintf(stderr, "%s: no key in '%s' (want the run owner's, or a delegate's)\n", prog, dir);
    return false;
}

/* The run id of --manifest FILE, or of --run FILE or HEX; 0 or EXIT_USAGE/1. */
static int
admit_run_id(const struct opts *o, uint8_t run[32])
{
    const char *file = o->manifest[0] ? o->manifest : o->run;
    struct sw_manifest m;
    char why[512];

    if (!file[0]) {
        fprintf(stderr, "%s: admit needs --manifest FILE or --run HEX\n", prog);
        return EXIT_USAGE;
    }
    if (!o->manifest[0] && hex_key(o->run, run) && access(o->run, F_OK) != 0)
        return 0;
    if (sw_manifest_load(&m, file, why, sizeof(why)) < 0) {
        fprintf(stderr, "%s: %s\n", prog, why);
        return 1;
    }
    memcpy(run, m.run_id, 32);
    sw_manifest_release(&m);
    return 0;
}

static int
cmd_admit(const struct opts *o)
{
    uint8_t run[32], node[32], cert[SW_CERT_MAX], chain[SW_CERT_MAX];
    size_t len, chain_len = 0;
    struct sw_identity id;
    struct sw_cert d;
    char hn[65], hr[65], hs[16];
    uint64_t exp;
    FILE *f;
    int err;

    if (!o->key[0] || !o->node[0] || !o->out[0]) {
        fprintf(stderr, "%s: admit needs --key DIR, --node HEX and -o FILE\n", prog);
        return EXIT_USAGE;
    }
    if (!hex_key(o->node, node)) {
        fprintf(stderr, "%s: --node: want 64 hex digits (swarmctl key --key DIR)\n", prog);
        return EXIT_USAGE;
    }
    if ((err = admit_run_id(o, run)) != 0)
        return err;
    if (!has_key(o->key))
        return 1;
    if ((err = sw_identity_global_init()) < 0 ||
        (err = sw_identity_load_or_create(&id, o->key)) < 0)
        return 1;
    if (o->cert[0]) { /* a delegate signs: its own certificate goes along */
        if ((err = sw_cert_load(o->cert, chain, &chain_len)) < 0 ||
            sw_cert_decode(chain, chain_len, &d) < 0) {
            fprintf(stderr, "%s: '%s': not a certificate\n", prog, o->cert);
            err = 1;
            goto out;
        }
        if (d.role != SW_CERT_DELEGATE || memcmp(d.node, id.pk, 32) || memcmp(d.run, run, 32)) {
            fprintf(stderr, "%s: '%s' is no delegate certificate of this key for this run\n",
                    prog, o->cert);
            err = 1;
            goto out;
        }
        if (d.stage >= 0 && o->stage != d.stage) {
            fprintf(stderr, "%s: this delegate may admit to stage %d only (--stage %d)\n", prog,
                    d.stage, d.stage);
            err = EXIT_USAGE;
            goto out;
        }
    }
    exp = o->expires ? (uint64_t)o->expires
                     : (uint64_t)time(NULL) + (uint64_t)((double)o->days * 86400.0);
    err = sw_cert_issue(&id, run, node, o->stage, exp,
                        o->delegate ? SW_CERT_DELEGATE : SW_CERT_NODE, chain_len ? chain : NULL,
                        chain_len, cert, sizeof(cert), &len);
    if (err == 0 && (!(f = fopen(o->out, "wb")) || fwrite(cert, 1, len, f) != len ||
                     fclose(f) != 0))
        err = -SW_EIO;
    if (err < 0) {
        fprintf(stderr, "%s: cannot write '%s': %s\n", prog, o->out, sw_strerror(err));
        err = 1;
        goto out;
    }
    snprintf(hs, sizeof(hs), "%d", o->stage);
    printf("admitted %s to run %.16s as %s, stage %s, until %llu (Unix time): '%s'\n",
           sw_identity_hex(hn, node, 32), sw_identity_hex(hr, run, 32),
           o->delegate ? "delegate" : "node", o->stage < 0 ? "any" : hs,
           (unsigned long long)exp, o->out);
out:
    sw_identity_release(&id);
    return err;
}

/* ---- revoke: read the run's list, add the keys, put it back ---- */

struct revoke {
    struct client *c;
    struct sw_revoked old;
    bool have_old;
    int status;
};

static void
on_rev_joined(void *arg, int status, const struct sw_dht_contact *nodes, size_t n,
              const struct sw_dht_lookup_info *info)
{
    struct revoke *r = arg;

    (void)nodes;
    (void)n;
    (void)info;
    r->status = status;
    r->c->done = true;
}

static void
on_rev_got(void *arg, int status, const struct sw_dht_record *recs, size_t n,
           const struct sw_dht_lookup_info *info)
{
    struct revoke *r = arg;
    struct sw_revoked l;

    (void)info;
    for (size_t i = 0; status == 0 && i < n; i++)
        if (!memcmp(recs[i].pub, r->c->owner, 32) &&
            sw_revoked_decode(recs[i].val, recs[i].val_len, r->c->man.run_id, r->c->owner,
                              &l) == 0 &&
            (!r->have_old || l.seq > r->old.seq)) {
            r->old = l;
            r->have_old = true;
        }
    r->c->done = true;
}

static void
on_rev_put(void *arg, int status, unsigned n_stored, const struct sw_dht_lookup_info *info)
{
    struct revoke *r = arg;

    (void)info;
    r->status = status < 0 ? status : n_stored ? 0 : -SW_ENOENT;
    r->c->done = true;
}

static int
cmd_revoke(const struct opts *o, int argc, char **argv, int first)
{
    static uint8_t val[SW_DHT_VALUE_MAX];
    struct sw_revoked l;
    struct sw_dht_params p;
    struct sw_dht_record rec;
    struct revoke r = {0};
    struct client c;
    const char *eps[2];
    size_t len;
    int err, rc = 1;

    if (!o->key[0] || first >= argc) {
        fprintf(stderr, "%s: revoke needs --key OWNERDIR, --peer ADDR and the keys to revoke\n",
                prog);
        return EXIT_USAGE;
    }
    memset(&l, 0, sizeof(l));
    if (!has_key(o->key))
        return 1;
    if ((err = client_open(&c, o, true)) < 0) {
        fprintf(stderr, "%s: cannot reach '%s': %s\n", prog, o->peer, sw_strerror(err));
        goto out;
    }
    if (memcmp(c.id.pk, c.owner, 32) != 0) {
        fprintf(stderr, "%s: the key in '%s' is not the run's owner: only the owner revokes\n",
                prog, o->key);
        goto out;
    }
    r.c = &c;
    sw_dht_params_default(&p);
    if ((err = sw_dhtnode_new(&c.dht, &c.loop, c.tr, NULL, &p)) < 0)
        goto out_err;
    eps[0] = c.boot[0] ? c.boot : c.ep;
    eps[1] = c.ep;
    if ((err = sw_dhtnode_bootstrap(c.dht, eps, c.boot[0] && strcmp(c.boot, c.ep) ? 2 : 1,
                                    on_rev_joined, &r)) < 0 ||
        (wait_done(&c), err = r.status) < 0)
        goto out_err;
    sw_revoked_key(rec.key, c.man.run_id);
    if ((err = sw_dhtnode_get(c.dht, rec.key, on_rev_got, &r)) < 0)
        goto out_err;
    wait_done(&c);
    if (r.have_old)
        l = r.old;
    for (int i = first; i < argc; i++) {
        uint8_t k[32];
        if (!hex_key(argv[i], k)) {
            fprintf(stderr, "%s: '%s': want a key of 64 hex digits\n", prog, argv[i]);
            rc = EXIT_USAGE;
            goto out;
        }
        if (sw_revoked_has(&l, k))
            continue;
        if (l.n == SW_REVOKED_MAX) {
            fprintf(stderr, "%s: the list is full (%d keys): start a new run\n", prog,
                    SW_REVOKED_MAX);
            goto out;
        }
        memcpy(l.keys[l.n++], k, 32);
    }
    /* newest wins: above the list read, and above any list this owner wrote before */
    l.seq = SW_MAX(l.seq + 1, (uint64_t)time(NULL));
    if ((err = sw_revoked_encode(&c.id, c.man.run_id, &l, val, sizeof(val), &len)) < 0)
        goto out_err;
    rec.seq = l.seq;
    rec.ttl_s = SW_REVOKED_TTL_S;
    rec.val = val;
    rec.val_len = len;
    sw_dht_record_sign(&rec, c.id.sk);
    if ((err = sw_dhtnode_put(c.dht, &rec, on_rev_put, &r)) < 0 ||
        (wait_done(&c), err = r.status) < 0)
        goto out_err;
    printf("revoked %d key%s in run %.16s (list seq %llu)\n", l.n, l.n == 1 ? "" : "s",
           sw_identity_hex((char[65]){0}, c.man.run_id, 32), (unsigned long long)l.seq);
    rc = 0;
    goto out;
out_err:
    fprintf(stderr, "%s: cannot publish the revocation list: %s\n", prog, sw_strerror(err));
out:
    client_close(&c);
    return rc;
}

static void
usage(FILE *f)
{
    fprintf(f, "usage: swarmctl status   [--peer ADDR] [--json] [--watch SECONDS] [--deadline-ms MS]\n"
               "       swarmctl peers    [--peer ADDR] [--json]\n"
               "       swarmctl manifest [--peer ADDR]\n"
               "       swarmctl manifest sign --run FILE --key DIR\n"
               "       swarmctl manifest check --run FILE [--owner HEX]\n"
               "       swarmctl manifest keys\n"
               "       swarmctl key --key DIR\n"
               "       swarmctl admit --key DIR (--manifest FILE | --run HEX) --node HEX\n"
               "                      [--stage N] [--days D | --expires UNIX] [--delegate]\n"
               "                      [--cert FILE] -o FILE\n"
               "       swarmctl revoke --key OWNERDIR --peer ADDR NODEKEY...\n"
               "       swarmctl checkpoint list|verify|export --dir DIR [--out OUT] [--step N]\n\n"
               "Looks at a swarm run; see swarmctl(1).  Exit status: 0 healthy, 1 degraded,\n"
               "2 unreachable, 3 usage.\n\noptions:\n");
    sw_cfg_help(tab, SW_ARRAY_SIZE(tab), f);
}

int
main(int argc, char **argv)
{
    struct opts o;
    const char *cmd, *sub = NULL;
    int first = 2, err;

    sw_log_set_prog(prog);
    sw_log_parse_level("warn");
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("swarmctl (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
        return 0;
    }
    cmd = argv[1];
    if (!strcmp(cmd, "checkpoint")) { /* the same code as swarmsim checkpoint (ckptcli.h) */
        err = sw_ckptcli_main(argc - 1, argv + 1, prog);
        return err == 2 ? EXIT_USAGE : err;
    }
    if (!strcmp(cmd, "manifest") && argc > 2 && argv[2][0] != '-') {
        sub = argv[2];
        first = 3;
    }
    for (int i = 2; i < argc; i++) /* -o FILE: --out FILE */
        if (!strcmp(argv[i], "-o"))
            argv[i] = (char *)"--out";
    sw_cfg_defaults(tab, SW_ARRAY_SIZE(tab), &o);
    err = sw_cfg_getopt(tab, SW_ARRAY_SIZE(tab), &o, argc, argv, first, prog);
    if (err == -SW_ECANCELED) {
        usage(stdout);
        return 0;
    }
    if (err < 0)
        return EXIT_USAGE;
    if (sw_log_parse_level(o.log_level) < 0) {
        fprintf(stderr, "%s: --log-level: want debug, info, warn or error\n", prog);
        return EXIT_USAGE;
    }
    if (!strcmp(cmd, "revoke"))
        return cmd_revoke(&o, argc, argv, err);
    if (err < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[err]);
        return EXIT_USAGE;
    }
    if (!strcmp(cmd, "status") || !strcmp(cmd, "peers") || (!strcmp(cmd, "manifest") && !sub))
        return cmd_remote(cmd, &o);
    if (!strcmp(cmd, "manifest") && !strcmp(sub, "sign"))
        return cmd_sign(&o);
    if (!strcmp(cmd, "manifest") && !strcmp(sub, "check"))
        return cmd_check(&o);
    if (!strcmp(cmd, "manifest") && !strcmp(sub, "keys")) {
        sw_manifest_keys(stdout);
        return 0;
    }
    if (!strcmp(cmd, "key"))
        return cmd_key(&o);
    if (!strcmp(cmd, "admit"))
        return cmd_admit(&o);
    fprintf(stderr, "%s: unknown command '%s%s%s' (see --help)\n", prog, cmd, sub ? " " : "",
            sub ? sub : "");
    return EXIT_USAGE;
}
