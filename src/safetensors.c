/*
 * safetensors.c - see safetensors.h for the contract.
 */
#include "sw.h"

#include "safetensors.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- dtypes ---- */

static const struct {
    const char *name;
    size_t size;
} dtypes[SW_DTYPE_NTYPES] = {
    [SW_DTYPE_F32] = {"F32", 4},       [SW_DTYPE_F16] = {"F16", 2},
    [SW_DTYPE_BF16] = {"BF16", 2},     [SW_DTYPE_F64] = {"F64", 8},
    [SW_DTYPE_I64] = {"I64", 8},       [SW_DTYPE_U64] = {"U64", 8},
    [SW_DTYPE_I32] = {"I32", 4},       [SW_DTYPE_U32] = {"U32", 4},
    [SW_DTYPE_I16] = {"I16", 2},       [SW_DTYPE_U16] = {"U16", 2},
    [SW_DTYPE_I8] = {"I8", 1},         [SW_DTYPE_U8] = {"U8", 1},
    [SW_DTYPE_BOOL] = {"BOOL", 1},     [SW_DTYPE_F8_E4M3] = {"F8_E4M3", 1},
    [SW_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
};

const char *
sw_dtype_name(enum sw_dtype t)
{
    return (unsigned)t < SW_DTYPE_NTYPES ? dtypes[t].name : "?";
}

size_t
sw_dtype_size(enum sw_dtype t)
{
    return (unsigned)t < SW_DTYPE_NTYPES ? dtypes[t].size : 0;
}

int
sw_dtype_parse(const char *s)
{
    for (int i = 0; i < SW_DTYPE_NTYPES; i++)
        if (strcmp(s, dtypes[i].name) == 0)
            return i;
    return -1;
}

bool
sw_dtype_is_float(enum sw_dtype t)
{
    return t == SW_DTYPE_F32 || t == SW_DTYPE_F16 || t == SW_DTYPE_BF16;
}

static float
bits_to_f32(uint32_t u)
{
    float f;

    memcpy(&f, &u, sizeof(f));
    return f;
}

float
sw_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;

    if (exp == 0x1f) /* inf, or NaN with its payload (and quiet bit) kept */
        return bits_to_f32(sign | 0x7f800000u | (mant << 13));
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return bits_to_f32(sign | ((exp + 112) << 23) | (mant << 13));
    if (mant == 0)
        return bits_to_f32(sign);
    /* subnormal mant * 2^-24: normalise, every one is a normal float */
    exp = 113;
    while (!(mant & 0x400)) {
        mant <<= 1;
        exp--;
    }
    return bits_to_f32(sign | (exp << 23) | ((mant & 0x3ff) << 13));
}

float
sw_bf16_to_f32(uint16_t h)
{
    return bits_to_f32((uint32_t)h << 16);
}

/* ---- messages ---- */

/* Copy a hostile string into out[outlen] (truncated with "..."), unprintable bytes as '?'. */
static const char *
printable(char *out, size_t outlen, const char *s)
{
    size_t i, n = 0, lim = outlen - 4;

    for (i = 0; s[i] && n < lim; i++)
        out[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i]) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
    return out;
}

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

static void
format_shape(char *out, size_t len, const int64_t *shape, int ndim)
{
    size_t n = 0;

    n += (size_t)snprintf(out, len, "[");
    for (int i = 0; i < ndim && n < len; i++)
        n += (size_t)snprintf(out + n, len - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < len)
        snprintf(out + n, len - n, "]");
}

/* ---- reader ---- */

static int
read_at(struct sw_safetensors *st, uint64_t off, void *dst, uint64_t len)
{
    uint8_t *p = dst;

    if (off > st->file_size || len > st->file_size - off)
        return refuse(st->name, -SW_EFORMAT, "read of %llu bytes at %llu is past the end",
                      (unsigned long long)len, (unsigned long long)off);
    if (st->fd >= 0) {
        while (len > 0) {
            size_t chunk = len > ((size_t)1 << 30) ? (size_t)1 << 30 : (size_t)len;
            ssize_t r = pread(st->fd, p, chunk, (off_t)off);

            if (r < 0) {
                if (errno == EINTR)
                    continue;
                return refuse(st->name, -errno, "cannot read: %s", strerror(errno));
            }
            if (r == 0)
                return refuse(st->name, -SW_EIO, "unexpected end of file at byte %llu "
                              "(truncated while open?)", (unsigned long long)off);
            p += r;
            off += (uint64_t)r;
            len -= (uint64_t)r;
        }
        return 0;
    }
    memcpy(p, st->mem + off, (size_t)len);
    return 0;
}

struct parsed {
    const char *key;
    json_t *val;
};

static int
cmp_offset(const void *a, const void *b)
{
    const struct sw_st_tensor *x = a, *y = b;

    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

static int
cmp_name(const void *a, const void *b)
{
    const struct sw_st_tensor *const *x = a, *const *y = b;

    return strcmp((*x)->name, (*y)->name);
}

/* Checks one tensor entry and fills t (name not set).  Offsets are relative. */
static int
parse_entry(struct sw_safetensors *st, const char *key, json_t *val, struct sw_st_tensor *t,
            unsigned flags)
{
    const char *file = st->name;
    char k[80], sh[256];
    json_t *dtype, *shape, *offs, *x;
    const char *ek;
    size_t i, dsize;
    int64_t begin, end;
    uint64_t numel = 1;
    bool zero = false;
    int dt;

    printable(k, sizeof(k), key);
    if (!json_is_object(val))
        return refuse(file, -SW_EFORMAT, "tensor '%s': entry is not an object", k);
    dtype = json_object_get(val, "dtype");
    shape = json_object_get(val, "shape");
    offs = json_object_get(val, "data_offsets");
    if (!dtype)
        return refuse(file, -SW_EFORMAT, "tensor '%s': no dtype", k);
    if (!shape)
        return refuse(file, -SW_EFORMAT, "tensor '%s': no shape", k);
    if (!offs)
        return refuse(file, -SW_EFORMAT, "tensor '%s': no data_offsets", k);
    json_object_foreach(val, ek, x) {
        if (strcmp(ek, "dtype") && strcmp(ek, "shape") && strcmp(ek, "data_offsets")) {
            char e[80];
            return refuse(file, -SW_EFORMAT, "tensor '%s': unknown field '%s'", k,
                          printable(e, sizeof(e), ek));
        }
    }

    if (!json_is_string(dtype))
        return refuse(file, -SW_EFORMAT, "tensor '%s': dtype is not a string", k);
    dt = sw_dtype_parse(json_string_value(dtype));
    if (dt < 0) {
        char d[80];
        return refuse(file, -SW_EDTYPE, "tensor '%s': unknown dtype '%s'", k,
                      printable(d, sizeof(d), json_string_value(dtype)));
    }
    if ((flags & SW_ST_FLOAT_ONLY) && !sw_dtype_is_float(dt))
        return refuse(file, -SW_EDTYPE, "tensor '%s': dtype %s is not supported (only F32, "
                      "F16, BF16)", k, sw_dtype_name(dt));
    t->dtype = dt;
    dsize = sw_dtype_size(dt);

    if (!json_is_array(shape))
        return refuse(file, -SW_EFORMAT, "tensor '%s': shape is not an array", k);
    if (json_array_size(shape) > SW_ST_MAX_DIMS)
        return refuse(file, -SW_ESHAPE, "tensor '%s': shape has %zu dims, at most %d supported",
                      k, json_array_size(shape), SW_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    json_array_foreach(shape, i, x) {
        if (!json_is_integer(x))
            return refuse(file, -SW_EFORMAT, "tensor '%s': shape[%zu] is not an integer", k, i);
        if (json_integer_value(x) < 0)
            return refuse(file, -SW_ESHAPE, "tensor '%s': shape[%zu] = %lld is negative", k, i,
                          (long long)json_integer_value(x));
        t->shape[i] = json_integer_value(x);
        if (t->shape[i] == 0)
            zero = true;
    }
    format_shape(sh, sizeof(sh), t->shape, t->ndim);
    if (zero) {
        numel = 0;
    } else {
        for (int d = 0; d < t->ndim; d++) {
            uint64_t v = (uint64_t)t->shape[d];
            if (numel > UINT64_MAX / v)
                return refuse(file, -SW_ESHAPE, "tensor '%s': shape %s overflows", k, sh);
            numel *= v;
        }
    }
    if (numel > UINT64_MAX / dsize || numel * dsize > (uint64_t)INT64_MAX)
        return refuse(file, -SW_ESHAPE, "tensor '%s': shape %s x %s overflows", k, sh,
                      sw_dtype_name(dt));
    t->numel = numel;
    t->nbytes = numel * dsize;

    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !json_is_integer(json_array_get(offs, 0)) || !json_is_integer(json_array_get(offs, 1)))
        return refuse(file, -SW_EFORMAT, "tensor '%s': data_offsets is not [begin, end] integers",
                      k);
    begin = json_integer_value(json_array_get(offs, 0));
    end = json_integer_value(json_array_get(offs, 1));
    if (begin < 0 || end < begin)
        return refuse(file, -SW_EFORMAT, "tensor '%s': data_offsets [%lld, %lld) are invalid", k,
                      (long long)begin, (long long)end);
    if ((uint64_t)end > st->data_size)
        return refuse(file, -SW_EFORMAT, "tensor '%s': data_offsets [%lld, %lld) go past the end "
                      "of the data (%llu bytes)", k, (long long)begin, (long long)end,
                      (unsigned long long)st->data_size);
    if ((uint64_t)(end - begin) != t->nbytes)
        return refuse(file, -SW_ESHAPE, "tensor '%s': data_offsets [%lld, %lld) do not match "
                      "shape %s x %s = %llu bytes", k, (long long)begin, (long long)end, sh,
                      sw_dtype_name(dt), (unsigned long long)t->nbytes);
    t->offset = (uint64_t)begin;
    return 0;
}

static int
parse_header(struct sw_safetensors *st, const char *hdr, size_t len, unsigned flags)
{
    const char *file = st->name;
    json_t *root, *val, *metadata = NULL;
    json_error_t jerr;
    const char *key;
    size_t nstr = 0, nt = 0, nm = 0;
    char *s;
    int err;

    root = json_loadb(hdr, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char e[200];
        return refuse(file, -SW_EFORMAT, "header is not valid JSON: %s (line %d, column %d)",
                      printable(e, sizeof(e), jerr.text), jerr.line, jerr.column);
    }
    if (!json_is_object(root)) {
        err = refuse(file, -SW_EFORMAT, "header is not a JSON object");
        goto out_root;
    }
    json_object_foreach(root, key, val) {
        size_t kl = strlen(key);

        if (strcmp(key, "__metadata__") == 0) {
            const char *mk;
            json_t *mv;

            if (json_is_null(val))
                continue;
            if (!json_is_object(val)) {
                err = refuse(file, -SW_EFORMAT, "__metadata__ is not an object");
                goto out_root;
            }
            metadata = val;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    char e[80];
                    err = refuse(file, -SW_EFORMAT, "__metadata__ '%s' is not a string",
                                 printable(e, sizeof(e), mk));
                    goto out_root;
                }
                nstr += strlen(mk) + 1 + strlen(json_string_value(mv)) + 1;
                nm++;
            }
            continue;
        }
        if (kl == 0 || kl > SW_ST_NAME_MAX) {
            char e[80];
            err = refuse(file, -SW_EFORMAT, "tensor name '%s' has %zu bytes (1 to %d allowed)",
                         printable(e, sizeof(e), key), kl, SW_ST_NAME_MAX);
            goto out_root;
        }
        nstr += kl + 1;
        nt++;
    }

    st->tensors = sw_calloc(nt ? nt : 1, sizeof(*st->tensors));
    st->by_name = sw_calloc(nt ? nt : 1, sizeof(*st->by_name));
    st->meta = sw_calloc(nm ? nm : 1, sizeof(*st->meta));
    st->strings = sw_malloc(nstr ? nstr : 1);
    if (!st->tensors || !st->by_name || !st->meta || !st->strings) {
        err = refuse(file, -SW_ENOMEM, "out of memory for a header of %zu tensors", nt);
        goto out_root;
    }
    s = st->strings;
    json_object_foreach(root, key, val) {
        struct sw_st_tensor *t;

        if (strcmp(key, "__metadata__") == 0)
            continue;
        t = &st->tensors[st->ntensors];
        if ((err = parse_entry(st, key, val, t, flags)) < 0)
            goto out_root;
        memcpy(s, key, strlen(key) + 1);
        t->name = s;
        s += strlen(key) + 1;
        st->ntensors++;
    }
    if (metadata) {
        const char *mk;
        json_t *mv;

        json_object_foreach(metadata, mk, mv) {
            const char *v = json_string_value(mv);

            memcpy(s, mk, strlen(mk) + 1);
            st->meta[st->nmeta].key = s;
            s += strlen(mk) + 1;
            memcpy(s, v, strlen(v) + 1);
            st->meta[st->nmeta].value = s;
            s += strlen(v) + 1;
            st->nmeta++;
        }
    }

    /* dense buffer: sorted by offset, each tensor starts where the last ended */
    qsort(st->tensors, (size_t)st->ntensors, sizeof(*st->tensors), cmp_offset);
    {
        uint64_t pos = 0;
        const char *prev = NULL;
        char a[80], b[80];

        for (int i = 0; i < st->ntensors; i++) {
            struct sw_st_tensor *t = &st->tensors[i];

            if (t->offset > pos) {
                err = refuse(file, -SW_EFORMAT, "hole in the data: bytes [%llu, %llu) before "
                             "tensor '%s' belong to no tensor", (unsigned long long)pos,
                             (unsigned long long)t->offset, printable(a, sizeof(a), t->name));
                goto out_root;
            }
            if (t->offset < pos) {
                err = refuse(file, -SW_EFORMAT, "tensors '%s' and '%s' overlap at byte %llu",
                             printable(a, sizeof(a), prev), printable(b, sizeof(b), t->name),
                             (unsigned long long)t->offset);
                goto out_root;
            }
            pos = t->offset + t->nbytes;
            prev = t->name;
        }
        if (pos != st->data_size) {
            err = refuse(file, -SW_EFORMAT, "tensors cover %llu bytes of a %llu-byte data section "
                         "(trailing bytes)", (unsigned long long)pos,
                         (unsigned long long)st->data_size);
            goto out_root;
        }
    }
    for (int i = 0; i < st->ntensors; i++) {
        st->tensors[i].offset += st->data_start;
        st->by_name[i] = &st->tensors[i];
    }
    qsort(st->by_name, (size_t)st->ntensors, sizeof(*st->by_name), cmp_name);
    err = 0;
out_root:
    json_decref(root);
    return err;
}

/* Common part of open and open_mem: the first 8 bytes and the header. */
static int
open_common(struct sw_safetensors *st, unsigned flags)
{
    uint8_t lenbuf[8];
    uint64_t n = 0;
    char *hdr;
    int err;

    if (st->file_size < 8)
        return refuse(st->name, -SW_EFORMAT, "%llu bytes is too short for a safetensors file",
                      (unsigned long long)st->file_size);
    if ((err = read_at(st, 0, lenbuf, 8)) < 0)
        return err;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | lenbuf[i];
    if (n < 2)
        return refuse(st->name, -SW_EFORMAT, "header length %llu is too small",
                      (unsigned long long)n);
    if (n > SW_ST_HEADER_MAX)
        return refuse(st->name, -SW_EFORMAT, "header length %llu is over the %llu-byte limit",
                      (unsigned long long)n, (unsigned long long)SW_ST_HEADER_MAX);
    if (n > st->file_size - 8)
        return refuse(st->name, -SW_EFORMAT, "header length %llu is beyond the end of the file "
                      "(%llu bytes)", (unsigned long long)n, (unsigned long long)st->file_size);
    st->data_start = 8 + n;
    st->data_size = st->file_size - st->data_start;
    if (st->mem)
        return parse_header(st, (const char *)st->mem + 8, (size_t)n, flags);
    hdr = sw_malloc((size_t)n);
    if (!hdr)
        return refuse(st->name, -SW_ENOMEM, "out of memory for a %llu-byte header",
                      (unsigned long long)n);
    err = read_at(st, 8, hdr, n);
    if (err == 0)
        err = parse_header(st, hdr, (size_t)n, flags);
    sw_free(hdr);
    return err;
}

int
sw_safetensors_open(struct sw_safetensors *st, const char *path, unsigned flags)
{
    struct stat sb;
    int err;

    memset(st, 0, sizeof(*st));
    st->fd = -1;
    st->name = sw_strdup(path);
    if (!st->name)
        return -SW_ENOMEM;
    st->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (st->fd < 0) {
        err = refuse(path, -errno, "cannot open: %s", strerror(errno));
        goto out_close;
    }
    if (fstat(st->fd, &sb) < 0) {
        err = refuse(path, -errno, "cannot stat: %s", strerror(errno));
        goto out_close;
    }
    if (!S_ISREG(sb.st_mode)) {
        err = refuse(path, -SW_EFORMAT, "not a regular file");
        goto out_close;
    }
    st->file_size = (uint64_t)sb.st_size;
    if ((err = open_common(st, flags)) < 0)
        goto out_close;
    return 0;
out_close:
    sw_safetensors_close(st);
    return err;
}

int
sw_safetensors_open_mem(struct sw_safetensors *st, const void *buf, size_t len, const char *name,
                        unsigned flags)
{
    int err;

    memset(st, 0, sizeof(*st));
    st->fd = -1;
    st->mem = buf ? buf : (const uint8_t *)"";
    st->file_size = buf ? len : 0;
    st->name = sw_strdup(name ? name : "<memory>");
    if (!st->name)
        return -SW_ENOMEM;
    if ((err = open_common(st, flags)) < 0) {
        sw_safetensors_close(st);
        return err;
    }
    return 0;
}

void
sw_safetensors_close(struct sw_safetensors *st)
{
    if (st->fd >= 0)
        close(st->fd);
    sw_free(st->tensors);
    sw_free(st->by_name);
    sw_free(st->meta);
    sw_free(st->strings);
    sw_free(st->name);
    memset(st, 0, sizeof(*st));
    st->fd = -1;
}

const struct sw_st_tensor *
sw_safetensors_find(const struct sw_safetensors *st, const char *name)
{
    int lo = 0, hi = st->ntensors - 1;

    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const struct sw_st_tensor *t = st->by_name[mid];
        int c = strcmp(name, t->name);

        if (c == 0)
            return t;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *
sw_safetensors_meta(const struct sw_safetensors *st, const char *key)
{
    for (int i = 0; i < st->nmeta; i++)
        if (strcmp(st->meta[i].key, key) == 0)
            return st->meta[i].value;
    return NULL;
}

int
sw_safetensors_read_raw(struct sw_safetensors *st, const struct sw_st_tensor *t, void *dst)
{
    SW_ASSERT(t >= st->tensors && t < st->tensors + st->ntensors);
    return read_at(st, t->offset, dst, t->nbytes);
}

int
sw_safetensors_read_f32(struct sw_safetensors *st, const char *name, float *dst,
                        size_t n_expected, const int64_t *expected_shape, int ndim)
{
    const struct sw_st_tensor *t = sw_safetensors_find(st, name);
    char k[80], a[256], b[256];
    uint8_t *half;
    int err;

    printable(k, sizeof(k), name);
    if (!t)
        return refuse(st->name, -SW_ENOENT, "no tensor '%s'", k);
    if (expected_shape) {
        bool same = ndim == t->ndim;

        for (int i = 0; same && i < ndim; i++)
            same = expected_shape[i] == t->shape[i];
        if (!same) {
            format_shape(a, sizeof(a), t->shape, t->ndim);
            format_shape(b, sizeof(b), expected_shape, ndim < 0 ? 0 : SW_MIN(ndim, 32));
            return refuse(st->name, -SW_ESHAPE, "tensor '%s' has shape %s, expected %s", k, a, b);
        }
    }
    if (t->numel != n_expected)
        return refuse(st->name, -SW_ESHAPE, "tensor '%s' has %llu elements, expected %zu", k,
                      (unsigned long long)t->numel, n_expected);
    if (!sw_dtype_is_float(t->dtype))
        return refuse(st->name, -SW_EDTYPE, "tensor '%s' is %s: only F32, F16 and BF16 convert "
                      "to F32", k, sw_dtype_name(t->dtype));
    if (t->dtype == SW_DTYPE_F32)
        return read_at(st, t->offset, dst, t->nbytes);

    /* halves into the upper half of dst, widened front to back: writing
     * dst[i] (bytes [4i, 4i+4)) never reaches half i+1 (at 2n + 2i + 2) */
    half = (uint8_t *)dst + 2 * n_expected;
    if ((err = read_at(st, t->offset, half, t->nbytes)) < 0)
        return err;
    for (size_t i = 0; i < n_expected; i++) {
        uint16_t h;

        memcpy(&h, half + 2 * i, 2);
        dst[i] = t->dtype == SW_DTYPE_F16 ? sw_f16_to_f32(h) : sw_bf16_to_f32(h);
    }
    return 0;
}

/* ---- atomic files ---- */

static int
write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t w = write(fd, p, len > ((size_t)1 << 30) ? (size_t)1 << 30 : len);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int
sw__afile_open(struct sw__afile *f, const char *path)
{
    static unsigned counter;
    size_t n = strlen(path) + 64;
    int err;

    f->fd = -1;
    f->path = sw_strdup(path);
    f->tmp = sw_malloc(n);
    if (!f->path || !f->tmp) {
        err = -SW_ENOMEM;
        goto out_free;
    }
    for (int tries = 0; tries < 100; tries++) {
        snprintf(f->tmp, n, "%s.tmp.%d.%u", path, (int)getpid(),
                 __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd >= 0 || errno != EEXIST)
            break;
    }
    if (f->fd < 0) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot create '%s': %s", f->tmp, strerror(errno));
        goto out_free;
    }
    return 0;
out_free:
    sw_free(f->path);
    sw_free(f->tmp);
    f->path = f->tmp = NULL;
    return err;
}

int
sw__afile_write(struct sw__afile *f, const void *buf, size_t len)
{
    int err = write_all(f->fd, buf, len);

    if (err < 0)
        sw_log(SW_LOG_ERROR, "cannot write '%s': %s", f->tmp, sw_strerror(err));
    return err;
}

static void
afile_release(struct sw__afile *f)
{
    sw_free(f->path);
    sw_free(f->tmp);
    f->path = f->tmp = NULL;
    f->fd = -1;
}

int
sw__afile_commit(struct sw__afile *f)
{
    char *dir = NULL, *slash;
    int err = 0, dfd;

    if (fsync(f->fd) < 0) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot fsync '%s': %s", f->tmp, strerror(errno));
        goto out_abort;
    }
    if (close(f->fd) < 0) {
        f->fd = -1;
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot close '%s': %s", f->tmp, strerror(errno));
        goto out_abort;
    }
    f->fd = -1;
    if (rename(f->tmp, f->path) < 0) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot rename '%s' to '%s': %s", f->tmp, f->path, strerror(errno));
        goto out_abort;
    }
    /* make the rename itself durable */
    dir = sw_strdup(f->path);
    if (!dir) {
        err = -SW_ENOMEM;
        goto out_release;
    }
    slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0) {
        err = -errno;
        sw_log(SW_LOG_ERROR, "cannot fsync folder '%s': %s", dir, strerror(errno));
    }
    if (dfd >= 0)
        close(dfd);
    sw_free(dir);
out_release:
    afile_release(f);
    return err;
out_abort:
    sw__afile_abort(f);
    return err;
}

void
sw__afile_abort(struct sw__afile *f)
{
    if (f->fd >= 0)
        close(f->fd);
    if (f->tmp)
        unlink(f->tmp);
    afile_release(f);
}

/* ---- writer ---- */

static int
check_desc(const char *path, const struct sw_st_desc *d, uint64_t *nbytes)
{
    size_t len = d->name ? strlen(d->name) : 0;
    uint64_t numel = 1;
    char k[80];

    if (len == 0 || len > SW_ST_NAME_MAX || strcmp(d->name, "__metadata__") == 0)
        return refuse(path, -SW_EINVAL, "cannot write a tensor named '%s'",
                      d->name ? printable(k, sizeof(k), d->name) : "(null)");
    printable(k, sizeof(k), d->name);
    if ((unsigned)d->dtype >= SW_DTYPE_NTYPES)
        return refuse(path, -SW_EDTYPE, "tensor '%s': bad dtype %d", k, (int)d->dtype);
    if (d->ndim < 0 || d->ndim > SW_ST_MAX_DIMS)
        return refuse(path, -SW_ESHAPE, "tensor '%s': %d dims", k, d->ndim);
    for (int i = 0; i < d->ndim; i++) {
        if (d->shape[i] < 0)
            return refuse(path, -SW_ESHAPE, "tensor '%s': negative dim", k);
        if (d->shape[i] && numel > UINT64_MAX / (uint64_t)d->shape[i])
            return refuse(path, -SW_ESHAPE, "tensor '%s': shape overflows", k);
        numel *= (uint64_t)d->shape[i];
    }
    if (numel > UINT64_MAX / sw_dtype_size(d->dtype) ||
        numel * sw_dtype_size(d->dtype) != (uint64_t)d->nbytes)
        return refuse(path, -SW_ESHAPE, "tensor '%s': %zu bytes do not match its shape x %s", k,
                      d->nbytes, sw_dtype_name(d->dtype));
    *nbytes = d->nbytes;
    return 0;
}

int
sw_safetensors_writer_open(struct sw_st_writer *w, const char *path, const struct sw_st_desc *t,
                           int n, const struct sw_st_meta *meta, int nmeta)
{
    json_t *root = NULL, *m, *e, *shape, *offs;
    char *hdr = NULL, *buf = NULL;
    uint64_t pos = 0, nb = 0;
    size_t hlen, plen;
    int err = -SW_ENOMEM;

    memset(w, 0, sizeof(*w));
    w->f.fd = -1;
    root = json_object();
    if (!root)
        goto out;
    if (nmeta > 0) {
        m = json_object();
        if (!m || json_object_set_new(root, "__metadata__", m) < 0)
            goto out;
        for (int i = 0; i < nmeta; i++) {
            if (!meta[i].key || json_object_get(m, meta[i].key) ||
                json_object_set_new(m, meta[i].key, json_string(meta[i].value)) < 0) {
                err = refuse(path, -SW_EINVAL, "metadata %d: key missing, repeated or not UTF-8, "
                             "or value not UTF-8", i);
                goto out;
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if ((err = check_desc(path, &t[i], &nb)) < 0)
            goto out;
        if (json_object_get(root, t[i].name)) {
            char k[80];
            err = refuse(path, -SW_EINVAL, "tensor '%s' given twice",
                         printable(k, sizeof(k), t[i].name));
            goto out;
        }
        err = -SW_ENOMEM;
        e = json_object();
        shape = json_array();
        offs = json_array();
        if (!e || !shape || !offs) {
            json_decref(e);
            json_decref(shape);
            json_decref(offs);
            goto out;
        }
        json_object_set_new(e, "dtype", json_string(sw_dtype_name(t[i].dtype)));
        for (int d = 0; d < t[i].ndim; d++)
            json_array_append_new(shape, json_integer(t[i].shape[d]));
        json_object_set_new(e, "shape", shape);
        json_array_append_new(offs, json_integer((json_int_t)pos));
        json_array_append_new(offs, json_integer((json_int_t)(pos + nb)));
        json_object_set_new(e, "data_offsets", offs);
        if (json_object_set_new(root, t[i].name, e) < 0) {
            char k[80];
            err = refuse(path, -SW_EINVAL, "tensor name '%s' is not valid UTF-8",
                         printable(k, sizeof(k), t[i].name));
            goto out;
        }
        pos += nb;
    }
    err = -SW_ENOMEM;
    hdr = json_dumps(root, JSON_COMPACT);
    if (!hdr)
        goto out;
    hlen = strlen(hdr);
    plen = (hlen + 7) & ~(size_t)7;
    buf = sw_malloc(8 + plen);
    if (!buf)
        goto out;
    for (int i = 0; i < 8; i++)
        buf[i] = (char)(((uint64_t)plen >> (8 * i)) & 0xff);
    memcpy(buf + 8, hdr, hlen);
    memset(buf + 8 + hlen, ' ', plen - hlen);
    if ((err = sw__afile_open(&w->f, path)) < 0)
        goto out;
    if ((err = sw__afile_write(&w->f, buf, 8 + plen)) < 0) {
        sw__afile_abort(&w->f);
        goto out;
    }
    w->data_start = 8 + plen;
    w->data_size = pos;
    w->written = 0;
    err = 0;
out:
    if (err == -SW_ENOMEM)
        sw_log(SW_LOG_ERROR, "'%s': out of memory for the header", path);
    sw_free(buf);
    free(hdr); /* jansson's allocator */
    json_decref(root);
    return err;
}

int
sw_safetensors_writer_put(struct sw_st_writer *w, const void *buf, size_t len)
{
    if (len > w->data_size - w->written)
        return refuse(w->f.path, -SW_EINVAL, "more data put than the tensors hold");
    w->written += len;
    return sw__afile_write(&w->f, buf, len);
}

int
sw_safetensors_writer_commit(struct sw_st_writer *w)
{
    if (w->written != w->data_size) {
        int err = refuse(w->f.path, -SW_EINVAL, "%llu of %llu data bytes were put",
                         (unsigned long long)w->written, (unsigned long long)w->data_size);
        sw__afile_abort(&w->f);
        return err;
    }
    return sw__afile_commit(&w->f);
}

void
sw_safetensors_writer_abort(struct sw_st_writer *w)
{
    sw__afile_abort(&w->f);
}

int
sw_safetensors_write(const char *path, const struct sw_st_desc *t, int n,
                     const struct sw_st_meta *meta, int nmeta)
{
    struct sw_st_writer w;
    int err;

    if ((err = sw_safetensors_writer_open(&w, path, t, n, meta, nmeta)) < 0)
        return err;
    for (int i = 0; i < n; i++) {
        if (t[i].nbytes && (err = sw_safetensors_writer_put(&w, t[i].data, t[i].nbytes)) < 0) {
            sw_safetensors_writer_abort(&w);
            return err;
        }
    }
    return sw_safetensors_writer_commit(&w);
}
