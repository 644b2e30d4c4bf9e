/*
 * fuzz_wire.c - libFuzzer target for the envelope decode + verify path.
 *
 * fuzz-sources: net/identity.c net/wire.c net/blake2b4.c
 *
 * Input: byte 0 = flags, bytes 1-2 = envelope length (little-endian), then
 * the envelope, then the payload (the rest).  With flag 1 the harness signs
 * the envelope itself with a fixed key (seed 0x11...), so mutated envelopes
 * that still name that key reach the sequence window, the payload hash and
 * the tensor checks; without it the signature is the 64 bytes after the
 * envelope.  Every input runs against a fresh struct sw_wire (run id
 * 0x22...) whose pipeline sequence class holds 520-530, and is opened
 * twice (the second must be a replay); a "cert" must lie inside the
 * envelope and within SW_WIRE_MAX_CERT.  The seed
 * corpus is tests/fuzz/corpus/wire/; make check replays it with
 * tests/fuzz/replay.c, scripts/fuzz.sh wire SECONDS fuzzes.
 */
#include "sw.h"

#include "identity.h"
#include "wire.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct sw_identity key;
static int ready;
static const uint32_t pipe[] = {520, 521, 522, 524, 526, 528, 530};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sw_wire_opts o = {.max_senders = 4, .max_payload = 1u << 20};
    uint8_t run[32], sig[64];
    struct sw_wire w;
    struct sw_wire_hdr h;
    struct sw_wire_tensor t;
    msgpack_unpacked up;
    const uint8_t *env, *payload;
    size_t env_len, payload_len;
    int flags, err;

    if (!ready) {
        uint8_t seed[32];

        memset(seed, 0x11, sizeof(seed));
        if (sw_identity_from_seed(&key, seed) < 0)
            return 0;
        sw_log_level = SW_LOG_NONE;
        ready = 1;
    }
    if (size < 3)
        return 0;
    flags = data[0];
    env_len = SW_MIN((size_t)(data[1] | data[2] << 8), size - 3);
    env = data + 3;
    payload = env + env_len;
    payload_len = size - 3 - env_len;
    if (flags & 1) {
        if (sw_identity_sign(&key, sig, env, env_len) < 0)
            return 0;
    } else {
        memset(sig, 0, sizeof(sig));
        memcpy(sig, payload, SW_MIN(payload_len, sizeof(sig)));
        payload += SW_MIN(payload_len, sizeof(sig));
        payload_len -= SW_MIN(payload_len, sizeof(sig));
    }
    memset(run, 0x22, sizeof(run));
    if (sw_wire_init(&w, &key, run, &o) < 0)
        return 0;
    if (sw_wire_set_pipeline_types(&w, pipe, SW_ARRAY_SIZE(pipe)) < 0)
        __builtin_trap();
    err = sw_wire_open(&w, env, env_len, sig, sizeof(sig), payload_len, &h);
    if (err == 0 && (h.cert_len > SW_WIRE_MAX_CERT || (h.cert_len && (h.cert < env ||
                     h.cert + h.cert_len > env + env_len)) || (!h.cert) != (h.cert_len == 0)))
        __builtin_trap(); /* the cert is a slice of the envelope, or absent */
    if (err == 0) {
        if (sw_wire_open(&w, env, env_len, sig, sizeof(sig), payload_len, &h) != -SW_EREPLAY)
            __builtin_trap(); /* a replay must never pass */
        if (sw_wire_check_payload(&w, &h, payload, payload_len) == 0) {
            if (sw_wire_unpack(h.body, h.body_len, &up) == 0)
                msgpack_unpacked_destroy(&up);
            if (sw_wire_tensor_unpack(h.body, h.body_len, &t) == 0)
                err = sw_wire_tensor_check(&w, &t, payload, payload_len);
        }
    } else {
        /* the bare parser and the scanner on the same bytes */
        if (sw_wire_parse(env, env_len, &h) == 0 && h.body_len == 0)
            __builtin_trap(); /* a parsed envelope always has a body */
        if (sw_wire_tensor_unpack(env, env_len, &t) == 0)
            err = sw_wire_tensor_check(NULL, &t, payload, payload_len);
    }
    sw_wire_release(&w);
    return 0;
}
