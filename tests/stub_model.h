/*
 * stub_model.h - a stub model for the swarm simulator (test_swarm_sim.c):
 * struct sw_stage_ops (peers/trainer.h) over a handful of floats per stage,
 * built so that the simulator can check the protocol, not the math.
 *
 * It is not a language model.  Each microbatch of the data stream is its
 * global index k = step * M + m (the tokens and targets carry k); an
 * activation carries k and a hop count, a gradient carries k; a stage's
 * backward adds, per visit, one count, k / M and a bit naming the visit
 * (m + visit * M) to its gradient.  So at each update the stage can tell
 * whether every visit of the step came through it exactly once, from the
 * step being updated and with its own activation (sw_stub_check); the last
 * stage's loss of microbatch k is a known function of k (sw_stub_loss).
 *
 * Parameters: params[0] is the lineage (0: the run seed's state of the
 * stage; a rebuild draws a new one), params[1] counts updates, the rest
 * move with the gradients.  Replicas of one lineage stay bit-identical; a
 * copy inherits its source's lineage.  Compute costs simulated time:
 * every forward and backward adds cost_ms to *clock_ms, which the
 * simulator turns into the node being busy.  With apart set (swarmd's
 * compute thread, peers/compute.h) they, and the seed's initialisation,
 * compute at once (an init's state and an update are written at sw_stub_computed) but return
 * SW_COMPUTE_PENDING and leave the loop free: the simulator hands the
 * result (pending_loss) to sw_trainer_computed cost_ms later, if gen is
 * still the job's (cancel counts it up).
 */
#ifndef SW_STUB_MODEL_H
#define SW_STUB_MODEL_H

#include "sw.h"

#include "trainer.h"

#define SW_STUB_BASE 6 /* floats before the free ones */
#define SW_STUB_VOCAB 256 /* targets are k mod this: the manifest's vocab_size */

struct sw_stub {
    int S, stage, M, V;
    bool plus;
    size_t N, C, P;             /* activation rows and width; parameters */
    float *w[3];                /* params, AdamW m, v: [P] each */
    float *g;                   /* gradients [P] */
    struct sw_stage_scalars sc;
    int64_t cursor, mark;       /* the data stream: the next microbatch's k */
    int64_t *slot_k;            /* [V * M] the microbatch of each activation slot */
    double cost_ms, compute_ms;
    uint64_t *clock_ms;         /* the simulator's busy time of this node */
    uint64_t *lineages;         /* the simulator's lineage counter */
    /* what the checks found (the simulator reads these) */
    int violations;
    char why[256];
    int partial;                /* updates that missed a gone replica's share */
    int installs;               /* state writes, inits and rebuilds so far */
    int last_install;           /* 0 init, 1 write (copy, restore), 2 checkfree, 3 checkfree+ */
    /* compute apart (see above) */
    bool apart, pending, scheduled;
    uint64_t gen;
    float pending_loss;
    bool pending_init;          /* the job pending is the seed's initialisation */
    uint64_t pending_seed;
    bool pending_update;        /* the job pending is the update (applied when computed, or
                                 * at a cancel: the real one runs to its end) */
    uint64_t upd_step;
    const float *const *upd_grads;
    int upd_ngrads;
    struct sw_update *upd_out;
};

extern const struct sw_stage_ops sw_stub_ops;

int sw_stub_init(struct sw_stub *s, const struct sw_manifest *man, int stage, double cost_ms,
                 uint64_t *clock_ms, uint64_t *lineages) SW_WARN_UNUSED;
void sw_stub_release(struct sw_stub *s);
/* The job pending apart is done (an init's state, an update are written only now). */
void sw_stub_computed(struct sw_stub *s);
/* Parameters of stage s of S (the stub's own sizes). */
size_t sw_stub_numel(int S, int s);
/* The loss the last stage computes for microbatch k. */
float sw_stub_loss(int64_t k);

#endif
