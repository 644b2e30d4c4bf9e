/*
 * data.c - see data.h for the contract.
 */
#include "sw.h"

#include "rng.h"

#include "data.h"
#include "safetensors.h" /* sw__afile_* */

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEADER_BYTES (SW_DATA_HEADER_INTS * 4)

SW_PRINTF(3, 4) static int
refuse(const char *file, int err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sw_log(SW_LOG_ERROR, "'%s': %s", file, msg);
    return err;
}

/* ---- PRNG: splitmix64 seeds xoshiro256** ---- */


static inline uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t
xoshiro_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, range), range >= 1, without modulo bias. */
static uint64_t
uniform(uint64_t s[4], uint64_t range)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % range, x;

    do
        x = xoshiro_next(s);
    while (x >= limit);
    return x % range;
}

void
sw_data_seed(struct sw_data *d, uint64_t seed)
{
    uint64_t x = seed;

    for (int i = 0; i < 4; i++)
        d->cur.rng[i] = sw_splitmix64(&x);
    d->cur.drawn = 0;
}

void
sw_data_cursor_get(const struct sw_data *d, struct sw_data_cursor *c)
{
    *c = d->cur;
}

void
sw_data_cursor_set(struct sw_data *d, const struct sw_data_cursor *c)
{
    d->cur = *c;
}

/* ---- loading ---- */

struct loader {
    uint16_t *tok;
    size_t n, cap;
    int vocab;
    int nfiles;
};

static int
reserve(struct loader *L, const char *file, uint64_t more)
{
    size_t want;
    uint16_t *p;

    if (more > SIZE_MAX / 2 - L->n)
        return refuse(file, -SW_ENOMEM, "too large");
    if (L->n + more <= L->cap)
        return 0;
    want = SW_MAX(L->n + (size_t)more, L->cap + L->cap / 2);
    p = sw_realloc(L->tok, want * sizeof(*p));
    if (!p)
        return refuse(file, -SW_ENOMEM, "out of memory for %zu tokens", want);
    L->tok = p;
    L->cap = want;
    return 0;
}

static int
pread_all(int fd, void *buf, size_t len, uint64_t off, size_t *got)
{
    uint8_t *p = buf;

    *got = 0;
    while (*got < len) {
        ssize_t r = pread(fd, p + *got, SW_MIN(len - *got, (size_t)1 << 30),
                          (off_t)(off + *got));

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return 0;
}

static int
load_tokens(struct loader *L, const char *file, int fd, uint64_t size)
{
    int32_t h[SW_DATA_HEADER_INTS];
    uint64_t count, payload;
    size_t got;
    int err;

    if (size < HEADER_BYTES)
        return refuse(file, -SW_EFORMAT, "truncated header: %llu bytes, a token file starts "
                      "with %d", (unsigned long long)size, HEADER_BYTES);
    if ((err = pread_all(fd, h, HEADER_BYTES, 0, &got)) < 0)
        return refuse(file, err, "cannot read: %s", sw_strerror(err));
    if (got != HEADER_BYTES)
        return refuse(file, -SW_EFORMAT, "truncated header (the file shrank)");
    if (h[0] != SW_DATA_MAGIC)
        return refuse(file, -SW_EFORMAT, "wrong magic %d (expected %d): not an llm.c token file",
                      h[0], SW_DATA_MAGIC);
    if (h[1] != SW_DATA_VERSION)
        return refuse(file, -SW_EFORMAT, "version %d is not supported (only %d: uint16 tokens)",
                      h[1], SW_DATA_VERSION);
    if (h[2] <= 0)
        return refuse(file, -SW_EFORMAT, "token count %d: no tokens", h[2]);
    count = (uint64_t)h[2];
    payload = size - HEADER_BYTES;
    if (count * 2 > payload)
        return refuse(file, -SW_EFORMAT, "token count %llu is beyond the end of the file "
                      "(it holds %llu tokens)", (unsigned long long)count,
                      (unsigned long long)(payload / 2));
    if (count * 2 < payload)
        return refuse(file, -SW_EFORMAT, "%llu trailing bytes after the %llu tokens",
                      (unsigned long long)(payload - count * 2), (unsigned long long)count);
    if ((err = reserve(L, file, count)) < 0)
        return err;
    /* little-endian host (configure checks): the payload is the array */
    if ((err = pread_all(fd, L->tok + L->n, (size_t)count * 2, HEADER_BYTES, &got)) < 0)
        return refuse(file, err, "cannot read: %s", sw_strerror(err));
    if (got != count * 2)
        return refuse(file, -SW_EFORMAT, "truncated (the file shrank)");
    for (size_t i = 0; i < count; i++)
        if (L->tok[L->n + i] >= L->vocab)
            return refuse(file, -SW_ERANGE, "token %u at index %zu is not below the vocabulary "
                          "size %d", L->tok[L->n + i], i, L->vocab);
    L->n += count;
    return 0;
}

static int
load_text(struct loader *L, const char *file, int fd, uint64_t size)
{
    uint8_t buf[65536];
    uint64_t off = 0;
    int err;

    if ((err = reserve(L, file, size)) < 0)
        return err;
    for (;;) {
        ssize_t r = pread(fd, buf, sizeof(buf), (off_t)off);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return refuse(file, -errno, "cannot read: %s", strerror(errno));
        if (r == 0)
            break;
        if ((err = reserve(L, file, (uint64_t)r)) < 0) /* the file grew */
            return err;
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] >= L->vocab)
                return refuse(file, -SW_ERANGE, "byte 0x%02x at offset %llu is not below the "
                              "vocabulary size %d", buf[i], (unsigned long long)(off + i),
                              L->vocab);
            L->tok[L->n++] = buf[i];
        }
        off += (uint64_t)r;
    }
    return 0;
}

static bool
ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);

    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int load_path(struct loader *L, const char *path, bool top);

/* A folder named directly (top) must hold data; one inside it may be empty. */
static int
load_dir(struct loader *L, const char *path, bool top)
{
    char **names = NULL, **p;
    size_t n = 0, cap = 0;
    struct dirent *e;
    size_t before = L->n;
    int err = 0;
    DIR *dir;

    dir = opendir(path);
    if (!dir)
        return refuse(path, -errno, "cannot open folder: %s", strerror(errno));
    while ((errno = 0, e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            p = sw_realloc(names, cap * sizeof(*names));
            if (!p) {
                err = -SW_ENOMEM;
                goto out;
            }
            names = p;
        }
        names[n] = sw_malloc(strlen(path) + strlen(e->d_name) + 2);
        if (!names[n]) {
            err = -SW_ENOMEM;
            goto out;
        }
        sprintf(names[n++], "%s/%s", path, e->d_name);
    }
    if (errno) {
        err = refuse(path, -errno, "cannot read folder: %s", strerror(errno));
        goto out;
    }
    if (n)
        qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n && err == 0; i++)
        err = load_path(L, names[i], false);
    if (err == 0 && top && L->n == before)
        err = refuse(path, -SW_EFORMAT, "no data (empty folder)");
out:
    if (err == -SW_ENOMEM)
        refuse(path, err, "out of memory");
    for (size_t i = 0; i < n; i++)
        sw_free(names[i]);
    sw_free(names);
    closedir(dir);
    return err;
}

static int
load_path(struct loader *L, const char *path, bool top)
{
    struct stat sb;
    int32_t magic = 0;
    size_t got;
    int fd, err;

    if ((top ? stat(path, &sb) : lstat(path, &sb)) < 0)
        return refuse(path, -errno, "cannot open: %s", strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return load_dir(L, path, top);
    if (!S_ISREG(sb.st_mode)) {
        if (top)
            return refuse(path, -SW_EFORMAT, "not a regular file or folder");
        return 0; /* links, sockets, ... inside a folder */
    }
    if (sb.st_size == 0) {
        if (top)
            return refuse(path, -SW_EFORMAT, "empty file");
        return 0;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return refuse(path, -errno, "cannot open: %s", strerror(errno));
    if ((err = pread_all(fd, &magic, sizeof(magic), 0, &got)) < 0) {
        err = refuse(path, err, "cannot read: %s", sw_strerror(err));
        goto out;
    }
    if (ends_with(path, ".bin") || (got == 4 && magic == SW_DATA_MAGIC))
        err = load_tokens(L, path, fd, (uint64_t)sb.st_size);
    else
        err = load_text(L, path, fd, (uint64_t)sb.st_size);
    if (err == 0)
        L->nfiles++;
out:
    close(fd);
    return err;
}

static int
finish(struct sw_data *d, struct loader *L, const char *what, double val_frac, uint64_t seed)
{
    memset(d, 0, sizeof(*d));
    if (L->n < 2) {
        sw_free(L->tok);
        return refuse(what, -SW_EFORMAT, "%zu tokens: at least 2 are needed", L->n);
    }
    d->tokens = L->tok;
    d->n = L->n;
    d->n_train = L->n - (size_t)((double)L->n * val_frac);
    d->vocab = L->vocab;
    d->nfiles = L->nfiles;
    sw_data_seed(d, seed);
    return 0;
}

static int
check_args(const char *what, int vocab, double val_frac)
{
    if (vocab < 1 || vocab > 65536)
        return refuse(what, -SW_EINVAL, "vocabulary size %d is out of range [1, 65536]", vocab);
    if (!(val_frac >= 0 && val_frac < 1))
        return refuse(what, -SW_EINVAL, "validation fraction %g is out of range [0, 1)",
                      val_frac);
    return 0;
}

int
sw_data_open(struct sw_data *d, const char *paths, int vocab, double val_frac, uint64_t seed)
{
    struct loader L = {.vocab = vocab};
    struct stat sb;
    char *list = NULL, *save = NULL, *tok;
    int err;

    memset(d, 0, sizeof(*d));
    if ((err = check_args(paths, vocab, val_frac)) < 0)
        return err;
    if (stat(paths, &sb) == 0) {
        err = load_path(&L, paths, true);
    } else {
        list = sw_strdup(paths);
        if (!list)
            return refuse(paths, -SW_ENOMEM, "out of memory");
        err = 0;
        for (tok = strtok_r(list, ",", &save); tok && err == 0; tok = strtok_r(NULL, ",", &save))
            err = load_path(&L, tok, true);
        sw_free(list);
    }
    if (err < 0) {
        sw_free(L.tok);
        return err;
    }
    return finish(d, &L, paths, val_frac, seed);
}

int
sw_data_init_tokens(struct sw_data *d, const uint16_t *tokens, size_t n, int vocab,
                    double val_frac, uint64_t seed)
{
    struct loader L = {.vocab = vocab};
    int err;

    memset(d, 0, sizeof(*d));
    if ((err = check_args("<memory>", vocab, val_frac)) < 0)
        return err;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] >= vocab)
            return refuse("<memory>", -SW_ERANGE, "token %u at index %zu is not below the "
                          "vocabulary size %d", tokens[i], i, vocab);
    if ((err = reserve(&L, "<memory>", n)) < 0)
        return err;
    if (n)
        memcpy(L.tok, tokens, n * sizeof(*tokens));
    L.n = n;
    return finish(d, &L, "<memory>", val_frac, seed);
}

void
sw_data_release(struct sw_data *d)
{
    sw_free(d->tokens);
    memset(d, 0, sizeof(*d));
}

/* ---- windows ---- */

static const uint16_t *
split_base(const struct sw_data *d, enum sw_data_split split, size_t *len)
{
    switch (split) {
    case SW_DATA_TRAIN:
        *len = d->n_train;
        return d->tokens;
    case SW_DATA_VAL:
        *len = d->n - d->n_train;
        return d->tokens + d->n_train;
    default:
        *len = d->n;
        return d->tokens;
    }
}

size_t
sw_data_split_len(const struct sw_data *d, enum sw_data_split split)
{
    size_t len;

    split_base(d, split, &len);
    return len;
}

size_t
sw_data_nwindows(const struct sw_data *d, enum sw_data_split split, int T)
{
    size_t len = sw_data_split_len(d, split);

    return T > 0 && len >= 1 ? (len - 1) / (size_t)T : 0;
}

static void
copy_window(int32_t *inputs, int32_t *targets, const uint16_t *src, int T)
{
    for (int t = 0; t < T; t++) {
        inputs[t] = src[t];
        targets[t] = src[t + 1];
    }
}

static const char *const split_names[] = {"training", "validation", "whole"};

int
sw_data_next_batch(struct sw_data *d, int32_t *inputs, int32_t *targets, int B, int T)
{
    struct sw_data_cursor c = d->cur;

    SW_ASSERT(B > 0 && T > 0);
    if (d->n_train < (size_t)T + 1) {
        sw_log(SW_LOG_ERROR, "training split has %zu tokens, a window of %d needs %d",
               d->n_train, T, T + 1);
        return -SW_ERANGE;
    }
    for (int b = 0; b < B; b++) {
        size_t start = (size_t)uniform(c.rng, (uint64_t)(d->n_train - (size_t)T));

        copy_window(inputs + (size_t)b * T, targets + (size_t)b * T, d->tokens + start, T);
        c.drawn++;
    }
    d->cur = c;
    return 0;
}

int
sw_data_window(const struct sw_data *d, enum sw_data_split split, size_t first, int32_t *inputs,
               int32_t *targets, int B, int T)
{
    size_t len, nw;
    const uint16_t *base = split_base(d, split, &len);

    SW_ASSERT(B > 0 && T > 0 && (unsigned)split <= SW_DATA_ALL);
    nw = sw_data_nwindows(d, split, T);
    if (first > nw || (size_t)B > nw - first) {
        sw_log(SW_LOG_ERROR, "%s split has %zu tokens: %zu windows of %d, windows [%zu, %zu) "
               "asked", split_names[split], len, nw, T, first, first + (size_t)B);
        return -SW_ERANGE;
    }
    for (int b = 0; b < B; b++)
        copy_window(inputs + (size_t)b * T, targets + (size_t)b * T,
                    base + (first + (size_t)b) * (size_t)T, T);
    return 0;
}

int
sw_data_val_batch(const struct sw_data *d, size_t idx, int32_t *inputs, int32_t *targets, int B,
                  int T)
{
    SW_ASSERT(B > 0);
    if (idx > SIZE_MAX / (size_t)B) {
        sw_log(SW_LOG_ERROR, "validation batch %zu does not exist", idx);
        return -SW_ERANGE;
    }
    return sw_data_window(d, SW_DATA_VAL, idx * (size_t)B, inputs, targets, B, T);
}

size_t
sw_data_val_nbatches(const struct sw_data *d, int B, int T)
{
    return B > 0 ? sw_data_nwindows(d, SW_DATA_VAL, T) / (size_t)B : 0;
}

int
sw_data_write_tokens(const char *path, const uint16_t *tokens, size_t n)
{
    int32_t h[SW_DATA_HEADER_INTS] = {SW_DATA_MAGIC, SW_DATA_VERSION, 0};
    struct sw__afile f;
    int err;

    if (n > INT32_MAX)
        return refuse(path, -SW_EINVAL, "%zu tokens do not fit an llm.c token file", n);
    h[2] = (int32_t)n;
    if ((err = sw__afile_open(&f, path)) < 0)
        return err;
    if ((err = sw__afile_write(&f, h, sizeof(h))) < 0 ||
        (err = sw__afile_write(&f, tokens, n * sizeof(*tokens))) < 0) {
        sw__afile_abort(&f);
        return err;
    }
    return sw__afile_commit(&f);
}
