/*
 * test_identity.c - node keys: created 0600 on first use, reloaded equal,
 * refused when group/others may read them, signatures verify; hex of bytes.
 */
#include "sw.h"

#include "hex.h"
#include "identity.h"
#include "tap.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void
rm_rf(const char *dir)
{
    char cmd[PATH_MAX + 16];

    if (dir[0] && strncmp(dir, "/tmp/", 5) == 0) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            tap_diag("cannot remove %s", dir);
    }
}

int
main(void)
{
    struct sw_identity a, b, c;
    char dir[1024], path[PATH_MAX];
    uint8_t sig[SW_IDENTITY_SIG_BYTES], id[SW_IDENTITY_ID_BYTES];
    const char msg[] = "hello swarm";
    struct stat st;
    int err;

    tap_plan(19);
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sw-test-identity-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        tap_ok(0, "mkdtemp");
        return tap_done();
    }
    snprintf(dir, sizeof(dir), "%s/home/sub", tmpdir);
    snprintf(path, sizeof(path), "%s/%s", dir, SW_IDENTITY_FILE);

    err = sw_identity_load_or_create(&a, dir);
    tap_ok(err == 0, "creates a key in a fresh directory (%s)", sw_strerror(err));
    memset(&st, 0, sizeof(st));
    stat(path, &st);
    tap_ok((st.st_mode & 0777) == 0600, "key file has mode 0600 (%o)", (unsigned)(st.st_mode & 0777));
    tap_ok(st.st_size == SW_IDENTITY_SK_BYTES, "key file holds %d bytes", SW_IDENTITY_SK_BYTES);
    tap_ok(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700, "key directory has mode 0700");
    sw_identity_node_id(id, a.pk);
    tap_ok(memcmp(id, a.id, sizeof(id)) == 0, "node id is BLAKE2b-256 of the public key");

    err = sw_identity_load_or_create(&b, dir);
    tap_ok(err == 0 && memcmp(a.pk, b.pk, sizeof(a.pk)) == 0, "second load gives the same key");
    tap_ok(sw_identity_sign(&a, sig, msg, sizeof(msg)) == 0, "sign");
    tap_ok(sw_identity_verify(b.pk, sig, msg, sizeof(msg)), "reloaded public key verifies");
    sig[3] ^= 1;
    tap_ok(!sw_identity_verify(b.pk, sig, msg, sizeof(msg)), "flipped signature bit is refused");
    sw_identity_release(&b);
    tap_ok(b.sk == NULL, "release clears the secret key pointer");

    /* a key readable by others is refused and left alone */
    chmod(path, 0644);
    err = sw_identity_load_or_create(&c, dir);
    tap_ok(err == -SW_EPERM, "mode 0644 key is refused (%s)", sw_strerror(err));
    tap_ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644, "refused key is not rewritten");
    chmod(path, 0640);
    err = sw_identity_load_or_create(&c, dir);
    tap_ok(err == -SW_EPERM, "mode 0640 key is refused too");
    chmod(path, 0600);

    /* a truncated key is refused, not replaced */
    if (truncate(path, 10) == 0) {
        err = sw_identity_load_or_create(&c, dir);
        tap_ok(err == -SW_EFORMAT, "truncated key is refused (%s)", sw_strerror(err));
    } else {
        tap_ok(0, "truncate");
    }

    /* $SWARM_HOME is the default directory */
    {
        char home[512], got[PATH_MAX];

        snprintf(home, sizeof(home), "%s/swhome", tmpdir);
        setenv("SWARM_HOME", home, 1);
        tap_ok(sw_identity_default_dir(got, sizeof(got)) == 0 && strcmp(got, home) == 0,
               "SWARM_HOME is the default key directory");
        err = sw_identity_load_or_create(&c, NULL);
        snprintf(path, sizeof(path), "%s/%s", home, SW_IDENTITY_FILE);
        tap_ok(err == 0 && stat(path, &st) == 0 && memcmp(c.pk, a.pk, 32) != 0,
               "NULL dir creates a new key under SWARM_HOME");
        sw_identity_release(&c);
    }

    {
        const uint8_t bytes[] = {0x00, 0x0f, 0xa5, 0xff, 0x10};
        char hex[2 * sizeof(bytes) + 1], hex2[sizeof(hex)];

        memset(hex, 'x', sizeof(hex));
        tap_ok(sw_hex_encode(hex, bytes, sizeof(bytes)) == hex && strcmp(hex, "000fa5ff10") == 0,
               "sw_hex_encode: two lowercase digits a byte, NUL-terminated (%s)", hex);
        tap_ok(strcmp(sw_identity_hex(hex2, bytes, 3), "000fa5") == 0 &&
                   strcmp(sw_hex_encode(hex, bytes, 0), "") == 0,
               "sw_identity_hex is sw_hex_encode; 0 bytes give \"\"");
        uint8_t back[sizeof(bytes)];
        tap_ok(sw_hex_decode(back, sizeof(back), "000FA5ff10") == 0 &&
                   memcmp(back, bytes, sizeof(bytes)) == 0 &&
                   sw_hex_decode(back, 2, "000f ") == 0 && sw_hex_decode(back, 2, "000fa") < 0 &&
                   sw_hex_decode(back, 2, "0g0f") < 0,
               "sw_hex_decode: either case, end or space after, anything else refused");
    }

    sw_identity_release(&a);
    rm_rf(tmpdir);
    return tap_done();
}
