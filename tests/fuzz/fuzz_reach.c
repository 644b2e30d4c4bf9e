/*
 * fuzz_reach.c - libFuzzer target for the reachability messages' bodies
 * (peers/reach.h): REACH_ASK, REACH, and REACH_PROBE/REACH_ECHO.
 *
 * fuzz-sources: peers/reach.c peers/proto.c peers/metrics.c net/transport.c net/wire.c net/identity.c net/blake2b4.c
 *
 * The first input byte picks the decoder (mod 3: ASK, REACH, nonce), the
 * rest is the body.  Invariants (abort on breach): a decoded ASK's ep is a
 * NUL-terminated printable string that fits and is not empty; a decoded
 * REACH's res is below SW_REACH__COUNT, its verdict one of the three, its
 * seen printable; whatever decodes packs again into a body that decodes to
 * the same values.  The seed corpus is tests/fuzz/corpus/reach/ (one valid
 * body of each kind and a few broken ones); make check replays it with
 * tests/fuzz/replay.c (t0540), scripts/fuzz.sh reach SECONDS fuzzes.
 */
#include "sw.h"

#include <stdlib.h>
#include <string.h>

#include "reach.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
printable(const char *s)
{
    for (; *s; s++)
        if (*s <= ' ' || *s > '~')
            return false;
    return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sw_body b;
    char ep[SW_PROTO_EP_MAX], ep2[SW_PROTO_EP_MAX];
    char seen[SW_REACH_ADDR_MAX], seen2[SW_REACH_ADDR_MAX];
    uint8_t nonce[SW_REACH_NONCE], nonce2[SW_REACH_NONCE];
    int res, res2, v;

    sw_log_level = SW_LOG_NONE;
    if (size < 1)
        return 0;
    switch (data[0] % 3) {
    case 0:
        if (sw_reach_ask_read(data + 1, size - 1, ep, sizeof(ep)) == 0) {
            if (!ep[0] || strlen(ep) >= sizeof(ep) || !printable(ep))
                abort();
            sw_reach_ask_pack(&b, ep);
            if (b.b.overflow || sw_reach_ask_read(b.b.data, b.b.len, ep2, sizeof(ep2)) < 0 ||
                strcmp(ep, ep2))
                abort();
        }
        break;
    case 1:
        if (sw_reach_answer_read(data + 1, size - 1, &res, seen, sizeof(seen)) == 0) {
            v = sw_reach_verdict_of(res);
            if (res < 0 || res >= SW_REACH__COUNT || v < SW_REACH_UNKNOWN ||
                v > SW_REACH_UNREACHABLE || !printable(seen))
                abort();
            sw_reach_answer_pack(&b, res, seen);
            if (b.b.overflow ||
                sw_reach_answer_read(b.b.data, b.b.len, &res2, seen2, sizeof(seen2)) < 0 ||
                res2 != res || strcmp(seen, seen2))
                abort();
        }
        break;
    default:
        if (sw_reach_nonce_read(data + 1, size - 1, nonce) == 0) {
            sw_reach_nonce_pack(&b, nonce);
            if (b.b.overflow || sw_reach_nonce_read(b.b.data, b.b.len, nonce2) < 0 ||
                memcmp(nonce, nonce2, sizeof(nonce)))
                abort();
        }
        break;
    }
    return 0;
}
