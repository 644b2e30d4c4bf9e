/*
 * compute.h - the stage's math of a swarmd training node: struct
 * sw_stage_ops (trainer.h) over src/stage.h, src/optim.h, src/data.h,
 * src/checkfree.h and the kernels (CPU or CUDA).
 *
 * One struct sw_compute per node: the stage's parameters, gradients and
 * activations (sw_stage), its AdamW state (sw_optim), on stage 0 the data
 * stream, and what a CheckFree(+) rebuild needs (parameters-only views of
 * the fetched neighbours, a device copy of them on a GPU).  Compute time is
 * measured here with the wall clock (the trainer core has none).
 *
 * Compute apart: after sw_compute_apart, forward, backward, the update
 * and the seed's initialisation (each with the new parameters' hash) run on the
 * struct's own thread and return SW_COMPUTE_PENDING (trainer.h) at once;
 * done(arg) is called on that thread when one is done (uv_async_send is
 * what swarmd's loop gives it), and the loop then takes the result with
 * sw_compute_take and hands it to sw_trainer_computed.  Every other op
 * waits for the one in flight first, so the stage's buffers and the
 * backend (a CUDA stream, cuBLAS) are used by one thread at a time; only a
 * read of the state on the CPU backend goes on beside a forward or
 * backward, which write neither the parameters nor the moments.  The
 * thread sets the backend's thread count again (OpenMP's is per thread),
 * so results are bit-identical to computing in the call.
 *
 * Ownership: the caller owns the struct and the manifest, which must
 * outlive it.  Threading: the caller's thread calls everything; done runs
 * on the compute thread.
 */
#ifndef SW_COMPUTE_H
#define SW_COMPUTE_H

#include "sw.h"

#include <pthread.h>

#include "data.h"
#include "kernels.h"
#include "manifest.h"
#include "optim.h"
#include "stage.h"
#include "trainer.h"

struct sw_compute {
    const struct sw_manifest *man;
    const struct sw_kernels *k;
    int S, stage, B, T, M;
    struct sw_stage st;
    struct sw_optim opt;
    bool have_st, have_opt, have_data;
    struct sw_data data;
    struct sw_data_cursor mark;
    double compute_s;
    float *host;             /* scratch [numel] (hashes) */
    /* the parameters' hash as the last init, update or hash op found them
     * (the first two on the thread that ran them), until anything else
     * writes them: the hash op answers with it instead of hashing again in
     * the caller's loop (a copy's install asked twice) */
    uint8_t hash[32];
    bool hash_ok;
    int32_t *tok, *tg;       /* scratch [B * T] (data replay) */
    struct sw_stage_layout owner[2]; /* stage 0 and S-1: where the replicas come from */
    bool have_owner[2];
    int threads;
    /* compute apart (sw_compute_apart): one job at a time */
    bool apart;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum { SW_JOB_IDLE, SW_JOB_RUNNING, SW_JOB_DONE } jstate;
    bool quit;
    struct sw_compute_job {
        enum { SW_JOB_FORWARD, SW_JOB_BACKWARD, SW_JOB_INIT, SW_JOB_UPDATE } kind;
        uint64_t seed;       /* SW_JOB_INIT */
        uint64_t step;       /* SW_JOB_UPDATE: the step, the gradients to sum, the result */
        const float *const *grads;
        int ngrads;
        struct sw_update *out;
        int u;
        unsigned parts;
        const int32_t *tokens, *targets;
        const float *x_in;   /* a forward's input, a backward's gradient in */
        float *x_out;
        float scale;
        int err;
        float loss;
    } job;
    void (*done)(void *arg);
    void *done_arg;
};

/*
 * Sets up stage `stage` of the manifest's model on device ("auto", "cpu",
 * "cuda") with threads (0: the backend's default); stage 0 opens data (or
 * the manifest's [data] path when ""): -SW_ECONFIG then when none.  The
 * parameters stay zero until ops->init, a copy or a rebuild fills them.
 */
int sw_compute_init(struct sw_compute *c, const struct sw_manifest *man, int stage,
                    const char *device, int threads, const char *data) SW_WARN_UNUSED;
void sw_compute_release(struct sw_compute *c);
/* Forward and backward run apart from now on (see above). */
int sw_compute_apart(struct sw_compute *c, void (*done)(void *arg), void *arg) SW_WARN_UNUSED;
/* The result of the job done, once: true with its status and loss; false
 * when none is done (still running, or cancelled). */
bool sw_compute_take(struct sw_compute *c, int *err, float *loss);

extern const struct sw_stage_ops sw_compute_ops;

#endif
