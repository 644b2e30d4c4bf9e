/*
 * test_admit - membership certificates, the delegate chain, the revocation
 * list and the admitter's cache (peers/admit.h).  Keys from fixed seeds.
 */
#include "sw.h"

#include <sodium.h>
#include <string.h>

#include "admit.h"
#include "tap.h"

#define NOW 1800000000ull

static void
key(struct sw_identity *id, uint8_t b)
{
    uint8_t seed[32];

    memset(seed, b, sizeof(seed));
    if (sw_identity_from_seed(id, seed) < 0)
        abort();
}

int
main(void)
{
    struct sw_identity owner, node, other, dlg;
    struct sw_admit a;
    struct sw_cert c;
    struct sw_revoked r, r2;
    uint8_t run[32], run2[32], cert[SW_CERT_MAX], dcert[SW_CERT_MAX], bad[SW_CERT_MAX];
    uint8_t lst[4096];
    size_t len, dlen, llen;
    int st, why, n_ok, n_bad;

    tap_plan(37);
    if (sw_identity_global_init() < 0)
        return 1;
    key(&owner, 1);
    key(&node, 2);
    key(&other, 3);
    key(&dlg, 4);
    memset(run, 0xaa, 32);
    memset(run2, 0xbb, 32);

    /* the owner's certificate */
    why = sw_cert_issue(&owner, run, node.pk, 2, NOW + 100, SW_CERT_NODE, NULL, 0, cert,
                        sizeof(cert), &len);
    tap_ok(why == 0, "the owner issues a certificate (%zu bytes)", len);
    why = sw_cert_verify(cert, len, run, owner.pk, node.pk, NOW, 0, &c);
    tap_ok(why == SW_ADMIT_OK && c.stage == 2 && c.exp == NOW + 100 && c.role == SW_CERT_NODE &&
               !memcmp(c.by, owner.pk, 32), "it verifies for its node, with its stage and expiry");
    tap_ok(sw_cert_verify(cert, len, run, owner.pk, NULL, NOW, 0, &c) == SW_ADMIT_OK,
           "it verifies without a node to compare (a record's reader)");
    tap_ok(sw_cert_verify(cert, len, run2, owner.pk, node.pk, NOW, 0, &c) == SW_ADMIT_RUN,
           "another run: refused (run)");
    tap_ok(sw_cert_verify(cert, len, run, owner.pk, other.pk, NOW, 0, &c) == SW_ADMIT_NODE,
           "another sender: refused (node)");
    tap_ok(sw_cert_verify(cert, len, run, other.pk, node.pk, NOW, 0, &c) == SW_ADMIT_CHAIN,
           "another owner: refused (no chain to it)");
    tap_ok(sw_cert_verify(cert, len, run, owner.pk, node.pk, NOW + 101, 0, &c) ==
               SW_ADMIT_EXPIRED, "after its expiry: refused");
    tap_ok(sw_cert_verify(cert, len, run, owner.pk, node.pk, NOW + 101, SW_CERT_SKEW_S, &c) ==
               SW_ADMIT_OK, "after its expiry but within the clock skew: admitted");
    tap_ok(sw_cert_verify(NULL, 0, run, owner.pk, node.pk, NOW, 0, &c) == SW_ADMIT_NOCERT,
           "no certificate: nocert");

    /* tampering: every single byte flipped is refused (never admitted) */
    n_ok = 0;
    for (size_t i = 0; i < len; i++) {
        memcpy(bad, cert, len);
        bad[i] ^= 0x01;
        if (sw_cert_verify(bad, len, run, owner.pk, node.pk, NOW, 0, &c) == SW_ADMIT_OK)
            n_ok++;
    }
    tap_ok(n_ok == 0, "each of %zu one-bit flips is refused (%d admitted)", len, n_ok);
    /* truncations and random bytes: refused, and no crash */
    n_ok = 0;
    for (size_t i = 0; i < len; i++)
        if (sw_cert_verify(cert, i, run, owner.pk, node.pk, NOW, 0, &c) == SW_ADMIT_OK)
            n_ok++;
    n_bad = 0;
    for (int i = 0; i < 2000; i++) {
        size_t l = 1 + randombytes_uniform(sizeof(bad));
        randombytes_buf(bad, l);
        if (i & 1)
            memcpy(bad, cert, SW_MIN(l, len / 2)); /* a valid start, garbage after */
        if (sw_cert_verify(bad, l, run, owner.pk, node.pk, NOW, 0, &c) == SW_ADMIT_OK)
            n_bad++;
    }
    tap_ok(n_ok == 0 && n_bad == 0, "truncations and 2000 random inputs are refused");
    memset(bad, 0xc4, sizeof(bad)); /* bin 8 headers over and over */
    tap_ok(sw_cert_verify(bad, sizeof(bad), run, owner.pk, node.pk, NOW, 0, &c) ==
               SW_ADMIT_MALFORMED, "malformed bytes: malformed");
    tap_ok(sw_cert_decode(cert, SW_CERT_MAX + 1, &c) < 0, "over SW_CERT_MAX bytes: refused");
    tap_ok(sw_cert_issue(&owner, run, node.pk, -2, NOW, SW_CERT_NODE, NULL, 0, bad, sizeof(bad),
                         &llen) == -SW_EINVAL, "a stage below -1 is not issued");

    /* the delegate chain */
    tap_ok(sw_cert_issue(&owner, run, dlg.pk, -1, NOW + 50, SW_CERT_DELEGATE, NULL, 0, dcert,
                         sizeof(dcert), &dlen) == 0, "the owner issues a delegate certificate");
    why = sw_cert_issue(&dlg, run, other.pk, 1, NOW + 500, SW_CERT_NODE, dcert, dlen, cert,
                        sizeof(cert), &len);
    tap_ok(why == 0 && len <= SW_CERT_MAX,
           "the delegate issues a certificate with its own inside (%zu bytes)", len);
    why = sw_cert_verify(cert, len, run, owner.pk, other.pk, NOW, 0, &c);
    tap_ok(why == SW_ADMIT_OK && c.exp == NOW + 50 && c.stage == 1,
           "it verifies, good until the delegate's expiry (%s)", sw_admit_why_name(why));
    tap_ok(sw_cert_verify(cert, len, run, owner.pk, other.pk, NOW + 60, 0, &c) ==
               SW_ADMIT_EXPIRED, "after the delegate's expiry: refused");
    tap_ok(sw_cert_issue(&dlg, run, other.pk, 1, NOW + 500, SW_CERT_NODE, NULL, 0, bad,
                         sizeof(bad), &llen) == 0 &&
               sw_cert_verify(bad, llen, run, owner.pk, other.pk, NOW, 0, &c) == SW_ADMIT_CHAIN,
           "a delegate's certificate without the chain: refused (chain)");
    /* a node certificate is no delegate certificate */
    tap_ok(sw_cert_issue(&owner, run, dlg.pk, -1, NOW + 50, SW_CERT_NODE, NULL, 0, dcert,
                         sizeof(dcert), &dlen) == 0 &&
               sw_cert_issue(&dlg, run, other.pk, 1, NOW + 500, SW_CERT_NODE, dcert, dlen, bad,
                             sizeof(bad), &llen) == 0 &&
               sw_cert_verify(bad, llen, run, owner.pk, other.pk, NOW, 0, &c) == SW_ADMIT_CHAIN,
           "a chain of role node (not delegate): refused");
    /* a delegate bound to stage 3 issues for stage 3 only */
    tap_ok(sw_cert_issue(&owner, run, dlg.pk, 3, NOW + 50, SW_CERT_DELEGATE, NULL, 0, dcert,
                         sizeof(dcert), &dlen) == 0 &&
               sw_cert_issue(&dlg, run, other.pk, 1, NOW + 500, SW_CERT_NODE, dcert, dlen, bad,
                             sizeof(bad), &llen) == 0 &&
               sw_cert_verify(bad, llen, run, owner.pk, other.pk, NOW, 0, &c) == SW_ADMIT_CHAIN,
           "a delegate bound to stage 3 cannot issue for stage 1");
    /* a self-made delegate certificate (signed by the delegate, not the owner) */
    tap_ok(sw_cert_issue(&dlg, run, dlg.pk, -1, NOW + 50, SW_CERT_DELEGATE, NULL, 0, dcert,
                         sizeof(dcert), &dlen) == 0 &&
               sw_cert_issue(&dlg, run, other.pk, 1, NOW + 500, SW_CERT_NODE, dcert, dlen, bad,
                             sizeof(bad), &llen) == 0 &&
               sw_cert_verify(bad, llen, run, owner.pk, other.pk, NOW, 0, &c) == SW_ADMIT_CHAIN,
           "a delegate certificate not signed by the owner: refused");

    /* the revocation list */
    memset(&r, 0, sizeof(r));
    r.seq = 7;
    r.n = 2;
    memcpy(r.keys[0], node.pk, 32);
    memcpy(r.keys[1], dlg.pk, 32);
    why = sw_revoked_encode(&owner, run, &r, lst, sizeof(lst), &llen);
    tap_ok(why == 0 && sw_revoked_decode(lst, llen, run, owner.pk, &r2) == 0 && r2.seq == 7 &&
               r2.n == 2 && sw_revoked_has(&r2, node.pk) && !sw_revoked_has(&r2, other.pk),
           "a revocation list round-trips (%zu bytes)", llen);
    tap_ok(sw_revoked_decode(lst, llen, run, other.pk, &r2) == -SW_ESIG,
           "signed by another than the owner: refused");
    tap_ok(sw_revoked_decode(lst, llen, run2, owner.pk, &r2) < 0, "for another run: refused");
    lst[llen - 1] ^= 1;
    tap_ok(sw_revoked_decode(lst, llen, run, owner.pk, &r2) == -SW_ESIG, "tampered: refused");
    r.n = SW_REVOKED_MAX + 1;
    tap_ok(sw_revoked_encode(&owner, run, &r, lst, sizeof(lst), &llen) == -SW_EINVAL,
           "more than SW_REVOKED_MAX keys: not encoded");
    r.n = SW_REVOKED_MAX;
    why = sw_revoked_encode(&owner, run, &r, lst, sizeof(lst), &llen);
    tap_ok(why == 0 && llen < 4096,
           "a full list fits a DHT value (%zu bytes)", llen);

    /* the admitter */
    if (sw_admit_init(&a, run, owner.pk, false, 2) < 0)
        return 1;
    tap_ok(sw_admit_check(&a, owner.pk, NULL, 0, NOW, &st) == SW_ADMIT_OK && st == -1,
           "the owner is admitted without a certificate");
    tap_ok(sw_admit_check(&a, other.pk, NULL, 0, NOW, NULL) == SW_ADMIT_NOCERT &&
               a.drops[SW_ADMIT_NOCERT] == 1, "a stranger without one: refused and counted");
    if (sw_cert_issue(&owner, run, node.pk, 2, NOW + 100, SW_CERT_NODE, NULL, 0, cert,
                      sizeof(cert), &len) < 0)
        return 1;
    n_ok = 0;
    for (int i = 0; i < 100; i++)
        n_ok += sw_admit_check(&a, node.pk, i < 50 ? cert : NULL, i < 50 ? len : 0, NOW, &st) ==
                SW_ADMIT_OK && st == 2;
    tap_ok(n_ok == 100 && a.verified == 1,
           "a node: 100 messages admitted, one verification (%llu)",
           (unsigned long long)a.verified);
    tap_ok(sw_admit_check_rec(&a, node.pk, NULL, 0, 1, NOW) == SW_ADMIT_STAGE &&
               sw_admit_check_rec(&a, node.pk, NULL, 0, 2, NOW) == SW_ADMIT_OK,
           "its record for stage 1 is refused, for its stage 2 admitted");
    /* the cache holds 2 keys: a third evicts the least recently used */
    {
        struct sw_identity k3, k4;
        uint8_t c3[SW_CERT_MAX], c4[SW_CERT_MAX];
        size_t l3, l4;
        key(&k3, 5);
        key(&k4, 6);
        if (sw_cert_issue(&owner, run, k3.pk, -1, NOW + 100, SW_CERT_NODE, NULL, 0, c3,
                          sizeof(c3), &l3) < 0 ||
            sw_cert_issue(&owner, run, k4.pk, -1, NOW + 100, SW_CERT_NODE, NULL, 0, c4,
                          sizeof(c4), &l4) < 0)
            return 1;
        why = sw_admit_check(&a, k3.pk, c3, l3, NOW, NULL);
        why |= sw_admit_check(&a, node.pk, NULL, 0, NOW, NULL); /* node is now the newest */
        why |= sw_admit_check(&a, k4.pk, c4, l4, NOW, NULL);    /* evicts k3 */
        tap_ok(why == 0 && a.n == 2 &&
                   sw_admit_check(&a, k3.pk, NULL, 0, NOW, NULL) == SW_ADMIT_NOCERT &&
                   sw_admit_check(&a, node.pk, NULL, 0, NOW, NULL) == SW_ADMIT_OK,
               "the cache keeps at most 2 keys, the least recently used one goes");
        sw_identity_release(&k3);
        sw_identity_release(&k4);
    }
    tap_ok(sw_admit_check(&a, node.pk, NULL, 0, NOW + 101 + SW_CERT_SKEW_S, NULL) ==
               SW_ADMIT_NOCERT, "a cached key whose certificate expired must present a new one");
    if (sw_admit_check(&a, node.pk, cert, len, NOW, NULL) != SW_ADMIT_OK)
        return 1;
    r.seq = 8;
    r.n = 1;
    memcpy(r.keys[0], node.pk, 32);
    tap_ok(sw_admit_set_revoked(&a, &r) && !sw_admit_set_revoked(&a, &r) &&
               sw_admit_check(&a, node.pk, cert, len, NOW, NULL) == SW_ADMIT_REVOKED,
           "revoked: purged from the cache and refused with its certificate; seq 8 taken once");
    /* a revoked delegate: every certificate it signed goes with it */
    if (sw_cert_issue(&owner, run, dlg.pk, -1, NOW + 50, SW_CERT_DELEGATE, NULL, 0, dcert,
                      sizeof(dcert), &dlen) < 0 ||
        sw_cert_issue(&dlg, run, other.pk, -1, NOW + 50, SW_CERT_NODE, dcert, dlen, cert,
                      sizeof(cert), &len) < 0)
        return 1;
    why = sw_admit_check(&a, other.pk, cert, len, NOW, NULL);
    r.seq = 9;
    memcpy(r.keys[0], dlg.pk, 32);
    tap_ok(why == SW_ADMIT_OK && sw_admit_set_revoked(&a, &r) &&
               sw_admit_check(&a, other.pk, NULL, 0, NOW, NULL) == SW_ADMIT_NOCERT &&
               sw_admit_check(&a, other.pk, cert, len, NOW, NULL) == SW_ADMIT_REVOKED,
           "a node admitted by a delegate is cut off when the delegate is revoked");
    a.open = true;
    tap_ok(sw_admit_check(&a, other.pk, NULL, 0, NOW, NULL) == SW_ADMIT_OK,
           "open mode admits every key");
    sw_admit_release(&a);

    sw_identity_release(&owner);
    sw_identity_release(&node);
    sw_identity_release(&other);
    sw_identity_release(&dlg);
    return tap_done();
}
