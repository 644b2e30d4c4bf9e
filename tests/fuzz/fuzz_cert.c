/*
 * fuzz_cert.c - libFuzzer target for admission (peers/admit.h): arbitrary
 * bytes as a membership certificate and as a revocation list.
 *
 * The first input byte picks what the rest is:
 *   even   a certificate, verified for the fixed run and owner below (with
 *          and without a node to compare, at a fixed time), then offered to
 *          an admitter of 4 cached keys under a rotating sender
 *   odd    a revocation list, decoded for the fixed run and owner, then
 *          given to that admitter
 * Invariants (abort on breach): a certificate that verifies names the run,
 * is signed by the owner or chains to it, is unexpired at that time, and its
 * chain (when any) lies inside the input; a decoded list has at most
 * SW_REVOKED_MAX keys; the admitter's cache never holds more than its cap.
 *
 * Build: make check builds it with tests/fuzz/replay.c (t0530); for real
 * fuzzing `scripts/fuzz.sh cert SECONDS`, which compiles it with
 * fuzz-sources: peers/admit.c peers/proto.c net/wire.c net/identity.c net/blake2b4.c
 * With -DSW_FUZZ_CERT_GEN it is instead a program that writes the seed corpus
 * (valid certificates of the fixed owner, a delegate's, a list) into the
 * directory named by its argument.
 */
#include "sw.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"

#define NOW 1800000000ull

static struct sw_identity owner, dlg, node;
static uint8_t run[32];
static struct sw_admit adm;

static void
key(struct sw_identity *id, uint8_t b)
{
    uint8_t seed[32];

    memset(seed, b, sizeof(seed));
    if (sw_identity_from_seed(id, seed) < 0)
        abort();
}

static void
setup(void)
{
    static bool done;

    if (done)
        return;
    done = true;
    if (sw_identity_global_init() < 0)
        abort();
    key(&owner, 1);
    key(&dlg, 2);
    key(&node, 3);
    memset(run, 0xaa, sizeof(run));
    if (sw_admit_init(&adm, run, owner.pk, false, 4) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t sender[32];
    struct sw_cert c;
    struct sw_revoked r;
    int why;

    setup();
    if (size < 1)
        return 0;
    if (data[0] & 1) {
        if (sw_revoked_decode(data + 1, size - 1, run, owner.pk, &r) == 0) {
            if (r.n < 0 || r.n > SW_REVOKED_MAX)
                abort();
            sw_admit_set_revoked(&adm, &r);
        }
        return 0;
    }
    why = sw_cert_verify(data + 1, size - 1, run, owner.pk, NULL, NOW, SW_CERT_SKEW_S, &c);
    if (why == SW_ADMIT_OK) {
        if (memcmp(c.run, run, 32) || c.exp + SW_CERT_SKEW_S < NOW ||
            (memcmp(c.by, owner.pk, 32) && !c.chain) ||
            (c.chain && (c.chain < data + 1 || c.chain + c.chain_len > data + size)))
            abort();
        /* with its own node as the sender it is admitted, unless revoked */
        why = sw_admit_check(&adm, c.node, data + 1, size - 1, NOW, NULL);
        if (why != SW_ADMIT_OK && why != SW_ADMIT_REVOKED)
            abort();
    }
    (void)sw_cert_verify(data + 1, size - 1, run, owner.pk, node.pk, NOW, 0, &c);
    sender[0] = data[0];
    (void)sw_admit_check(&adm, sender, data + 1, size - 1, NOW, NULL);
    if (adm.n > adm.cap)
        abort();
    return 0;
}

#ifdef SW_FUZZ_CERT_GEN
static void
put(const char *dir, const char *name, uint8_t kind, const uint8_t *b, size_t n)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (!(f = fopen(path, "wb")) || fwrite(&kind, 1, 1, f) != 1 || fwrite(b, 1, n, f) != n ||
        fclose(f) != 0)
        exit(1);
}

int
main(int argc, char **argv)
{
    uint8_t c[SW_CERT_MAX], d[SW_CERT_MAX], l[4096];
    size_t cn, dn, ln;
    struct sw_revoked r;

    if (argc != 2)
        return 2;
    setup();
    if (sw_cert_issue(&owner, run, node.pk, 1, NOW + 3600, SW_CERT_NODE, NULL, 0, c, sizeof(c),
                      &cn) < 0)
        return 1;
    put(argv[1], "owner-cert", 0, c, cn);
    if (sw_cert_issue(&owner, run, dlg.pk, -1, NOW + 3600, SW_CERT_DELEGATE, NULL, 0, d,
                      sizeof(d), &dn) < 0 ||
        sw_cert_issue(&dlg, run, node.pk, -1, NOW + 600, SW_CERT_NODE, d, dn, c, sizeof(c),
                      &cn) < 0)
        return 1;
    put(argv[1], "delegate-cert", 0, c, cn);
    memset(&r, 0, sizeof(r));
    r.seq = 5;
    r.n = 2;
    memcpy(r.keys[0], dlg.pk, 32);
    memcpy(r.keys[1], node.pk, 32);
    if (sw_revoked_encode(&owner, run, &r, l, sizeof(l), &ln) < 0)
        return 1;
    put(argv[1], "revoked", 1, l, ln);
    return 0;
}
#endif
