/*
 * identity.c - Ed25519 node keys on disk and in sodium_malloc memory.
 * Contracts are in identity.h.
 */
#include "sw.h"

#include "hex.h"
#include "identity.h"

#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
sw_identity_global_init(void)
{
    if (sodium_init() < 0) {
        sw_log(SW_LOG_ERROR, "cannot initialise libsodium");
        return -SW_EIO;
    }
    return 0;
}

int
sw_identity_default_dir(char *buf, size_t len)
{
    const char *home = getenv("SWARM_HOME");
    int n;

    if (home && *home)
        n = snprintf(buf, len, "%s", home);
    else if ((home = getenv("HOME")) && *home)
        n = snprintf(buf, len, "%s/.local/share/swarm", home);
    else
        return -SW_ENOENT;
    if (n < 0 || (size_t)n >= len)
        return -SW_ERANGE;
    return 0;
}

void
sw_identity_node_id(uint8_t id[SW_IDENTITY_ID_BYTES], const uint8_t pk[SW_IDENTITY_PK_BYTES])
{
    crypto_generichash(id, SW_IDENTITY_ID_BYTES, pk, SW_IDENTITY_PK_BYTES, NULL, 0);
}

char *
sw_identity_hex(char *out, const uint8_t *bytes, size_t n)
{
    return sw_hex_encode(out, bytes, n);
}

static int
identity_alloc(struct sw_identity *id)
{
    int err;

    memset(id, 0, sizeof(*id));
    if ((err = sw_identity_global_init()) < 0)
        return err;
    id->sk = sodium_malloc(SW_IDENTITY_SK_BYTES);
    if (!id->sk)
        return -SW_ENOMEM;
    return 0;
}

void
sw_identity_release(struct sw_identity *id)
{
    if (id->sk) {
        sodium_memzero(id->sk, SW_IDENTITY_SK_BYTES);
        sodium_free(id->sk);
    }
    sodium_memzero(id, sizeof(*id));
}

int
sw_identity_from_seed(struct sw_identity *id, const uint8_t seed[32])
{
    int err;

    if ((err = identity_alloc(id)) < 0)
        return err;
    crypto_sign_seed_keypair(id->pk, id->sk, seed);
    sw_identity_node_id(id->id, id->pk);
    return 0;
}

int
sw_identity_generate(struct sw_identity *id)
{
    int err;

    if ((err = identity_alloc(id)) < 0)
        return err;
    crypto_sign_keypair(id->pk, id->sk);
    sw_identity_node_id(id->id, id->pk);
    return 0;
}

int
sw_identity_sign(const struct sw_identity *id, uint8_t sig[SW_IDENTITY_SIG_BYTES],
                 const void *msg, size_t len)
{
    if (!id->sk)
        return -SW_EINVAL;
    crypto_sign_detached(sig, NULL, msg, len, id->sk);
    return 0;
}

bool
sw_identity_verify(const uint8_t pk[SW_IDENTITY_PK_BYTES],
                   const uint8_t sig[SW_IDENTITY_SIG_BYTES], const void *msg, size_t len)
{
    return crypto_sign_verify_detached(sig, msg, len, pk) == 0;
}

/* mkdir -p with mode 0700 for the parts it creates. */
static int
mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof(path))
        return -SW_ERANGE;
    memcpy(path, dir, n + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int
write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int
fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) != 0)
        err = -errno;
    close(fd);
    return err;
}

/*
 * Create the key file: write a temporary file, fsync it, then link(2) it to
 * the final name, which fails with EEXIST instead of replacing a key another
 * process created meanwhile.  Returns 0, -SW_EEXIST (lost the race: load the
 * winner's key) or -errno.
 */
static int
key_create(const char *dir, const char *path, const struct sw_identity *id)
{
    char tmp[PATH_MAX];
    int fd, err, n;

    n = snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%ld", dir, SW_IDENTITY_FILE, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -SW_ERANGE;
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot create '%s': %s", tmp, sw_strerror(err));
        return err;
    }
    /* umask may only remove bits; make the mode exact anyway */
    if (fchmod(fd, 0600) != 0 || (err = write_all(fd, id->sk, SW_IDENTITY_SK_BYTES)) < 0 ||
        fsync(fd) != 0) {
        err = errno ? -errno : -SW_EIO;
        sw_log(SW_LOG_ERROR, "cannot write '%s': %s", tmp, sw_strerror(err));
        close(fd);
        goto out_unlink;
    }
    if (close(fd) != 0) {
        err = -errno;
        goto out_unlink;
    }
    if (link(tmp, path) != 0) {
        err = -errno;
        if (err != -SW_EEXIST)
            sw_log(SW_LOG_ERROR, "cannot create '%s': %s", path, sw_strerror(err));
        goto out_unlink;
    }
    err = fsync_dir(dir);
out_unlink:
    unlink(tmp);
    return err;
}

/* Load an existing key file; -SW_ENOENT when there is none. */
static int
key_load(const char *path, struct sw_identity *id)
{
    uint8_t pk[SW_IDENTITY_PK_BYTES];
    struct stat st;
    ssize_t n;
    int fd, err;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        err = -errno;
        if (err != -SW_ENOENT)
            sw_log(SW_LOG_ERROR, "cannot open key file '%s': %s", path, sw_strerror(err));
        return err;
    }
    if (fstat(fd, &st) != 0) {
        err = -errno;
        goto out_close;
    }
    if (!S_ISREG(st.st_mode)) {
        sw_log(SW_LOG_ERROR, "key file '%s' is not a regular file", path);
        err = -SW_EFORMAT;
        goto out_close;
    }
    if (st.st_mode & 077) {
        sw_log(SW_LOG_ERROR,
               "key file '%s' has mode %04o: group or others may read it; refusing it "
               "(run 'chmod 600 %s' if it was not exposed, else delete it)",
               path, (unsigned)(st.st_mode & 07777), path);
        err = -SW_EPERM;
        goto out_close;
    }
    if (st.st_size != SW_IDENTITY_SK_BYTES) {
        sw_log(SW_LOG_ERROR, "key file '%s' has %lld bytes, expected %d", path,
               (long long)st.st_size, SW_IDENTITY_SK_BYTES);
        err = -SW_EFORMAT;
        goto out_close;
    }
    do {
        n = read(fd, id->sk, SW_IDENTITY_SK_BYTES);
    } while (n < 0 && errno == EINTR);
    if (n != SW_IDENTITY_SK_BYTES) {
        err = n < 0 ? -errno : -SW_EFORMAT;
        sw_log(SW_LOG_ERROR, "cannot read key file '%s': %s", path, sw_strerror(err));
        goto out_close;
    }
    /* the public half must be the one the seed gives */
    crypto_sign_ed25519_sk_to_pk(pk, id->sk);
    {
        uint8_t seed[32], pk2[SW_IDENTITY_PK_BYTES];
        uint8_t *sk2 = sodium_malloc(SW_IDENTITY_SK_BYTES);

        if (!sk2) {
            err = -SW_ENOMEM;
            goto out_close;
        }
        crypto_sign_ed25519_sk_to_seed(seed, id->sk);
        crypto_sign_seed_keypair(pk2, sk2, seed);
        sodium_memzero(seed, sizeof(seed));
        sodium_free(sk2);
        if (sodium_memcmp(pk, pk2, sizeof(pk)) != 0) {
            sw_log(SW_LOG_ERROR, "key file '%s' is corrupt: public key does not match seed",
                   path);
            err = -SW_EFORMAT;
            goto out_close;
        }
    }
    memcpy(id->pk, pk, sizeof(pk));
    sw_identity_node_id(id->id, id->pk);
    err = 0;
out_close:
    close(fd);
    return err;
}

int
sw_identity_load_or_create(struct sw_identity *id, const char *dir)
{
    char dbuf[PATH_MAX], path[PATH_MAX];
    int err, n;

    if (!dir) {
        if ((err = sw_identity_default_dir(dbuf, sizeof(dbuf))) < 0) {
            sw_log(SW_LOG_ERROR, "no key directory: set SWARM_HOME or HOME");
            return err;
        }
        dir = dbuf;
    }
    n = snprintf(path, sizeof(path), "%s/%s", dir, SW_IDENTITY_FILE);
    if (n < 0 || (size_t)n >= sizeof(path))
        return -SW_ERANGE;
    if ((err = identity_alloc(id)) < 0)
        return err;
    for (int attempt = 0; attempt < 2; attempt++) {
        err = key_load(path, id);
        if (err != -SW_ENOENT)
            break;
        if ((err = mkdir_p(dir)) < 0) {
            sw_log(SW_LOG_ERROR, "cannot create key directory '%s': %s", dir, sw_strerror(err));
            break;
        }
        crypto_sign_keypair(id->pk, id->sk);
        err = key_create(dir, path, id);
        if (err == 0) {
            sw_identity_node_id(id->id, id->pk);
            sw_log(SW_LOG_INFO, "created node key '%s'", path);
            break;
        }
        if (err != -SW_EEXIST)
            break;
        /* another process created it first: load theirs */
    }
    if (err < 0)
        sw_identity_release(id);
    return err;
}
