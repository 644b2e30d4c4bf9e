/*
 * metrics.h - a minimal HTTP/1.0 server on the libuv loop that answers
 * "GET /metrics" with Prometheus text exposition (version 0.0.4) filled by
 * a callback, 404 on any other path, 400 on anything that is not a GET.
 * One response per connection; requests above 8 KiB or slower than 5 s are
 * cut.  Threading: the loop thread.
 */
#ifndef SW_METRICS_H
#define SW_METRICS_H

#include "sw.h"

#include <stdarg.h>
#include <uv.h>

/* Write the exposition into buf (len bytes); bytes written or -SW_ERANGE. */
typedef int sw_metrics_fill_cb(void *arg, char *buf, size_t len);

struct sw_metrics;

/* Listen on "HOST:PORT" (IPv4 or IPv6 literal, or "localhost"). */
int sw_metrics_start(struct sw_metrics **out, uv_loop_t *loop, const char *hostport,
                     sw_metrics_fill_cb *fill, void *arg) SW_WARN_UNUSED;
/* Stop listening; frees itself once its handles are closed. */
void sw_metrics_close(struct sw_metrics *m);

struct sw_transport;

/*
 * Append swarm_ratelimit_drops_total{type="..."}: the rate-limit drops of
 * every limited type of the ntr transports (summed per type; types by their
 * swarm-protocol(7) name in lower case, else the number) and the DHT's own
 * per-node limit as type="dht".  0 or -SW_ERANGE when buf is full.
 */
/* Appends printf-style text at buf + *off (*off advanced); -SW_ERANGE when
 * it does not fit (the text exposition of every metric goes through it). */
int sw_metrics_vappend(char *buf, size_t len, size_t *off, const char *fmt, va_list ap)
    SW_WARN_UNUSED;
/* The same, printf-style. */
int sw_metrics_append(char *buf, size_t len, size_t *off, const char *fmt, ...)
    SW_WARN_UNUSED __attribute__((format(printf, 4, 5)));
int sw_metrics_ratelimit(char *buf, size_t len, size_t *off, struct sw_transport *const *trs,
                         size_t ntr, uint64_t dht_drops) SW_WARN_UNUSED;

#endif
