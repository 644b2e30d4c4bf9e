/*
 * snapshot.h - a host copy of a pipeline's training state (header only).
 *
 * Every stage's parameters and AdamW state (m, v, t, lr_mult) and the step
 * counter: what a checkpoint holds (the caller adds the data cursor).
 * Allocated once, reused by every save.  The simulator fills and restores
 * it (sw_sim_snapshot_* in sim.h); the checkpoint saver (ckpt.h) copies
 * into it and writes it.  It lives apart so that the checkpoint format
 * does not depend on the simulator.
 */
#ifndef SW_SNAPSHOT_H
#define SW_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>

struct sw_snapshot {
    int S;
    float **params, **m, **v; /* [S] x [numel of stage s] host */
    int *t;                   /* [S] */
    float *lr_mult;           /* [S] */
    int step;
    bool valid;               /* something was saved */
    size_t bytes;             /* total bytes of params + m + v */
};

#endif
