/*
 * data.h - token data for training and evaluation.
 *
 * Sources.  sw_data_open takes a comma-separated list of paths (when the
 * whole string names an existing file or folder it is taken as one path, so
 * a single path may contain commas).  Each path is:
 *   - a text file: byte-level tokens, each byte one token (vocabulary 256);
 *   - an llm.c token file, recognised by a name ending in ".bin" or by its
 *     first 4 bytes being the magic: a header of 256 little-endian int32
 *     (magic 20240520, version 1, token count), then count uint16 tokens;
 *   - a folder: every regular file in it, recursively, in byte order of the
 *     names (strcmp) at each level, each as above.  Inside folders, symbolic
 *     links, dot-files and empty files are skipped (Debian's fortunes folder
 *     links foo.u8 -> foo: following links would read the text twice).  A
 *     folder also holds its non-text files (fortunes' .dat indexes are
 *     binary): name files one by one to leave them out.
 * The sources are concatenated in the order given into one token stream,
 * kept in memory as uint16 (vocab <= 65536).
 *
 * Refusals (one logged line naming the file; -SW_EFORMAT unless noted):
 * unreadable file (-errno), empty file named directly, folder with no data,
 * token file with a truncated header (< 1024 bytes), wrong magic, version
 * other than 1, negative or zero count, count beyond the end of the file,
 * trailing bytes after the count tokens (refused: they mean a corrupted or
 * mis-concatenated file), a token or byte >= vocab (-SW_ERANGE), fewer than
 * 2 tokens in all.
 *
 * Splits.  The last floor(n * val_frac) tokens are the validation split,
 * the rest the training split: contiguous, so they never overlap.
 *
 * Windows.  A window of T is T+1 consecutive tokens: inputs are the first
 * T, targets the last T (shifted by one).  Evaluation windows are fixed:
 * window w of a split is tokens [w*T, w*T+T) of it with targets [w*T+1,
 * w*T+T+1); a split of len tokens has (len - 1) / T of them.  With
 * SW_DATA_ALL this is swarmsim eval's definition over the whole stream.
 * Training batches draw B window starts uniformly in [0, n_train - T - 1]
 * (rejection sampling, no modulo bias) from xoshiro256** seeded by
 * splitmix64(seed).  The cursor (RNG state + windows drawn) can be saved
 * and restored, so a checkpoint resumes the exact stream.
 *
 * Ownership and threads.  The caller owns struct sw_data; open fills it,
 * release frees the tokens.  next_batch mutates the cursor (one thread);
 * window/val_batch only read and may run concurrently.
 */
#ifndef SW_DATA_H
#define SW_DATA_H

#include <stddef.h>
#include <stdint.h>

#define SW_DATA_MAGIC 20240520
#define SW_DATA_VERSION 1
#define SW_DATA_HEADER_INTS 256

enum sw_data_split {
    SW_DATA_TRAIN = 0,
    SW_DATA_VAL = 1,
    SW_DATA_ALL = 2,
};

struct sw_data_cursor {
    uint64_t rng[4];  /* xoshiro256** state */
    uint64_t drawn;   /* training windows drawn since seeding */
};

struct sw_data {
    uint16_t *tokens; /* [n], owned */
    size_t n;         /* tokens in the stream */
    size_t n_train;   /* [0, n_train) train, [n_train, n) validation */
    int vocab;        /* every token < vocab */
    int nfiles;       /* files read */
    struct sw_data_cursor cur;
};

/* Load paths (see above) with vocabulary vocab (1..65536; text needs 256
 * unless every byte is below it), val_frac in [0, 1), cursor seeded by seed.
 * On failure *d holds nothing to release. */
int sw_data_open(struct sw_data *d, const char *paths, int vocab, double val_frac,
                 uint64_t seed) __attribute__((warn_unused_result));
/* The same from n tokens in memory (copied). */
int sw_data_init_tokens(struct sw_data *d, const uint16_t *tokens, size_t n, int vocab,
                        double val_frac, uint64_t seed) __attribute__((warn_unused_result));
void sw_data_release(struct sw_data *d);

/* Restart the training stream from seed. */
void sw_data_seed(struct sw_data *d, uint64_t seed);
void sw_data_cursor_get(const struct sw_data *d, struct sw_data_cursor *c);
void sw_data_cursor_set(struct sw_data *d, const struct sw_data_cursor *c);

/* Tokens in a split. */
size_t sw_data_split_len(const struct sw_data *d, enum sw_data_split split);
/* Fixed windows of T in a split: (len - 1) / T, or 0. */
size_t sw_data_nwindows(const struct sw_data *d, enum sw_data_split split, int T);

/* B random training windows: inputs[B*T], targets[B*T].  -SW_ERANGE
 * (logged) when the training split has fewer than T+1 tokens; the cursor
 * only moves on success. */
int sw_data_next_batch(struct sw_data *d, int32_t *inputs, int32_t *targets, int B, int T)
    __attribute__((warn_unused_result));
/* Fixed windows first .. first+B-1 of a split; -SW_ERANGE (logged) past the end. */
int sw_data_window(const struct sw_data *d, enum sw_data_split split, size_t first,
                   int32_t *inputs, int32_t *targets, int B, int T)
    __attribute__((warn_unused_result));
/* Validation batch idx: fixed windows [idx*B, idx*B+B) of the validation split. */
int sw_data_val_batch(const struct sw_data *d, size_t idx, int32_t *inputs, int32_t *targets,
                      int B, int T) __attribute__((warn_unused_result));
/* Whole validation batches of B windows of T. */
size_t sw_data_val_nbatches(const struct sw_data *d, int B, int T);

/* Write n tokens as an llm.c token file (atomically); n <= INT32_MAX. */
int sw_data_write_tokens(const char *path, const uint16_t *tokens, size_t n)
    __attribute__((warn_unused_result));

#endif
