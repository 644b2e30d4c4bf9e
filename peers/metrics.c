/*
 * metrics.c - Prometheus text exposition over plain HTTP (see metrics.h).
 */
#include "sw.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "proto.h"
#include "transport.h"

#define REQ_MAX 8192
#define BODY_MAX (256 * 1024)

struct sw_metrics {
    uv_loop_t *loop;
    uv_tcp_t server;
    sw_metrics_fill_cb *fill;
    void *arg;
    int open; /* handles not yet closed */
    bool closing;
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wr;
    struct sw_metrics *m;
    char req[REQ_MAX + 1];
    size_t len;
    char *resp;
    bool responded;
    int open;
};

static void
maybe_free_server(struct sw_metrics *m)
{
    if (m->closing && m->open == 0)
        sw_free(m);
}

static void
conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct sw_metrics *m = c->m;

    if (--c->open == 0) {
        sw_free(c->resp);
        sw_free(c);
        m->open--;
        maybe_free_server(m);
    }
}

static void
conn_close(struct conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void
on_written(uv_write_t *w, int status)
{
    (void)status;
    conn_close(w->data);
}

static void
respond(struct conn *c, int code, const char *reason, const char *type, const char *body,
        size_t blen)
{
    uv_buf_t buf;
    size_t cap = blen + 256;

    c->responded = true;
    if (!(c->resp = sw_malloc(cap))) {
        conn_close(c);
        return;
    }
    buf.len = (size_t)snprintf(c->resp, cap,
                               "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                               "Connection: close\r\n\r\n",
                               code, reason, type, blen);
    memcpy(c->resp + buf.len, body, blen);
    buf.len += blen;
    buf.base = c->resp;
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &buf, 1, on_written) < 0)
        conn_close(c);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    buf->base = c->req + c->len;
    buf->len = REQ_MAX - c->len;
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    char *body;
    int n;

    (void)buf;
    if (c->responded)
        return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    c->req[c->len] = '\0';
    if (!strstr(c->req, "\r\n\r\n") && !strstr(c->req, "\n\n")) {
        if (c->len >= REQ_MAX)
            respond(c, 400, "Bad Request", "text/plain", "request too long\n", 17);
        return;
    }
    uv_read_stop(s);
    if (strncmp(c->req, "GET ", 4) != 0) {
        respond(c, 400, "Bad Request", "text/plain", "only GET\n", 9);
        return;
    }
    if (strncmp(c->req + 4, "/metrics ", 9) != 0 && strncmp(c->req + 4, "/metrics\r", 9) != 0 &&
        strncmp(c->req + 4, "/metrics?", 9) != 0) {
        respond(c, 404, "Not Found", "text/plain", "try /metrics\n", 13);
        return;
    }
    if (!(body = sw_malloc(BODY_MAX))) {
        conn_close(c);
        return;
    }
    n = c->m->fill(c->m->arg, body, BODY_MAX);
    if (n < 0)
        respond(c, 500, "Internal Server Error", "text/plain", "too many metrics\n", 17);
    else
        respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, (size_t)n);
    sw_free(body);
}

static void
on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void
on_connection(uv_stream_t *server, int status)
{
    struct sw_metrics *m = server->data;
    struct conn *c;

    if (status < 0 || m->closing || !(c = sw_calloc(1, sizeof(*c))))
        return;
    c->m = m;
    uv_tcp_init(m->loop, &c->tcp);
    uv_timer_init(m->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open = 2;
    m->open++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, 5000, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void
server_closed(uv_handle_t *h)
{
    struct sw_metrics *m = h->data;
    m->open--;
    maybe_free_server(m);
}

int
sw_metrics_start(struct sw_metrics **out, uv_loop_t *loop, const char *hostport,
                 sw_metrics_fill_cb *fill, void *arg)
{
    struct sw_metrics *m;
    struct sockaddr_storage addr;
    char host[256];
    const char *colon = strrchr(hostport, ':');
    int port, err;

    if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host)) {
        sw_log(SW_LOG_ERROR, "--metrics: want HOST:PORT, got '%s'", hostport);
        return -SW_EINVAL;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - hostport), hostport);
    port = atoi(colon + 1);
    if (!strcmp(host, "localhost"))
        snprintf(host, sizeof(host), "127.0.0.1");
    if (host[0] == '[') { /* [v6]:port */
        size_t l = strlen(host);
        memmove(host, host + 1, l);
        if (l >= 2 && host[l - 2] == ']')
            host[l - 2] = '\0';
    }
    if (port < 0 || port > 65535 ||
        (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
         uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0)) {
        sw_log(SW_LOG_ERROR, "--metrics: bad address '%s'", hostport);
        return -SW_EINVAL;
    }
    if (!(m = sw_calloc(1, sizeof(*m))))
        return -SW_ENOMEM;
    m->loop = loop;
    m->fill = fill;
    m->arg = arg;
    uv_tcp_init(loop, &m->server);
    m->server.data = m;
    m->open = 1;
    if ((err = uv_tcp_bind(&m->server, (struct sockaddr *)&addr, 0)) < 0 ||
        (err = uv_listen((uv_stream_t *)&m->server, 16, on_connection)) < 0) {
        sw_log(SW_LOG_ERROR, "--metrics: cannot listen on '%s': %s", hostport, uv_strerror(err));
        m->closing = true;
        uv_close((uv_handle_t *)&m->server, server_closed);
        return -SW_EIO;
    }
    {
        /* the port the kernel gave for port 0 */
        struct sockaddr_storage got;
        int len = sizeof(got);
        char f[256];

        if (port == 0 && uv_tcp_getsockname(&m->server, (struct sockaddr *)&got, &len) == 0)
            port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                                  : ((struct sockaddr_in *)&got)->sin_port);
        snprintf(f, sizeof(f), "\"url\":\"http://%.*s:%d/metrics\",\"port\":%d",
                 (int)(colon - hostport), hostport, port, port);
        sw_log_event(SW_LOG_INFO, "metrics", f, "metrics on http://%.*s:%d/metrics",
                     (int)(colon - hostport), hostport, port);
    }
    *out = m;
    return 0;
}

void
sw_metrics_close(struct sw_metrics *m)
{
    m->closing = true;
    uv_close((uv_handle_t *)&m->server, server_closed);
}

/* ---- rate-limit drops ---- */


int
sw_metrics_vappend(char *buf, size_t len, size_t *off, const char *fmt, va_list ap)
{
    int k;

    if (*off >= len)
        return -SW_ERANGE;
    k = vsnprintf(buf + *off, len - *off, fmt, ap);
    if (k < 0 || (size_t)k >= len - *off)
        return -SW_ERANGE;
    *off += (size_t)k;
    return 0;
}

int
sw_metrics_append(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
    va_list ap;
    int err;

    va_start(ap, fmt);
    err = sw_metrics_vappend(buf, len, off, fmt, ap);
    va_end(ap);
    return err;
}

static const char *
type_name(uint32_t type, char *tmp, size_t n)
{
    switch (type) {
    case SW_MSG_PING: return "ping";
    case SW_MSG_MANIFEST_GET: return "manifest_get";
    case SW_MSG_STATE_GET: return "state_get";
    case SW_MSG_PREPARE: return "prepare";
    case SW_MSG_CKPT_INFO_GET: return "ckpt_info_get";
    case SW_MSG_CKPT_GET: return "ckpt_get";
    case SW_MSG_REACH_ASK: return "reach_ask";
    case SW_MSG_REACH_PROBE: return "reach_probe";
    default: snprintf(tmp, n, "%u", (unsigned)type); return tmp;
    }
}

int
sw_metrics_ratelimit(char *buf, size_t len, size_t *off, struct sw_transport *const *trs,
                     size_t ntr, uint64_t dht_drops)
{
    uint32_t types[64], all[64];
    uint64_t drops[64];
    size_t n = 0;
    char tmp[16];
    int err;

    for (size_t i = 0; i < ntr; i++) {
        size_t k;

        if (!trs[i])
            continue;
        k = SW_MIN(sw_transport_limited_types(trs[i], types, SW_ARRAY_SIZE(types)),
                   SW_ARRAY_SIZE(types));
        for (size_t j = 0; j < k; j++) {
            size_t x = 0;

            while (x < n && all[x] != types[j])
                x++;
            if (x == n) {
                if (n == SW_ARRAY_SIZE(all))
                    continue;
                all[n] = types[j];
                drops[n++] = 0;
            }
            drops[x] += sw_transport_ratelimited(trs[i], types[j]);
        }
    }
    if ((err = sw_metrics_append(buf, len, off,
                                 "# HELP swarm_ratelimit_drops_total Requests dropped by a "
                                 "rate limit, by message type.\n# TYPE swarm_ratelimit_drops_total "
                                 "counter\n")) < 0)
        return err;
    for (size_t x = 0; x < n; x++)
        if ((err = sw_metrics_append(buf, len, off,
                                     "swarm_ratelimit_drops_total{type=\"%s\"} %llu\n",
                                     type_name(all[x], tmp, sizeof(tmp)),
                                     (unsigned long long)drops[x])) < 0)
            return err;
    return sw_metrics_append(buf, len, off, "swarm_ratelimit_drops_total{type=\"dht\"} %llu\n",
                             (unsigned long long)dht_drops);
}
