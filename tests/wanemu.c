/* wanemu - a wide-area network for tests: hosts in network namespaces
 * joined by a user-space router that delays, rate-limits, queues and drops
 * their packets (issue 13, item 2).
 *
 *   wanemu [--stats FILE] [--seed N] [--mtu N] HOST...
 *   HOST = NETNS,ADDR[,delay=MS][,jitter=MS][,rate=MBIT][,loss=PCT][,queue=MS]
 *
 * For each HOST, wanemu makes a TUN device "wan0" inside the existing
 * network namespace NETNS (/run/netns/NETNS, as `ip netns add` makes it),
 * gives it ADDR/24 and brings it up; the kernel then routes the whole /24
 * through that device.  Every HOST must be in the same /24.  Each IPv4
 * packet a host sends is read from its device and goes through the
 * sender's access link, the wide area and the receiver's access link:
 *
 *   1. uplink: serialised at the sender's rate (Mbit/s, 0: unlimited)
 *      behind a drop-tail queue that holds at most `queue` ms of it (at
 *      that rate; default 100 ms);
 *   2. loss: dropped with the sender's probability, then the receiver's
 *      (per cent; independent draws from one generator seeded by --seed);
 *   3. propagation: the sender's one-way delay plus the receiver's (ms),
 *      plus a uniform draw in [0, sender's jitter + receiver's jitter];
 *      packets between two hosts are never reordered by jitter (a packet
 *      never arrives before the one sent before it, as on most real
 *      paths; netem's jitter reorders);
 *   4. downlink: serialised at the receiver's rate behind its own
 *      drop-tail queue of `queue` ms;
 * and is then written to the receiver's device.  So two hosts with
 * delay=25 see a 100 ms round trip, and a host with rate=20 neither sends
 * nor receives faster than 20 Mbit/s (IP bytes: headers count).
 *
 * On SIGUSR1 and on exit (SIGTERM, SIGINT) it writes per-host counters to
 * the --stats FILE (a whole new file each time, renamed into place), one
 * line a host:
 *   ADDR tx_pkts=N tx_bytes=N rx_pkts=N rx_bytes=N drop_queue=N drop_loss=N
 * (tx: read from the host's device; rx: written to it; drops counted at the
 * sender for the uplink queue and loss, at the receiver for its downlink
 * queue), plus "other=N" packets that were not IPv4 to a host of the net.
 * When every device is up it prints "ready" on standard output.
 *
 * Why a router of our own and not tc: this kernel has no sch_netem, and a
 * user-space router over TUN devices really delays packets, in any kernel
 * that has TUN.  Single-threaded (poll and a timer heap); a delivery is at
 * most about a millisecond late on a quiet machine.  Needs CAP_NET_ADMIN
 * and CAP_SYS_ADMIN (setns).  The devices go when the process exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HOSTS 64
#define PKT_MAX 65536
/* at most this many bytes in flight in the router (unlimited links have no queue) */
#define INFLIGHT_MAX (256u << 20)

struct host {
    char ns[128];
    uint32_t addr; /* host order */
    double delay_ms, jitter_ms, rate_mbit, loss_pct, queue_ms;
    int fd;
    uint64_t up_busy, down_busy; /* ns: when the link is free again */
    uint64_t tx_pkts, tx_bytes, rx_pkts, rx_bytes, drop_queue, drop_loss;
};

/* a packet in flight: due at t, then entering the downlink (stage 0) or
 * delivered (stage 1) */
struct ev {
    uint64_t t, seq;
    int stage, src, dst;
    uint32_t len;
    uint8_t *buf;
};

static struct host hosts[MAX_HOSTS];
static int n_hosts;
static int by_octet[256]; /* last octet -> host index + 1 */
static uint32_t net24;
static uint64_t last_arrive[MAX_HOSTS][MAX_HOSTS];
static struct ev *heap;
static size_t heap_n, heap_cap;
static uint64_t ev_seq, inflight, other;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static const char *stats_path;
static volatile sig_atomic_t want_stats, want_exit;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: a uniform draw in [0, 1) */
static double uniform(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

static void die(const char *what)
{
    fprintf(stderr, "wanemu: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int ev_before(const struct ev *a, const struct ev *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void heap_push(struct ev e)
{
    if (heap_n == heap_cap) {
        heap_cap = heap_cap ? 2 * heap_cap : 1024;
        heap = realloc(heap, heap_cap * sizeof *heap);
        if (!heap)
            die("realloc");
    }
    size_t i = heap_n++;
    while (i > 0 && ev_before(&e, &heap[(i - 1) / 2])) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = e;
}

static struct ev heap_pop(void)
{
    struct ev top = heap[0], last = heap[--heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= heap_n)
            break;
        if (c + 1 < heap_n && ev_before(&heap[c + 1], &heap[c]))
            c++;
        if (!ev_before(&heap[c], &last))
            break;
        heap[i] = heap[c];
        i = c;
    }
    if (heap_n > 0)
        heap[i] = last;
    return top;
}

/* serialisation of LEN bytes at RATE Mbit/s, in ns (0: unlimited) */
static uint64_t ser_ns(uint32_t len, double rate)
{
    return rate > 0 ? (uint64_t)((double)len * 8000.0 / rate) : 0;
}

/* a link's drop-tail queue: the packet waits behind *busy; it is dropped
 * when the wait would exceed queue_ms; else *busy moves past it and the
 * time it leaves the link is returned (0: dropped) */
static uint64_t link_pass(uint64_t *busy, uint64_t now, uint32_t len, double rate, double queue_ms)
{
    if (rate <= 0)
        return now;
    uint64_t start = *busy > now ? *busy : now;
    if (start - now > (uint64_t)(queue_ms * 1e6))
        return 0;
    *busy = start + ser_ns(len, rate);
    return *busy;
}

static void free_ev(struct ev *e)
{
    inflight -= e->len;
    free(e->buf);
}

/* a packet read from host S's device */
static void on_packet(int s, uint8_t *pkt, uint32_t len, uint64_t now)
{
    struct host *src = &hosts[s];
    if (len < 20 || (pkt[0] >> 4) != 4) {
        other++;
        return;
    }
    uint32_t dst_addr = (uint32_t)pkt[16] << 24 | (uint32_t)pkt[17] << 16 |
                        (uint32_t)pkt[18] << 8 | pkt[19];
    int d = (dst_addr & 0xffffff00u) == net24 ? by_octet[dst_addr & 0xff] - 1 : -1;
    if (d < 0 || d == s) {
        other++;
        return;
    }
    src->tx_pkts++;
    src->tx_bytes += len;
    if (inflight + len > INFLIGHT_MAX) {
        src->drop_queue++;
        return;
    }
    uint64_t up = link_pass(&src->up_busy, now, len, src->rate_mbit, src->queue_ms);
    if (!up) {
        src->drop_queue++;
        return;
    }
    struct host *dst = &hosts[d];
    if ((src->loss_pct > 0 && uniform() * 100.0 < src->loss_pct) ||
        (dst->loss_pct > 0 && uniform() * 100.0 < dst->loss_pct)) {
        src->drop_loss++;
        return;
    }
    double j = src->jitter_ms + dst->jitter_ms;
    uint64_t arrive = up + (uint64_t)((src->delay_ms + dst->delay_ms + (j > 0 ? uniform() * j : 0)) * 1e6);
    if (arrive < last_arrive[s][d])
        arrive = last_arrive[s][d];
    last_arrive[s][d] = arrive;
    struct ev e = { arrive, ev_seq++, 0, s, d, len, malloc(len) };
    if (!e.buf)
        die("malloc");
    memcpy(e.buf, pkt, len);
    inflight += len;
    heap_push(e);
}

/* every event due by NOW */
static void run_due(uint64_t now)
{
    while (heap_n > 0 && heap[0].t <= now) {
        struct ev e = heap_pop();
        struct host *dst = &hosts[e.dst];
        if (e.stage == 0) {
            uint64_t t = link_pass(&dst->down_busy, e.t, e.len, dst->rate_mbit, dst->queue_ms);
            if (!t) {
                dst->drop_queue++;
                free_ev(&e);
                continue;
            }
            e.t = t;
            e.stage = 1;
            e.seq = ev_seq++;
            heap_push(e);
            continue;
        }
        /* a full device queue loses the packet, as a full NIC ring would */
        if (write(dst->fd, e.buf, e.len) == (ssize_t)e.len) {
            dst->rx_pkts++;
            dst->rx_bytes += e.len;
        } else {
            dst->drop_queue++;
        }
        free_ev(&e);
    }
}

static void write_stats(void)
{
    if (!stats_path)
        return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", stats_path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    for (int i = 0; i < n_hosts; i++) {
        struct host *h = &hosts[i];
        struct in_addr a = { htonl(h->addr) };
        fprintf(f,
                "%s tx_pkts=%llu tx_bytes=%llu rx_pkts=%llu rx_bytes=%llu drop_queue=%llu "
                "drop_loss=%llu\n",
                inet_ntoa(a), (unsigned long long)h->tx_pkts, (unsigned long long)h->tx_bytes,
                (unsigned long long)h->rx_pkts, (unsigned long long)h->rx_bytes,
                (unsigned long long)h->drop_queue, (unsigned long long)h->drop_loss);
    }
    fprintf(f, "other=%llu\n", (unsigned long long)other);
    fflush(f);
    fsync(fileno(f));
    fclose(f);
    rename(tmp, stats_path);
}

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        want_stats = 1;
    else
        want_exit = 1;
}

static void
usage(FILE *f, int status)
{
    fprintf(f, "usage: wanemu [--stats FILE] [--seed N] [--mtu N] "
               "NETNS,ADDR[,delay=MS][,jitter=MS][,rate=MBIT][,loss=PCT][,queue=MS]...\n"
               "Joins the existing network namespaces NETNS (ip netns add) by a router that\n"
               "delays (ms one way), rate-limits (Mbit/s, 0: unlimited), queues (ms, default\n"
               "100) and drops (per cent) each host's packets; every ADDR in one /24.\n"
               "SIGUSR1 writes per-host counters to FILE.  See the header of tests/wanemu.c.\n");
    exit(status);
}

/* a HOST argument wanemu cannot use: named with why, then the usage */
static void
bad_host(const char *arg, const char *why)
{
    fprintf(stderr, "wanemu: host '%s': %s\n", arg, why);
    usage(stderr, 2);
}

/* parse one HOST argument into hosts[n_hosts] */
static void parse_host(char *arg)
{
    char copy[512];

    snprintf(copy, sizeof copy, "%s", arg);
    if (n_hosts == MAX_HOSTS) {
        fprintf(stderr, "wanemu: more than %d hosts\n", MAX_HOSTS);
        exit(2);
    }
    struct host *h = &hosts[n_hosts];
    memset(h, 0, sizeof *h);
    h->queue_ms = 100;
    char *save = NULL, *tok = strtok_r(arg, ",", &save);
    if (!tok || strlen(tok) >= sizeof h->ns)
        bad_host(copy, "no namespace name, or one too long");
    strcpy(h->ns, tok);
    tok = strtok_r(NULL, ",", &save);
    struct in_addr a;
    if (!tok || inet_pton(AF_INET, tok, &a) != 1)
        bad_host(copy, "want NETNS,ADDR with ADDR an IPv4 address");
    h->addr = ntohl(a.s_addr);
    while ((tok = strtok_r(NULL, ",", &save))) {
        char *eq = strchr(tok, '='), *end;
        if (!eq)
            bad_host(copy, "a link option is KEY=VALUE");
        *eq = 0;
        double v = strtod(eq + 1, &end);
        if (*end || v < 0)
            bad_host(copy, "a link option's value is a number, 0 or more");
        if (!strcmp(tok, "delay"))
            h->delay_ms = v;
        else if (!strcmp(tok, "jitter"))
            h->jitter_ms = v;
        else if (!strcmp(tok, "rate"))
            h->rate_mbit = v;
        else if (!strcmp(tok, "loss") && v <= 100)
            h->loss_pct = v;
        else if (!strcmp(tok, "queue"))
            h->queue_ms = v;
        else
            bad_host(copy, "link options are delay, jitter, rate, loss (at most 100) and queue");
    }
    if (n_hosts == 0)
        net24 = h->addr & 0xffffff00u;
    uint32_t o = h->addr & 0xff;
    if ((h->addr & 0xffffff00u) != net24 || o == 0 || o == 255 || by_octet[o]) {
        fprintf(stderr, "wanemu: %s: every host needs an address of its own in one /24\n", h->ns);
        exit(2);
    }
    by_octet[o] = n_hosts + 1;
    n_hosts++;
}

static void ifreq_addr(struct ifreq *ifr, uint32_t addr)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(addr);
    memcpy(&ifr->ifr_addr, &sin, sizeof sin);
}

/* the device of host H, made inside its namespace */
static void make_device(struct host *h, int home, int mtu)
{
    char path[256];
    snprintf(path, sizeof path, "/run/netns/%.127s", h->ns);
    int nsfd = open(path, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0)
        die(path);
    if (setns(nsfd, CLONE_NEWNET) < 0)
        die("setns");
    close(nsfd);
    h->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (h->fd < 0)
        die("/dev/net/tun");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    strcpy(ifr.ifr_name, "wan0");
    if (ioctl(h->fd, TUNSETIFF, &ifr) < 0)
        die("TUNSETIFF");
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        die("socket");
    ifr.ifr_mtu = mtu;
    if (ioctl(s, SIOCSIFMTU, &ifr) < 0)
        die("SIOCSIFMTU");
    /* a deep kernel queue in front of this router: a burst that comes
     * while it is not scheduled (a loaded machine) waits there instead of
     * being dropped uncounted (the default, 500 or 1000 packets, dropped
     * the tail of t0400's burst of 600); the host's own queue (q_ms) is
     * the one that drops */
    ifr.ifr_qlen = 10000;
    if (ioctl(s, SIOCSIFTXQLEN, &ifr) < 0)
        die("SIOCSIFTXQLEN");
    ifreq_addr(&ifr, h->addr);
    if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
        die("SIOCSIFADDR");
    ifreq_addr(&ifr, 0xffffff00u);
    if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0)
        die("SIOCSIFNETMASK");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        die("SIOCGIFFLAGS");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        die("SIOCSIFFLAGS");
    close(s);
    if (setns(home, CLONE_NEWNET) < 0)
        die("setns back");
}

int main(int argc, char **argv)
{
    int mtu = 1500, i;
    for (i = 1; i < argc && argv[i][0] == '-'; i += 2) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            usage(stdout, 0);
        if (i + 1 >= argc)
            usage(stderr, 2);
        if (!strcmp(argv[i], "--stats"))
            stats_path = argv[i + 1];
        else if (!strcmp(argv[i], "--seed"))
            rng_state ^= strtoull(argv[i + 1], NULL, 10) * 0xbf58476d1ce4e5b9ull;
        else if (!strcmp(argv[i], "--mtu"))
            mtu = atoi(argv[i + 1]);
        else
            usage(stderr, 2);
    }
    if (i >= argc || mtu < 576 || mtu > PKT_MAX)
        usage(stderr, 2);
    if (!rng_state)
        rng_state = 1;
    for (; i < argc; i++)
        parse_host(argv[i]);

    int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0)
        die("/proc/self/ns/net");
    for (i = 0; i < n_hosts; i++)
        make_device(&hosts[i], home, mtu);
    close(home);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    printf("ready\n");
    fflush(stdout);

    static uint8_t buf[PKT_MAX];
    struct pollfd pfd[MAX_HOSTS];
    for (i = 0; i < n_hosts; i++)
        pfd[i] = (struct pollfd){ .fd = hosts[i].fd, .events = POLLIN };
    while (!want_exit) {
        if (want_stats) {
            want_stats = 0;
            write_stats();
        }
        uint64_t now = now_ns();
        run_due(now);
        struct timespec ts = { 1, 0 }, *tsp = &ts;
        if (heap_n > 0) {
            uint64_t wait = heap[0].t > now ? heap[0].t - now : 0;
            ts.tv_sec = (time_t)(wait / 1000000000ull);
            ts.tv_nsec = (long)(wait % 1000000000ull);
        }
        int r = ppoll(pfd, (nfds_t)n_hosts, tsp, NULL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("ppoll");
        }
        if (r == 0)
            continue;
        now = now_ns();
        for (i = 0; i < n_hosts; i++) {
            if (!(pfd[i].revents & POLLIN))
                continue;
            /* a bounded batch per device, so one busy host cannot starve the rest */
            for (int k = 0; k < 64; k++) {
                ssize_t n = read(hosts[i].fd, buf, sizeof buf);
                if (n <= 0)
                    break;
                on_packet(i, buf, (uint32_t)n, now);
            }
        }
    }
    write_stats();
    return 0;
}
