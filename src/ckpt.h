/*
 * ckpt.h - checkpoints: atomic, checksummed, reshardable, saved behind training.
 *
 * Layout.  A checkpoint folder DIR holds one folder per saved step:
 *
 *   DIR/step-00000120/stage-000-of-004.safetensors   one data file per writer
 *   DIR/step-00000120/...                            (here: one per stage)
 *   DIR/step-00000120/manifest.json                  the logical view
 *   DIR/step-00000120/COMMIT                         written last
 *
 * Data files are plain safetensors (F32).  A stage's file holds, for every
 * tensor of the stage, the parameter under its global Hugging Face name
 * ("model.layers.3.mlp.up_proj.weight") and the AdamW moments under the same
 * name with the suffixes ".adam_m" and ".adam_v"; its __metadata__ says
 * step and stage.  Any safetensors reader can open them.
 *
 * manifest.json (jansson, one object):
 *   "format": "swarm-checkpoint", "version": 1, "step", "seed" (decimal
 *   string: a uint64), "stages" (S at save time), "micro" (microbatches run,
 *   CheckFree+'s route parity), "model" {vocab_size, d_model, n_layers,
 *   n_heads, n_kv_heads, ffn_hidden, seq_len, rope_theta, rms_eps, tied},
 *   "optim" {lr, min_lr_frac, warmup_steps, max_steps, beta1, beta2, eps,
 *   weight_decay, grad_clip}, "lr_schedule" {"step", "lr": the schedule's
 *   value at step, before lr_mult}, "data_cursor" {"rng": 4 hex strings,
 *   "drawn": decimal string} (absent when the run had none),
 *   "stage_state": [per stage {stage, first_layer, end_layer,
 *   optimizer_step (AdamW t), lr_mult, last_norm, last_norm_clipped}],
 *   "files": {name: {bytes, header_blake2b}} and
 *   "tensors": {global name: {file, offset, length, dtype, shape, stage,
 *   blake2b}}.
 * Every param, ".adam_m" and ".adam_v" tensor is listed; offset is the
 * absolute byte offset in the file, length its byte count; the checksums
 * are BLAKE2b-256 (libsodium crypto_generichash, 32 bytes, no key) in hex:
 * of each tensor's bytes, and of each file's safetensors header (its first
 * 8 + N bytes), so that a flipped byte anywhere in a data file is caught.
 * Floats are written with 17 significant digits: they round-trip exactly.
 *
 * COMMIT is three text lines: "swarm-checkpoint 1", "step N",
 * "manifest-blake2b HEX" (the hash of manifest.json's bytes).
 *
 * Commit protocol (sw_ckpt_save).  Data files are written into
 * DIR/.tmp-step-N.PID, each fsync'ed (and renamed into place inside it);
 * then manifest.json, fsync'ed; the folder is renamed to DIR/step-N and DIR
 * is fsync'ed; then COMMIT is written (fsync'ed, renamed in, folder
 * fsync'ed).  A step folder without a COMMIT, or whose COMMIT does not
 * match its manifest, is torn and never loaded.  Re-saving a step that
 * exists moves the old folder aside first (DIR/.trash-...), so at any
 * instant a step folder is either absent, torn or whole.
 *
 * Reader (sw_ckpt_open).  Steps newest first; a step is taken when its
 * COMMIT is there and names the manifest's hash, the manifest parses and is
 * consistent (offsets within the files, lengths = shape x dtype), every
 * data file has its recorded size and header hash, and every tensor's bytes
 * hash to the manifest's value.  Every step passed over is logged with the
 * reason, naming the file or the tensor ("tensor 'x' in 'f': checksum
 * mismatch").  Reads after that check each tensor's hash again.
 *
 * Pruning.  After a commit, committed steps older than the keep newest are
 * removed (COMMIT first, so a half-removed step reads as torn), and so are
 * torn step folders and leftover .tmp-/.trash- folders: one writer per DIR.
 *
 * Resharding.  The global name is a tensor's identity: sw_ckpt_read_stage
 * reads exactly the tensors of the layout it is given, whatever the stage
 * count at save time.  Per-stage scalars (AdamW t, lr_mult, norms) come
 * from the saved stage that owned the layout's first tensor; a layout that
 * spans saved stages that disagree on t or lr_mult is loaded with a warning.
 *
 * Writing (sw_ckpt_save).  The data files are written in 8 MiB pieces, each
 * piece's writeback started at once (sync_file_range), while a helper
 * thread computes the tensors' hashes from memory, largest first; the
 * writing thread joins it when the bytes are out.  Only then is each file
 * fsync'ed (most of it is on disk by then) and the manifest written: the
 * order above is unchanged, and so are the bytes of every file.
 *
 * Asynchronous save (struct sw_ckpt_saver).  Training blocks only for a copy
 * of the state into one of two pre-allocated host buffers (a struct
 * sw_snapshot, as sw_sim_snapshot_save fills it; on the CPU backend split
 * over the OpenMP threads, which are idle between steps); a worker pthread
 * writes and fsyncs it.  A plain pthread rather than libuv's uv_queue_work:
 * the core library does not link libuv, and one long-lived writer thread
 * needs no loop (a swarm node may wrap sw_ckpt_saver_save in its loop's idle
 * callback).  While one save is being written a second is copied into the
 * other buffer and queued (reported); when both buffers are taken the save is
 * skipped and reported: never more than two in memory.  Each save logs its
 * blocking time, its write time (until its COMMIT is durable: from then on it
 * loads) and the time of the pruning after it (on ext4 mounted with
 * -o discard, removing a step waits for the discard of its blocks: 35 ms for
 * 150 MB on the development VM).  A failing write (full disk) is logged,
 * counted and leaves the older steps intact; training goes on.  On a machine
 * with few cores the write (two threads while hashing) competes with training
 * for them: ckpt_bench reports what a step costs while a save is written.
 *
 * Errors: -SW_EHASH (checksum), -SW_EFORMAT (manifest or COMMIT),
 * -SW_ENOENT (no complete step), -SW_ECONFIG (model mismatch), -errno.
 *
 * Threads.  sw_ckpt_save and the reader are reentrant on distinct objects;
 * sw_ckpt_save runs one helper thread (hashing) and joins it before it
 * returns.  A saver is driven by one training thread; its worker reads the
 * sim's layouts (immutable) and its own buffers only.  Release the saver
 * before the sim.
 */
#ifndef SW_CKPT_H
#define SW_CKPT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "data.h"
#include "model.h"
#include "optim.h"
#include "safetensors.h"
#include "snapshot.h"

struct sw_sim; /* sim.h: the in-process pipeline the functions below save and load */

#define SW_CKPT_VERSION 1
#define SW_CKPT_HASH_BYTES 32

/* Run-wide scalars of a checkpoint. */
struct sw_ckpt_run {
    int step;                     /* steps taken */
    int S;                        /* stages at save time */
    uint64_t seed;                /* run seed */
    uint64_t micro;               /* sim->micro (CheckFree+ route parity) */
    struct sw_model_config cfg;
    struct sw_optim_config oc;
    bool have_cursor;
    struct sw_data_cursor cursor; /* data position after step steps */
};

/* Per-stage scalars. */
struct sw_ckpt_stage_state {
    int t;                        /* AdamW steps */
    float lr_mult;
    float last_norm, last_norm_clipped;
};

/* What a writer is given for one stage: host slabs with the layout's offsets. */
struct sw_ckpt_stage_view {
    const struct sw_stage_layout *lay;
    const float *params, *m, *v;  /* [lay->numel] host */
    struct sw_ckpt_stage_state st;
};

/* Write step run->step of the n stages into dir (created if missing) by the
 * commit protocol above, then prune to the keep newest (keep <= 0: keep
 * all).  On failure nothing of this step is left and older steps are intact. */
int sw_ckpt_save(const char *dir, const struct sw_ckpt_run *run,
                 const struct sw_ckpt_stage_view *stages, int n, int keep) SW_WARN_UNUSED;

/* ---- reader ---- */

struct sw_ckpt_tensor {
    char *name;                   /* global name, with .adam_m/.adam_v suffix for moments */
    int file;                     /* index in files */
    int stage;                    /* saving stage */
    uint64_t offset, length;
    enum sw_dtype dtype;
    int ndim;
    int64_t shape[SW_ST_MAX_DIMS];
    uint8_t hash[SW_CKPT_HASH_BYTES];
};

struct sw_ckpt {
    char *path;                   /* the step folder */
    struct sw_ckpt_run run;
    struct sw_ckpt_stage_state *stage_state; /* [run.S] */
    int nfiles;
    char **file_names;            /* [nfiles] */
    int *fds;                     /* [nfiles] */
    int ntensors;
    struct sw_ckpt_tensor *tensors; /* [ntensors], sorted by name */
    uint64_t bytes;               /* data bytes of all tensors */
};

/* The newest complete, checksum-clean step of dir (step < 0), or exactly
 * step (which must be clean).  Logs why each newer step was passed over. */
int sw_ckpt_open(struct sw_ckpt *ck, const char *dir, int step) SW_WARN_UNUSED;
/* One step folder, fully verified. */
int sw_ckpt_open_path(struct sw_ckpt *ck, const char *stepdir) SW_WARN_UNUSED;
void sw_ckpt_close(struct sw_ckpt *ck);

const struct sw_ckpt_tensor *sw_ckpt_find(const struct sw_ckpt *ck, const char *name);
/* Raw bytes of t into dst[t->length], hash checked (-SW_EHASH, logged). */
int sw_ckpt_read_raw(const struct sw_ckpt *ck, const struct sw_ckpt_tensor *t, void *dst)
    SW_WARN_UNUSED;
/* Exactly the tensors of lay into host slabs (m, v may be NULL: skipped),
 * shapes checked; *st (may be NULL) from the saved stage that owned
 * lay's first tensor. */
int sw_ckpt_read_stage(const struct sw_ckpt *ck, const struct sw_stage_layout *lay, float *params,
                       float *m, float *v, struct sw_ckpt_stage_state *st) SW_WARN_UNUSED;

/* Steps in dir, newest first, with their state; for `checkpoint list`. */
struct sw_ckpt_entry {
    int step;
    int status;                   /* 0 clean, else why it is not loadable */
    char why[256];
    uint64_t bytes;
    int S;
};
/* *out (sw_free it) holds *n entries; verify: hash every tensor too. */
int sw_ckpt_list(const char *dir, bool verify, struct sw_ckpt_entry **out, int *n) SW_WARN_UNUSED;

/* Hugging Face layout: outdir/model.safetensors + outdir/config.json. */
int sw_ckpt_export(const struct sw_ckpt *ck, const char *outdir) SW_WARN_UNUSED;

/* ---- the in-process pipeline ---- */

/* Restore sim (any stage count: resharding) and, when data is not NULL and
 * the checkpoint has one, the data cursor.  -SW_ECONFIG when the model
 * differs. */
int sw_ckpt_load_sim(const struct sw_ckpt *ck, struct sw_sim *sim, struct sw_data *data)
    SW_WARN_UNUSED;
/* Synchronous save of sim (copy + write); data may be NULL. */
int sw_ckpt_save_sim(const char *dir, const struct sw_sim *sim, const struct sw_data *data,
                     const struct sw_optim_config *oc, uint64_t seed, int keep) SW_WARN_UNUSED;

/* ---- asynchronous saver ---- */

enum sw_ckpt_buf_state { SW_CKPT_BUF_FREE = 0, SW_CKPT_BUF_QUEUED, SW_CKPT_BUF_WRITING };

struct sw_ckpt_buf {
    struct sw_snapshot snap;
    struct sw_ckpt_run run;
    struct sw_ckpt_stage_state *st; /* [S] */
    enum sw_ckpt_buf_state state;
    uint64_t seq;                 /* queue order */
    double block_s;               /* the copy's time */
};

struct sw_ckpt_saver {
    char *dir;
    int keep;
    const struct sw_sim *sim;     /* layouts read by the worker */
    struct sw_optim_config oc;
    uint64_t seed;
    struct sw_ckpt_buf buf[2];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* work queued / a buffer freed */
    bool stop;
    uint64_t seq;
    /* statistics, under mu */
    int n_saved, n_skipped, n_failed, n_queued_behind;
    int last_err;                 /* of the last failed save, 0 if none */
    int last_step;                /* last committed step, -1 */
    double last_block_s, max_block_s, sum_block_s;
    double last_write_s, sum_write_s; /* until the COMMIT is durable (the step loadable) */
    double last_prune_s;          /* the pruning after that commit */
};

/* Two snapshot buffers of sim's size and the worker thread. */
int sw_ckpt_saver_init(struct sw_ckpt_saver *sv, const struct sw_sim *sim, const char *dir,
                       int keep, const struct sw_optim_config *oc, uint64_t seed) SW_WARN_UNUSED;
/* Copy the state (blocking part, logged) and queue the write.  0 queued,
 * -SW_EAGAIN skipped (both buffers busy; logged). */
int sw_ckpt_saver_save(struct sw_ckpt_saver *sv, const struct sw_sim *sim,
                       const struct sw_data *data) SW_WARN_UNUSED;
/* Wait until nothing is queued or being written; the last failure's code or 0. */
int sw_ckpt_saver_wait(struct sw_ckpt_saver *sv) SW_WARN_UNUSED;
/* Wait, stop the worker, free the buffers. */
void sw_ckpt_saver_release(struct sw_ckpt_saver *sv);

#endif
