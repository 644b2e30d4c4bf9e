#include "sw.h"

#include <string.h>

#include "dht_codec.h"
#include "wire.h"

/* ---- encoding ---------------------------------------------------------- */

struct obuf {
    uint8_t *p;
    size_t len, cap;
};

static int
obuf_write(void *data, const char *buf, size_t len)
{
    struct obuf *b = data;

    if (b->cap - b->len < len) {
        size_t cap = b->cap ? b->cap : 256;
        uint8_t *p;

        while (cap - b->len < len)
            cap *= 2;
        p = sw_realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, buf, len);
    b->len += len;
    return 0;
}

static int
pack_key(msgpack_packer *pk, const char *k)
{
    size_t n = strlen(k);

    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, k, n);
}

static int
pack_bin(msgpack_packer *pk, const char *k, const uint8_t *p, size_t n)
{
    return pack_key(pk, k) || msgpack_pack_bin(pk, n) || (n && msgpack_pack_bin_body(pk, p, n));
}

static int
pack_str(msgpack_packer *pk, const char *k, const char *s)
{
    size_t n = strlen(s);

    return pack_key(pk, k) || msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int
pack_contact(msgpack_packer *pk, const struct sw_dht_contact *c)
{
    return msgpack_pack_map(pk, 2) || pack_bin(pk, "pk", c->pk, SW_DHT_PK_BYTES) ||
           pack_str(pk, "ep", c->ep);
}

static int
pack_record(msgpack_packer *pk, const struct sw_dht_record *r)
{
    return msgpack_pack_map(pk, 6) || pack_bin(pk, "key", r->key, SW_DHT_ID_BYTES) ||
           pack_bin(pk, "pub", r->pub, SW_DHT_PK_BYTES) || pack_key(pk, "seq") ||
           msgpack_pack_uint64(pk, r->seq) || pack_key(pk, "ttl") ||
           msgpack_pack_uint32(pk, r->ttl_s) || pack_bin(pk, "val", r->val, r->val_len) ||
           pack_bin(pk, "sig", r->sig, SW_DHT_SIG_BYTES);
}

static bool
msg_encodable(const struct sw_dht_msg *m)
{
    size_t eplen = strnlen(m->ep, SW_DHT_EP_MAX);

    if (eplen == SW_DHT_EP_MAX || (eplen && !sw_dht_endpoint_valid(m->ep, eplen)))
        return false;
    if (m->n_nodes > SW_DHT_K_MAX || m->n_recs > SW_DHT_PUBLISHERS_MAX)
        return false;
    for (size_t i = 0; i < m->n_nodes; i++)
        if (!sw_dht_endpoint_valid(m->nodes[i].ep, strnlen(m->nodes[i].ep, SW_DHT_EP_MAX)))
            return false;
    for (size_t i = 0; i < m->n_recs; i++)
        if (m->recs[i].val_len > SW_DHT_VALUE_MAX || (m->recs[i].val_len && !m->recs[i].val))
            return false;
    switch (m->type) {
    case SW_DHT_STORE:
        return m->n_recs == 1;
    case SW_DHT_STORED:
        return m->status <= SW_DHT_ST_INVALID;
    case SW_DHT_PING:
    case SW_DHT_PONG:
    case SW_DHT_FIND_NODE:
    case SW_DHT_NODES:
    case SW_DHT_FIND_VALUE:
    case SW_DHT_VALUES:
        return true;
    default:
        return false;
    }
}

int
sw_dht_msg_pack(msgpack_packer *pk, const struct sw_dht_msg *m)
{
    bool has_ep = m->ep[0] != '\0';
    size_t n = 1 + has_ep;
    int bad = 0;

    if (!msg_encodable(m))
        return -SW_EINVAL;
    switch (m->type) {
    case SW_DHT_FIND_NODE:
    case SW_DHT_NODES:
    case SW_DHT_STORE:
    case SW_DHT_STORED:
        n += 1;
        break;
    case SW_DHT_FIND_VALUE:
        n += 1 + m->has_after;
        break;
    case SW_DHT_VALUES:
        n += 3;
        break;
    }
    bad |= msgpack_pack_map(pk, n) || pack_key(pk, "tid") || msgpack_pack_uint64(pk, m->tid);
    if (has_ep)
        bad |= pack_str(pk, "ep", m->ep);
    switch (m->type) {
    case SW_DHT_FIND_NODE:
        bad |= pack_bin(pk, "target", m->target, SW_DHT_ID_BYTES);
        break;
    case SW_DHT_FIND_VALUE:
        bad |= pack_bin(pk, "key", m->target, SW_DHT_ID_BYTES);
        if (m->has_after)
            bad |= pack_bin(pk, "after", m->after, SW_DHT_PK_BYTES);
        break;
    case SW_DHT_NODES:
    case SW_DHT_VALUES:
        bad |= pack_key(pk, "nodes") || msgpack_pack_array(pk, m->n_nodes);
        for (size_t i = 0; i < m->n_nodes && !bad; i++)
            bad |= pack_contact(pk, &m->nodes[i]);
        if (m->type == SW_DHT_NODES)
            break;
        bad |= pack_key(pk, "recs") || msgpack_pack_array(pk, m->n_recs);
        for (size_t i = 0; i < m->n_recs && !bad; i++)
            bad |= pack_record(pk, &m->recs[i]);
        bad |= pack_key(pk, "more") || (m->more ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
        break;
    case SW_DHT_STORE:
        bad |= pack_key(pk, "rec") || pack_record(pk, &m->recs[0]);
        break;
    case SW_DHT_STORED:
        bad |= pack_key(pk, "status") || msgpack_pack_uint32(pk, m->status);
        break;
    }
    return bad ? -SW_ENOMEM : 0;
}

int
sw_dht_msg_encode(const struct sw_dht_msg *m, uint8_t **out, size_t *len)
{
    struct obuf b = {0};
    msgpack_packer pk;
    int err;

    msgpack_packer_init(&pk, &b, obuf_write);
    err = sw_dht_msg_pack(&pk, m);
    if (err < 0) {
        sw_free(b.p);
        return err;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

/* ---- pre-scan ----------------------------------------------------------- */

/* The wire's bounded scanner (net/wire.h): every container's count must fit
 * in the bytes left, so msgpack-c never allocates for a lying count. */
bool
sw_dht_msgpack_sane(const void *buf, size_t len, unsigned max_depth)
{
    return sw_wire_msgpack_check(buf, len, (int)max_depth) == 0;
}

/* ---- decoding ----------------------------------------------------------- */

enum {
    F_TID = 1 << 0,
    F_EP = 1 << 1,
    F_TARGET = 1 << 2,
    F_KEY = 1 << 3,
    F_AFTER = 1 << 4,
    F_NODES = 1 << 5,
    F_RECS = 1 << 6,
    F_MORE = 1 << 7,
    F_REC = 1 << 8,
    F_STATUS = 1 << 9,
};

static const struct {
    const char *name;
    unsigned bit;
} fields[] = {
    {"tid", F_TID},     {"ep", F_EP},       {"target", F_TARGET}, {"key", F_KEY},
    {"after", F_AFTER}, {"nodes", F_NODES}, {"recs", F_RECS},     {"more", F_MORE},
    {"rec", F_REC},     {"status", F_STATUS},
};

static bool
type_fields(int type, unsigned *required, unsigned *allowed)
{
    unsigned r = F_TID;

    switch (type) {
    case SW_DHT_PING:
    case SW_DHT_PONG:
        break;
    case SW_DHT_FIND_NODE:
        r |= F_TARGET;
        break;
    case SW_DHT_NODES:
        r |= F_NODES;
        break;
    case SW_DHT_FIND_VALUE:
        r |= F_KEY;
        break;
    case SW_DHT_VALUES:
        r |= F_NODES | F_RECS | F_MORE;
        break;
    case SW_DHT_STORE:
        r |= F_REC;
        break;
    case SW_DHT_STORED:
        r |= F_STATUS;
        break;
    default:
        return false;
    }
    *required = r;
    *allowed = r | F_EP | (type == SW_DHT_FIND_VALUE ? F_AFTER : 0);
    return true;
}

static bool
key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);

    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

static bool
get_bin(uint8_t *dst, const msgpack_object *o, size_t n)
{
    if (o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != n)
        return false;
    memcpy(dst, o->via.bin.ptr, n);
    return true;
}

static bool
get_ep(char *dst, const msgpack_object *o)
{
    if (o->type != MSGPACK_OBJECT_STR || !sw_dht_endpoint_valid(o->via.str.ptr, o->via.str.size))
        return false;
    memcpy(dst, o->via.str.ptr, o->via.str.size);
    dst[o->via.str.size] = '\0';
    return true;
}

static bool
get_contact(struct sw_dht_contact *c, const msgpack_object *o)
{
    unsigned seen = 0;

    if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size != 2)
        return false;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;

        if (key_is(k, "pk") && !(seen & 1)) {
            if (!get_bin(c->pk, v, SW_DHT_PK_BYTES))
                return false;
            seen |= 1;
        } else if (key_is(k, "ep") && !(seen & 2)) {
            if (!get_ep(c->ep, v))
                return false;
            seen |= 2;
        } else {
            return false;
        }
    }
    if (seen != 3)
        return false;
    sw_dht_id_of(c->id, c->pk);
    return true;
}

/* 0, -SW_EMSG or -SW_ENOMEM; r->val is allocated on success. */
static int
get_record(struct sw_dht_record *r, const msgpack_object *o)
{
    const msgpack_object *val = NULL;
    unsigned seen = 0;
    uint8_t *copy;

    if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size != 6)
        return -SW_EMSG;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        unsigned bit;
        bool ok;

        if (key_is(k, "key")) {
            bit = 1;
            ok = get_bin(r->key, v, SW_DHT_ID_BYTES);
        } else if (key_is(k, "pub")) {
            bit = 2;
            ok = get_bin(r->pub, v, SW_DHT_PK_BYTES);
        } else if (key_is(k, "seq")) {
            bit = 4;
            ok = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
            r->seq = ok ? v->via.u64 : 0;
        } else if (key_is(k, "ttl")) {
            bit = 8;
            ok = v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 >= 1 &&
                 v->via.u64 <= UINT32_MAX;
            r->ttl_s = ok ? (uint32_t)v->via.u64 : 0;
        } else if (key_is(k, "val")) {
            bit = 16;
            ok = v->type == MSGPACK_OBJECT_BIN && v->via.bin.size <= SW_DHT_VALUE_MAX;
            val = v;
        } else if (key_is(k, "sig")) {
            bit = 32;
            ok = get_bin(r->sig, v, SW_DHT_SIG_BYTES);
        } else {
            return -SW_EMSG;
        }
        if (!ok || (seen & bit))
            return -SW_EMSG;
        seen |= bit;
    }
    if (seen != 63)
        return -SW_EMSG;
    copy = sw_malloc(val->via.bin.size);
    if (!copy)
        return -SW_ENOMEM;
    if (val->via.bin.size)
        memcpy(copy, val->via.bin.ptr, val->via.bin.size);
    r->val = copy;
    r->val_len = val->via.bin.size;
    return 0;
}

void
sw_dht_msg_release(struct sw_dht_msg *m)
{
    if (m->recs)
        for (size_t i = 0; i < m->n_recs; i++)
            sw_free((void *)m->recs[i].val);
    sw_free(m->recs);
    sw_free(m->nodes);
    m->recs = NULL;
    m->nodes = NULL;
    m->n_recs = m->n_nodes = 0;
}

static int
get_nodes(struct sw_dht_msg *m, const msgpack_object *v)
{
    if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > SW_DHT_K_MAX)
        return -SW_EMSG;
    if (v->via.array.size) {
        m->nodes = sw_calloc(v->via.array.size, sizeof(*m->nodes));
        if (!m->nodes)
            return -SW_ENOMEM;
    }
    for (uint32_t i = 0; i < v->via.array.size; i++) {
        if (!get_contact(&m->nodes[i], &v->via.array.ptr[i]))
            return -SW_EMSG;
        m->n_nodes++;
    }
    return 0;
}

static int
get_recs(struct sw_dht_msg *m, const msgpack_object *v, uint32_t max)
{
    int err;

    if (v->type != MSGPACK_OBJECT_ARRAY || v->via.array.size > max)
        return -SW_EMSG;
    if (v->via.array.size) {
        m->recs = sw_calloc(v->via.array.size, sizeof(*m->recs));
        if (!m->recs)
            return -SW_ENOMEM;
    }
    for (uint32_t i = 0; i < v->via.array.size; i++) {
        if ((err = get_record(&m->recs[i], &v->via.array.ptr[i])) < 0)
            return err;
        m->n_recs++;
        /* sorted by publisher, each publisher once */
        if (i > 0 && memcmp(m->recs[i - 1].pub, m->recs[i].pub, SW_DHT_PK_BYTES) >= 0)
            return -SW_EMSG;
    }
    return 0;
}

int
sw_dht_msg_unpack(struct sw_dht_msg *m, int type, const msgpack_object *o)
{
    unsigned required, allowed, seen = 0;
    int err = -SW_EMSG;

    memset(m, 0, sizeof(*m));
    m->type = type;
    if (!type_fields(type, &required, &allowed) || o->type != MSGPACK_OBJECT_MAP)
        return -SW_EMSG;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        unsigned bit = 0;

        for (size_t f = 0; f < SW_ARRAY_SIZE(fields) && !bit; f++)
            if (key_is(k, fields[f].name))
                bit = fields[f].bit;
        if (!bit || !(bit & allowed) || (seen & bit))
            goto fail;
        seen |= bit;
        switch (bit) {
        case F_TID:
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                goto fail;
            m->tid = v->via.u64;
            break;
        case F_EP:
            if (!get_ep(m->ep, v))
                goto fail;
            break;
        case F_TARGET:
        case F_KEY:
            if (!get_bin(m->target, v, SW_DHT_ID_BYTES))
                goto fail;
            break;
        case F_AFTER:
            if (!get_bin(m->after, v, SW_DHT_PK_BYTES))
                goto fail;
            m->has_after = true;
            break;
        case F_NODES:
            if ((err = get_nodes(m, v)) < 0)
                goto fail;
            break;
        case F_RECS:
            if ((err = get_recs(m, v, SW_DHT_PUBLISHERS_MAX)) < 0)
                goto fail;
            break;
        case F_MORE:
            if (v->type != MSGPACK_OBJECT_BOOLEAN)
                goto fail;
            m->more = v->via.boolean;
            break;
        case F_REC:
            m->recs = sw_calloc(1, sizeof(*m->recs));
            if (!m->recs) {
                err = -SW_ENOMEM;
                goto fail;
            }
            if ((err = get_record(&m->recs[0], v)) < 0)
                goto fail;
            m->n_recs = 1;
            break;
        case F_STATUS:
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 > SW_DHT_ST_INVALID)
                goto fail;
            m->status = (unsigned)v->via.u64;
            break;
        }
        err = -SW_EMSG;
    }
    if ((seen & required) != required)
        goto fail;
    return 0;
fail:
    sw_dht_msg_release(m);
    return err;
}

int
sw_dht_msg_decode(struct sw_dht_msg *m, int type, const void *buf, size_t len)
{
    msgpack_unpacked u;
    size_t off = 0;
    int err;

    memset(m, 0, sizeof(*m));
    m->type = type;
    if (len > SW_DHT_BODY_MAX)
        return -SW_ETOOBIG;
    /* body map -> recs array -> record map -> value: depth 4 */
    if (!sw_dht_msgpack_sane(buf, len, 4))
        return -SW_EMSG;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len) {
        msgpack_unpacked_destroy(&u);
        return -SW_EMSG;
    }
    err = sw_dht_msg_unpack(m, type, &u.data);
    msgpack_unpacked_destroy(&u);
    return err;
}
