/*
 * dht_codec.h - msgpack encoding of DHT message bodies (net/dht.h has the
 * message table).
 *
 * The encoder writes one msgpack map per message, keys in the order of the
 * table, integers in their shortest form.  The decoder is strict: exactly one
 * map and nothing after it, only the keys of the message's type, each at most
 * once, every required key present, every value of the documented msgpack
 * type and range, endpoints valid, nothing larger than the caps of net/dht.h.
 * Before msgpack-c sees the bytes a bounded pre-scan checks that every
 * array, map, str and bin length fits in the bytes that remain and that
 * nesting stays shallow, so that a few hostile bytes cannot make msgpack-c
 * allocate gigabytes.  Decoding computes each contact's id from its key.
 *
 * Ownership: sw_dht_msg_decode fills a caller-owned struct; what it allocates
 * (nodes, recs, recs[i].val) is freed by sw_dht_msg_release, also after a
 * failed decode.  sw_dht_msg_encode returns a sw_malloc'd buffer.
 * Stateless and thread-safe.
 */
#ifndef SW_DHT_CODEC_H
#define SW_DHT_CODEC_H

#include <msgpack.h>

#include "dht.h"

/* Appends m's body (one map) to pk.  0 or -SW_EINVAL (m not encodable), -SW_ENOMEM. */
SW_WARN_UNUSED int sw_dht_msg_pack(msgpack_packer *pk, const struct sw_dht_msg *m);
/* Encodes m's body into *out (sw_free it), *len bytes.  0 or as above. */
SW_WARN_UNUSED int sw_dht_msg_encode(const struct sw_dht_msg *m, uint8_t **out, size_t *len);

/*
 * Decodes a body of the given envelope type.  0, -SW_EMSG (malformed or
 * invalid), -SW_ETOOBIG (over SW_DHT_BODY_MAX) or -SW_ENOMEM.
 */
SW_WARN_UNUSED int sw_dht_msg_decode(struct sw_dht_msg *m, int type, const void *buf, size_t len);
/* The same from an already unpacked object (the envelope's body field). */
SW_WARN_UNUSED int sw_dht_msg_unpack(struct sw_dht_msg *m, int type, const msgpack_object *o);
void sw_dht_msg_release(struct sw_dht_msg *m);

/* Checks that buf holds exactly one msgpack object within the limits above. */
bool sw_dht_msgpack_sane(const void *buf, size_t len, unsigned max_depth);

#endif
