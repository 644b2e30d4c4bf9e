/*
 * dhtnode.h - runs a DHT core (net/dht.h) over the transport (net/transport.h)
 * on a libuv loop.
 *
 * The glue is thin: every request the core sends becomes a transport request
 * (sw_transport_request, no retries: the core has its own timeouts and
 * treats a silent node as failed) to the contact's endpoint, and the verified
 * response is fed back to the core with the envelope's sender key; requests
 * arriving on the ROUTER (types SW_DHT_PING, FIND_NODE, FIND_VALUE, STORE)
 * are fed to the core, whose reply goes back on the same route.  Bodies that
 * fail to decode are counted in the wire's SW_WIRE_DROP_MALFORMED as well as
 * in the core's stats.  One uv_timer follows the core's next wake-up; time is
 * sw_now_ms().
 *
 * Ownership and threading: everything runs on the loop thread.  The node
 * borrows the loop and the transport (it registers the four request handlers
 * on it) and owns its core.  sw_dhtnode_close unregisters the handlers and
 * frees the node once its timer is closed and its transport requests have
 * finished (they time out or are cancelled by sw_transport_close): close the
 * node before closing the transport, and run the loop until both are done.
 * Lookup callbacks still pending are called with -SW_ECANCELED when the
 * core is freed.
 */
#ifndef SW_DHTNODE_H
#define SW_DHTNODE_H

#include "sw.h"

#include <uv.h>

#include "dht.h"
#include "transport.h"

struct sw_dhtnode;

/*
 * A node serving the DHT at ep (the endpoint the transport is bound to, as
 * peers should dial it; NULL or "" for a node that only asks).  params NULL:
 * defaults.  0, -SW_EINVAL, -SW_ENOMEM, or the transport's error.
 */
SW_WARN_UNUSED int sw_dhtnode_new(struct sw_dhtnode **out, uv_loop_t *loop,
                                  struct sw_transport *t, const char *ep,
                                  const struct sw_dht_params *params);
void sw_dhtnode_close(struct sw_dhtnode *n);

/* The core, for introspection; after calling into it directly, call sw_dhtnode_kick. */
struct sw_dht *sw_dhtnode_dht(struct sw_dhtnode *n);
void sw_dhtnode_kick(struct sw_dhtnode *n);

/* The core's calls with the current time; see net/dht.h for their contracts. */
SW_WARN_UNUSED int sw_dhtnode_bootstrap(struct sw_dhtnode *n, const char *const *eps, size_t count,
                                        sw_dht_nodes_cb *cb, void *arg);
SW_WARN_UNUSED int sw_dhtnode_find_node(struct sw_dhtnode *n,
                                        const uint8_t target[SW_DHT_ID_BYTES],
                                        sw_dht_nodes_cb *cb, void *arg);
SW_WARN_UNUSED int sw_dhtnode_get(struct sw_dhtnode *n, const uint8_t key[SW_DHT_ID_BYTES],
                                  sw_dht_get_cb *cb, void *arg);
SW_WARN_UNUSED int sw_dhtnode_put(struct sw_dhtnode *n, const struct sw_dht_record *r,
                                  sw_dht_put_cb *cb, void *arg);

#endif
