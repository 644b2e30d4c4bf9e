/*
 * proto.c - msgpack body helpers for the peers/ messages (see proto.h).
 */
#include "sw.h"

#include <string.h>

#include "identity.h"
#include "proto.h"

const uint8_t sw_proto_lobby_run[32];

void
sw_body_init(struct sw_body *b)
{
    sw_wire_buf_init(&b->b, b->data, sizeof(b->data));
    sw_wire_buf_packer(&b->pk, &b->b);
}

bool
sw_proto_open(const void *body, size_t len, msgpack_unpacked *u, const char *const *keys)
{
    msgpack_unpacked_init(u);
    if (sw_wire_unpack(body, len, u) < 0 || !sw_proto_only(&u->data, keys)) {
        msgpack_unpacked_destroy(u);
        return false;
    }
    return true;
}

int
sw_proto_get_err(const msgpack_object *map, int64_t *err)
{
    const msgpack_object *e = sw_proto_get(map, "err");

    if (!e || (e->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
               e->type != MSGPACK_OBJECT_NEGATIVE_INTEGER))
        return -SW_EMSG;
    *err = e->via.i64;
    return 0;
}

const msgpack_object *
sw_proto_get(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (sw_wire_key_is(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

bool
sw_proto_only(const msgpack_object *map, const char *const *keys)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return false;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        bool known = false;
        for (const char *const *kk = keys; *kk; kk++)
            if (sw_wire_key_is(k, *kk))
                known = true;
        if (!known)
            return false;
        for (uint32_t j = 0; j < i; j++) {
            const msgpack_object *o = &map->via.map.ptr[j].key;
            if (o->type == MSGPACK_OBJECT_STR && k->type == MSGPACK_OBJECT_STR &&
                o->via.str.size == k->via.str.size &&
                !memcmp(o->via.str.ptr, k->via.str.ptr, k->via.str.size))
                return false;
        }
    }
    return true;
}

bool
sw_proto_is_uint(const msgpack_object *o)
{
    return o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
}

int
sw_proto_get_u64(const msgpack_object *map, const char *key, uint64_t *v)
{
    const msgpack_object *o = sw_proto_get(map, key);

    if (!sw_proto_is_uint(o))
        return -SW_EMSG;
    *v = o->via.u64;
    return 0;
}

int
sw_proto_get_f64(const msgpack_object *map, const char *key, double *v)
{
    const msgpack_object *o = sw_proto_get(map, key);

    if (!o)
        return -SW_EMSG;
    if (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32)
        *v = o->via.f64;
    else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *v = (double)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *v = (double)o->via.i64;
    else
        return -SW_EMSG;
    return 0;
}

int
sw_proto_get_bool(const msgpack_object *map, const char *key, bool *v)
{
    const msgpack_object *o = sw_proto_get(map, key);

    if (!o || o->type != MSGPACK_OBJECT_BOOLEAN)
        return -SW_EMSG;
    *v = o->via.boolean;
    return 0;
}

int
sw_proto_get_bin(const msgpack_object *map, const char *key, const uint8_t **p, size_t *len)
{
    const msgpack_object *o = sw_proto_get(map, key);

    if (!o || o->type != MSGPACK_OBJECT_BIN)
        return -SW_EMSG;
    if (*len && o->via.bin.size != *len)
        return -SW_EMSG;
    *p = (const uint8_t *)o->via.bin.ptr;
    *len = o->via.bin.size;
    return 0;
}

int
sw_proto_str(const msgpack_object *o, char *buf, size_t cap)
{
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap)
        return -SW_EMSG;
    for (uint32_t i = 0; i < o->via.str.size; i++)
        if (o->via.str.ptr[i] <= ' ' || o->via.str.ptr[i] > '~')
            return -SW_EMSG;
    memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = '\0';
    return 0;
}

int
sw_proto_get_str(const msgpack_object *map, const char *key, char *buf, size_t cap)
{
    return sw_proto_str(sw_proto_get(map, key), buf, cap);
}

void
sw_proto_pack_key(msgpack_packer *pk, const char *k)
{
    size_t n = strlen(k);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, k, n);
}

void
sw_proto_pack_str(msgpack_packer *pk, const char *s)
{
    sw_proto_pack_key(pk, s);
}

void
sw_proto_pack_bin(msgpack_packer *pk, const void *p, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, p, n);
}

char *
sw_proto_who(char out[13], const uint8_t *pk)
{
    char full[65];

    sw_identity_hex(full, pk, 32);
    memcpy(out, full, 12);
    out[12] = '\0';
    return out;
}

int
sw_proto_pipeline_class(struct sw_wire *w)
{
    static const uint32_t types[] = {SW_MSG_PREPARE, SW_MSG_READY,    SW_MSG_GO,
                                     SW_MSG_FWD,     SW_MSG_BWD,      SW_MSG_GRAD,
                                     SW_MSG_GRAD_ASK, SW_MSG_REPLICA};
    /* the bulk answers in a class of their own: over a slow link a 4 MiB
     * piece takes seconds, and the sender's other traffic to this node
     * (PONGs, DHT answers) overtook it by more than the other class's 64
     * and made it stale (no rebuild down 20 Mbit/s finished: t0403); and
     * in the pipeline class, a stranger's flood of state requests advanced
     * the pipeline counter (attack_bench's fresh-key flood: 0.76).  Their
     * requests too: the transport sends bulk-class requests on a
     * connection of their own, so that their answers do not hold back the
     * others (net/transport.h, Bulk) */
    static const uint32_t bulk[] = {SW_MSG_STATE_GET, SW_MSG_STATE, SW_MSG_CKPT_GET,
                                    SW_MSG_CKPT};
    int err;

    if ((err = sw_wire_set_pipeline_types(w, types, SW_ARRAY_SIZE(types))) < 0)
        return err;
    return sw_wire_set_bulk_types(w, bulk, SW_ARRAY_SIZE(bulk));
}
