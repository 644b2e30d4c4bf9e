/*
 * fuzz_record.c - libFuzzer target for the stage-record decoder
 * (peers/status.h, sw_status_rec_unpack): what any key of an open run may
 * store in the DHT, read by every node's scan and by swarmctl.
 *
 * fuzz-sources: peers/status.c peers/proto.c net/dhtnode.c net/dht.c net/dht_codec.c net/transport.c net/wire.c net/identity.c net/blake2b4.c
 *
 * The input is the record's msgpack bytes (the DHT value), read for a run
 * of 4 stages.  Invariants (abort on breach): a decoded record's ep and
 * hash are NUL-terminated and printable, its stage below 4, its state, "rch"
 * (reach), "mv", "nd" and "blk" within their bounds, its numbers finite, a
 * certificate within SW_STATUS_CERT_MAX; whatever
 * decodes packs again into bytes that decode to the same fields.  The seed
 * corpus is tests/fuzz/corpus/record/ (a full record with every optional
 * key, a bare one, and broken ones); make check replays it with
 * tests/fuzz/replay.c (t0541), scripts/fuzz.sh record SECONDS fuzzes.
 */
#include "sw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
printable(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);

    if (n == cap)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < ' ' || s[i] > '~')
            return false;
    return true;
}

static void
check(const struct sw_peer_rec *r, const uint8_t *data, size_t size)
{
    if (!printable(r->ep, sizeof(r->ep)) || !printable(r->hash, sizeof(r->hash)) ||
        !printable(r->rec_method, sizeof(r->rec_method)) ||
        !printable(r->rec_from, sizeof(r->rec_from)) || r->stage < 0 || r->stage >= 4 ||
        r->state < 0 || r->state > SW_REC_JOINING || r->reach < 0 || r->reach > 3 ||
        r->moving < 0 || r->moving > 4 || r->need < 0 || r->need > 4 ||
        r->blk_ms > SW_STATUS_BLK_MAX_MS || !isfinite(r->tps) || !isfinite(r->cap) ||
        !isfinite(r->loss) || !isfinite(r->norm))
        abort();
    (void)data;
    (void)size;
    if (r->cert_len > SW_STATUS_CERT_MAX || (r->cert_len && !r->cert))
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t buf[4096 + SW_STATUS_CERT_MAX];
    struct sw_peer_rec r, r2;
    msgpack_unpacked u, u2;
    struct sw_wire_buf b;
    msgpack_packer pk;

    sw_log_level = SW_LOG_NONE;
    msgpack_unpacked_init(&u);
    if (sw_wire_unpack(data, size, &u) == 0) {
        memset(&r, 0, sizeof(r));
        if (sw_status_rec_unpack(&u.data, &r, 4, 60, 1000000) == 0) {
            check(&r, data, size);
            sw_wire_buf_init(&b, buf, sizeof(buf));
            sw_wire_buf_packer(&pk, &b);
            sw_status_rec_pack(&pk, &r, 60, 0);
            msgpack_unpacked_init(&u2);
            memset(&r2, 0, sizeof(r2));
            if (b.overflow || sw_wire_unpack(b.data, b.len, &u2) < 0 ||
                sw_status_rec_unpack(&u2.data, &r2, 4, 60, 1000000) < 0 ||
                strcmp(r.ep, r2.ep) || r.stage != r2.stage || r.state != r2.state ||
                r.step != r2.step || r.reach != r2.reach || r.relay != r2.relay ||
                r.blk_ms != r2.blk_ms || r.moving != r2.moving || r.need != r2.need ||
                r.cert_len != r2.cert_len ||
                (r.cert_len && memcmp(r.cert, r2.cert, r.cert_len)))
                abort();
            msgpack_unpacked_destroy(&u2);
        }
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}
