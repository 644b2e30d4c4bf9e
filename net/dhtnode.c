/*
 * dhtnode.c - the DHT core on the transport; see dhtnode.h.
 */
#include "sw.h"

#include <string.h>

#include "dht_codec.h"
#include "dhtnode.h"

static const uint32_t request_types[] = {SW_DHT_PING, SW_DHT_FIND_NODE, SW_DHT_FIND_VALUE,
                                         SW_DHT_STORE};

struct sw_dhtnode {
    uv_loop_t *loop;
    struct sw_transport *t;
    struct sw_dht *d;
    uv_timer_t timer;
    uint64_t timeout_ms;                        /* transport timeout per request */
    const struct sw_transport_route *route;     /* of the request being handled */
    size_t inflight;                            /* transport requests not finished */
    bool closing, timer_closed;
};

static void
maybe_free(struct sw_dhtnode *n)
{
    if (!n->closing || !n->timer_closed || n->inflight > 0)
        return;
    sw_dht_free(n->d);
    sw_free(n);
}

static void
on_timer(uv_timer_t *h)
{
    struct sw_dhtnode *n = h->data;

    sw_dht_tick(n->d, sw_now_ms());
    sw_dhtnode_kick(n);
}

void
sw_dhtnode_kick(struct sw_dhtnode *n)
{
    uint64_t wake, now;

    if (n->closing)
        return;
    wake = sw_dht_next_wake(n->d);
    if (wake == UINT64_MAX) {
        uv_timer_stop(&n->timer);
        return;
    }
    now = sw_now_ms();
    uv_timer_start(&n->timer, on_timer, wake > now ? wake - now : 0, 0);
}

static void
on_response(struct sw_transport *t, int status, const struct sw_transport_msg *m, void *arg)
{
    struct sw_dhtnode *n = arg;

    n->inflight--;
    if (n->closing) {
        maybe_free(n);
        return;
    }
    if (status < 0)
        return; /* the core times the request out itself */
    if (sw_dht_input_body(n->d, m->hdr.sender, (int)m->hdr.type, m->hdr.body, m->hdr.body_len,
                          sw_now_ms()) == -SW_EMSG)
        (void)sw_wire_count_drop(sw_transport_wire(t), SW_WIRE_DROP_MALFORMED);
    sw_dhtnode_kick(n);
}

static void
on_request(struct sw_transport *t, const struct sw_transport_msg *m, void *arg)
{
    struct sw_dhtnode *n = arg;

    if (n->closing)
        return;
    n->route = m->route.rid ? &m->route : NULL;
    if (sw_dht_input_body(n->d, m->hdr.sender, (int)m->hdr.type, m->hdr.body, m->hdr.body_len,
                          sw_now_ms()) == -SW_EMSG)
        (void)sw_wire_count_drop(sw_transport_wire(t), SW_WIRE_DROP_MALFORMED);
    n->route = NULL;
    sw_dhtnode_kick(n);
}

static void
on_send(void *arg, const struct sw_dht_contact *to, const struct sw_dht_msg *m)
{
    struct sw_dhtnode *n = arg;
    uint8_t *body;
    size_t len;
    int err;

    if (sw_dht_msg_encode(m, &body, &len) < 0)
        return;
    if (m->type & 1) {
        err = n->route ? sw_transport_reply(n->t, n->route, (uint32_t)m->type, body, len, NULL)
                       : -SW_EINVAL;
    } else if (to->ep[0]) {
        err = sw_transport_request(n->t, to->ep, (uint32_t)m->type, body, len, NULL,
                                   n->timeout_ms, 0, on_response, n);
        if (err == 0)
            n->inflight++;
    } else {
        err = -SW_EINVAL;
    }
    if (err < 0)
        SW_LOG_RATELIMITED(SW_LOG_INFO, 10000, "dht: cannot send type %d to '%s': %s", m->type,
                           to->ep, sw_strerror(err));
    sw_free(body);
}

int
sw_dhtnode_new(struct sw_dhtnode **out, uv_loop_t *loop, struct sw_transport *t, const char *ep,
               const struct sw_dht_params *params)
{
    struct sw_dht_params p;
    struct sw_dhtnode *n;
    size_t i;
    int err;

    *out = NULL;
    if (params)
        p = *params;
    else
        sw_dht_params_default(&p);
    n = sw_calloc(1, sizeof(*n));
    if (!n)
        return -SW_ENOMEM;
    n->loop = loop;
    n->t = t;
    n->timeout_ms = p.rpc_timeout_ms + 250;
    err = sw_dht_new(&n->d, sw_transport_wire(t)->id->pk, ep, &p, on_send, n);
    if (err < 0)
        goto out_free;
    for (i = 0; i < SW_ARRAY_SIZE(request_types); i++)
        if ((err = sw_transport_on(t, request_types[i], on_request, n)) < 0)
            goto out_unregister;
    uv_timer_init(loop, &n->timer);
    n->timer.data = n;
    *out = n;
    return 0;

out_unregister:
    while (i-- > 0)
        if (sw_transport_on(t, request_types[i], NULL, NULL) < 0)
            continue; /* removing a handler cannot fail */
    sw_dht_free(n->d);
out_free:
    sw_free(n);
    return err;
}

static void
on_timer_closed(uv_handle_t *h)
{
    struct sw_dhtnode *n = h->data;

    n->timer_closed = true;
    maybe_free(n);
}

void
sw_dhtnode_close(struct sw_dhtnode *n)
{
    if (!n || n->closing)
        return;
    n->closing = true;
    for (size_t i = 0; i < SW_ARRAY_SIZE(request_types); i++)
        if (sw_transport_on(n->t, request_types[i], NULL, NULL) < 0)
            continue; /* removing a handler cannot fail */
    uv_timer_stop(&n->timer);
    uv_close((uv_handle_t *)&n->timer, on_timer_closed);
}

struct sw_dht *
sw_dhtnode_dht(struct sw_dhtnode *n)
{
    return n->d;
}

int
sw_dhtnode_bootstrap(struct sw_dhtnode *n, const char *const *eps, size_t count,
                     sw_dht_nodes_cb *cb, void *arg)
{
    int err = sw_dht_bootstrap(n->d, eps, count, sw_now_ms(), cb, arg);

    sw_dhtnode_kick(n);
    return err;
}

int
sw_dhtnode_find_node(struct sw_dhtnode *n, const uint8_t target[SW_DHT_ID_BYTES],
                     sw_dht_nodes_cb *cb, void *arg)
{
    int err = sw_dht_find_node(n->d, target, sw_now_ms(), cb, arg);

    sw_dhtnode_kick(n);
    return err;
}

int
sw_dhtnode_get(struct sw_dhtnode *n, const uint8_t key[SW_DHT_ID_BYTES], sw_dht_get_cb *cb,
               void *arg)
{
    int err = sw_dht_get(n->d, key, sw_now_ms(), cb, arg);

    sw_dhtnode_kick(n);
    return err;
}

int
sw_dhtnode_put(struct sw_dhtnode *n, const struct sw_dht_record *r, sw_dht_put_cb *cb, void *arg)
{
    int err = sw_dht_put(n->d, r, sw_now_ms(), cb, arg);

    sw_dhtnode_kick(n);
    return err;
}
