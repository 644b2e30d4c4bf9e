/*
 * safetensors.h - read and write safetensors files (model-agnostic).
 *
 * Format (https://github.com/huggingface/safetensors): 8 bytes little-endian
 * header length N, N bytes of a JSON object, then the data section.  Each
 * member of the object but "__metadata__" describes one tensor:
 *   "name": {"dtype": "F32", "shape": [4, 4], "data_offsets": [begin, end]}
 * with offsets relative to the start of the data section.  "__metadata__" is
 * an optional string -> string map.  The data section is dense: the tensors
 * cover it exactly, with no hole and no overlap.
 *
 * Writer.  Writes tensors in the order given, contiguous, after a compact
 * JSON header (built with jansson) padded with spaces so the data section
 * starts on an 8-byte boundary.  The file appears atomically: it is written
 * to "<path>.tmp.<pid>.<n>" in the same folder, fsync'ed, renamed over path,
 * and the folder is fsync'ed.  A failure removes the temporary file and
 * leaves any older file at path untouched.  The streaming writer
 * (sw_safetensors_writer_*) takes the bytes in pieces, so a caller never
 * needs a second copy of its tensors; sw_safetensors_write is the one-call
 * form for tensors already in host memory.  The writer takes any dtype of
 * enum sw_dtype (the caller supplies the bytes); swarm itself writes F32.
 *
 * Reader.  Hostile-input safe: the header is bounded (2 <= N <= 100 MiB and
 * N <= file size - 8), parsed by jansson with duplicate keys refused, and
 * every entry is checked: exactly the keys dtype (a known string), shape
 * (array of at most SW_ST_MAX_DIMS non-negative integers) and data_offsets
 * ([begin, end] integers, begin <= end <= data size); byte length ==
 * prod(shape) * dtype size, computed with overflow checks; tensors neither
 * overlap nor leave holes, and cover the data section exactly (trailing
 * bytes are refused, as the reference implementation does); __metadata__
 * is null or a string -> string map; names are 1..SW_ST_NAME_MAX bytes.
 * Every refusal logs one line naming the file and what is wrong (hostile
 * strings are shown truncated, with unprintable bytes as '?') and returns
 * -SW_EFORMAT, -SW_EDTYPE (unknown dtype) or -SW_ESHAPE (bad or overflowing
 * shape, length that does not match the shape).  The reader reads with
 * pread (no mmap); the header is parsed once, tensors are read on demand.
 *
 * dtypes.  Every dtype of the safetensors spec is known: a file holding
 * I64 or U8 tensors opens and lists them.  Only F32, F16 and BF16 convert to
 * F32 (sw_safetensors_read_f32 refuses the others with -SW_EDTYPE); with
 * SW_ST_FLOAT_ONLY the open itself refuses a file holding any other dtype.
 * F16 and BF16 are widened exactly (subnormals, inf and NaN included).
 *
 * Ownership and threads.  The caller owns struct sw_safetensors; open fills
 * it and close frees what it holds.  The tensor table, names and metadata
 * belong to it.  One handle may serve several threads reading different
 * tensors (pread has no shared file position) as long as none closes it.
 */
#ifndef SW_SAFETENSORS_H
#define SW_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SW_ST_MAX_DIMS 8
#define SW_ST_NAME_MAX 1024                          /* bytes in a tensor name */
#define SW_ST_HEADER_MAX ((uint64_t)100 * 1024 * 1024) /* bytes of JSON header */

enum sw_dtype {
    SW_DTYPE_F32 = 0,
    SW_DTYPE_F16,
    SW_DTYPE_BF16,
    /* known to the format, listed by the reader, not convertible to F32 */
    SW_DTYPE_F64,
    SW_DTYPE_I64,
    SW_DTYPE_U64,
    SW_DTYPE_I32,
    SW_DTYPE_U32,
    SW_DTYPE_I16,
    SW_DTYPE_U16,
    SW_DTYPE_I8,
    SW_DTYPE_U8,
    SW_DTYPE_BOOL,
    SW_DTYPE_F8_E4M3,
    SW_DTYPE_F8_E5M2,
    SW_DTYPE_NTYPES
};

/* "F32", "BF16", ...; "?" when out of range. */
const char *sw_dtype_name(enum sw_dtype t);
/* Bytes per element; 0 when out of range. */
size_t sw_dtype_size(enum sw_dtype t);
/* The dtype named s (exact, case-sensitive), or -1. */
int sw_dtype_parse(const char *s);
/* F32, F16 or BF16. */
bool sw_dtype_is_float(enum sw_dtype t);

/* Exact widening conversions (IEEE binary16 and bfloat16 to binary32). */
float sw_f16_to_f32(uint16_t h);
float sw_bf16_to_f32(uint16_t h);

/* ---- reader ---- */

struct sw_st_tensor {
    const char *name;              /* owned by the handle */
    enum sw_dtype dtype;
    int ndim;                      /* 0 (a scalar) .. SW_ST_MAX_DIMS */
    int64_t shape[SW_ST_MAX_DIMS]; /* unused dims are 0 */
    uint64_t numel;                /* prod(shape); 1 for a scalar */
    uint64_t offset;               /* absolute byte offset in the file */
    uint64_t nbytes;               /* numel * sw_dtype_size(dtype) */
};

struct sw_st_meta {
    const char *key;
    const char *value;
};

struct sw_safetensors {
    char *name;                    /* path (or the name given), for messages */
    int fd;                        /* -1 when reading a memory image */
    const uint8_t *mem;            /* the memory image (not owned), or NULL */
    uint64_t file_size;
    uint64_t data_start;           /* 8 + header length */
    uint64_t data_size;            /* file_size - data_start */
    int ntensors;
    struct sw_st_tensor *tensors;  /* [ntensors], in file order (by offset) */
    struct sw_st_tensor **by_name; /* [ntensors], the table sorted by name */
    int nmeta;
    struct sw_st_meta *meta;       /* [nmeta], owned strings, file order */
    char *strings;                 /* storage of all names and metadata */
};

enum sw_st_flags {
    SW_ST_FLOAT_ONLY = 1 << 0,     /* refuse tensors that are not F32/F16/BF16 */
};

/* Open path and check its header (see above).  0, -errno when the file
 * cannot be opened or read, or -SW_EFORMAT/-SW_EDTYPE/-SW_ESHAPE with one
 * logged line.  On failure *st holds nothing to release. */
int sw_safetensors_open(struct sw_safetensors *st, const char *path, unsigned flags)
    __attribute__((warn_unused_result));
/* The same on a whole file image in memory (len bytes at buf), which must
 * outlive the handle; name is used in messages.  For tests and fuzzing. */
int sw_safetensors_open_mem(struct sw_safetensors *st, const void *buf, size_t len,
                            const char *name, unsigned flags) __attribute__((warn_unused_result));
void sw_safetensors_close(struct sw_safetensors *st);

/* The tensor called name (O(log n)), or NULL. */
const struct sw_st_tensor *sw_safetensors_find(const struct sw_safetensors *st,
                                               const char *name);
/* The metadata value of key, or NULL. */
const char *sw_safetensors_meta(const struct sw_safetensors *st, const char *key);

/* Read tensor name into dst[n_expected] as F32, widening F16/BF16.  Checks
 * that it exists (-SW_ENOENT), has n_expected elements and, when
 * expected_shape is not NULL, exactly that shape of ndim dims (-SW_ESHAPE),
 * and a float dtype (-SW_EDTYPE); each refusal logs one line.  F16/BF16
 * are read into the upper half of dst and widened in place: no extra
 * memory.  -errno / -SW_EIO on a read error (e.g. the file shrank). */
int sw_safetensors_read_f32(struct sw_safetensors *st, const char *name, float *dst,
                            size_t n_expected, const int64_t *expected_shape, int ndim)
    __attribute__((warn_unused_result));
/* Raw bytes of t (t from st's table) into dst[t->nbytes]. */
int sw_safetensors_read_raw(struct sw_safetensors *st, const struct sw_st_tensor *t, void *dst)
    __attribute__((warn_unused_result));

/* ---- writer ---- */

/* What the writer is told about one tensor. */
struct sw_st_desc {
    const char *name;               /* 1..SW_ST_NAME_MAX bytes, not "__metadata__" */
    enum sw_dtype dtype;
    int ndim;                       /* 0..SW_ST_MAX_DIMS */
    int64_t shape[SW_ST_MAX_DIMS];
    const void *data;               /* nbytes of host data (sw_safetensors_write only) */
    size_t nbytes;                  /* must equal prod(shape) * dtype size */
};

/* An atomic file: written under a temporary name, renamed on commit.
 * Internal to the io modules (safetensors, hfconfig). */
struct sw__afile {
    int fd;
    char *path;                     /* owned */
    char *tmp;                      /* owned */
};

int sw__afile_open(struct sw__afile *f, const char *path) __attribute__((warn_unused_result));
int sw__afile_write(struct sw__afile *f, const void *buf, size_t len)
    __attribute__((warn_unused_result));
/* fsync, close, rename over path, fsync the folder; releases f either way. */
int sw__afile_commit(struct sw__afile *f) __attribute__((warn_unused_result));
/* Close and remove the temporary file; releases f.  Safe on a released f. */
void sw__afile_abort(struct sw__afile *f);

struct sw_st_writer {
    struct sw__afile f;
    uint64_t data_start;            /* file offset of the data section */
    uint64_t data_size;             /* bytes of all tensors */
    uint64_t written;               /* data bytes put so far */
};

/* Validate the descriptions (names unique, nbytes == shape x dtype), write
 * the header to a temporary file.  Tensor i will lie at file offset
 * data_start + sum of the nbytes before it.  meta: nmeta key/value pairs for
 * __metadata__ (may be NULL).  On failure nothing is left behind. */
int sw_safetensors_writer_open(struct sw_st_writer *w, const char *path,
                               const struct sw_st_desc *t, int n, const struct sw_st_meta *meta,
                               int nmeta) __attribute__((warn_unused_result));
/* Append the next len data bytes (tensors in order, any split). */
int sw_safetensors_writer_put(struct sw_st_writer *w, const void *buf, size_t len)
    __attribute__((warn_unused_result));
/* Check every byte was put, then commit atomically; releases w either way. */
int sw_safetensors_writer_commit(struct sw_st_writer *w) __attribute__((warn_unused_result));
/* Drop the temporary file; releases w. */
void sw_safetensors_writer_abort(struct sw_st_writer *w);

/* One call: open, put every t[i].data, commit. */
int sw_safetensors_write(const char *path, const struct sw_st_desc *t, int n,
                         const struct sw_st_meta *meta, int nmeta)
    __attribute__((warn_unused_result));

#endif
