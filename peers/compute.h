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
 * Ownership: the caller owns the struct and the manifest, which must
 * outlive it.  Threading: the caller's thread only.
 */
#ifndef SW_COMPUTE_H
#define SW_COMPUTE_H

#include "sw.h"

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
    int32_t *tok, *tg;       /* scratch [B * T] (data replay) */
    struct sw_stage_layout owner[2]; /* stage 0 and S-1: where the replicas come from */
    bool have_owner[2];
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

extern const struct sw_stage_ops sw_compute_ops;

#endif
