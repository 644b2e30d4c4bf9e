/*
 * checkfree.h - rebuild a lost pipeline stage without a checkpoint
 * (CheckFree and CheckFree+, arXiv 2506.15461 §4.2-4.3), and the baselines
 * the study compares them with.
 *
 * These are functions over stages, optimizers and tensor tables: nothing
 * here knows whether the neighbours live in the same process (swarmsim) or
 * arrived over the network (the networked swarm hands in stages whose params
 * slabs it has filled from the wire).  Every function works on backend
 * memory through the stage's kernel table.
 *
 * CheckFree.  A lost stage i whose neighbours i-1 and i+1 are alive gets,
 * for every tensor of its blocks,
 *     W_i = (w_{i-1} W_{i-1} + w_{i+1} W_{i+1}) / (w_{i-1} + w_{i+1})
 * (kernels.h weighted_average), where w is the neighbour's last gradient L2
 * norm: the pre-clip norm by default (sw_optim.last_norm); after clipping at
 * 1.0 the two weights are often both 1 and the rule collapses to a plain
 * average, so the clipped norm (last_norm_clipped) is a switch
 * (sw_checkfree_config.clipped_norm).  When both weights are 0 or not finite the
 * rule falls back to equal weights.
 *
 * Block mapping.  Block j of the lost stage is rebuilt from local block j of
 * each neighbour (by local index, not global layer), so the neighbours must
 * own as many blocks as the lost stage: sw_checkfree_check refuses
 * otherwise (-SW_ESHAPE with a message naming the three counts).  Only block
 * tensors are rebuilt this way; a stage that also owns the embedding or the
 * head (stage 0, S-1) cannot be rebuilt by plain CheckFree: the caller
 * skips or falls back (swarmsim skips, as the paper does, and reports it).
 *
 * Optimizer.  The rebuilt stage gets fresh AdamW moments and step count
 * (sw_optim_reset) and its learning-rate multiplier set to lr_bump (1.1 by
 * default) relative to the schedule: a newcomer does not know the lost
 * stage's multiplier, so repeated rebuilds of one stage do not compound.
 * Training resumes at the current step.  Nothing else is touched: the
 * neighbours keep their state and multipliers.
 *
 * Baselines (the study's): copy one neighbour's blocks, the uniform average
 * of both neighbours (w = 1, 1), random re-initialisation of the whole stage
 * (model.h initialisation from a fresh seed; embedding and head included, so
 * it also serves boundary stages).  All three take the same fresh optimizer
 * and LR bump as CheckFree, so only the weights differ.
 *
 * CheckFree+ replicas.  Under CheckFree+ stage 1 keeps an exact replica of
 * the embedding and stage S-2 of the final norm and LM head.  This module
 * keeps them in a struct sw_checkfree_replica (backend memory, beside the partner
 * stage rather than inside struct sw_stage, so stage.h needs no change).
 * Choice for now: the replica is a copy refreshed after every optimizer step
 * (sw_checkfree_replica_refresh, copy_d2d), hence bit-identical to its owner after
 * every step; a networked partner that cannot copy every step would apply
 * the same gradients with the same AdamW state, which is bit-identical too
 * on the same backend, and can use the same struct.  A lost boundary stage
 * takes its partner's blocks (sw_checkfree_copy_blocks) and the exact
 * replica (sw_checkfree_replica_restore), then the fresh optimizer and LR bump; a
 * lost partner copies the boundary stage's blocks back and refreshes its
 * replica from the boundary stage's live tensors.
 *
 * Threading: like the stages it touches, one thread at a time.
 */
#ifndef SW_CHECKFREE_H
#define SW_CHECKFREE_H

#include <stdbool.h>

#include "optim.h"
#include "stage.h"

enum sw_checkfree_rule {
    SW_CF_CHECKFREE = 0, /* gradient-norm weighted average of both neighbours */
    SW_CF_UNIFORM,       /* plain average of both neighbours */
    SW_CF_COPY_PREV,     /* copy of the previous stage's blocks */
    SW_CF_COPY_NEXT,     /* copy of the next stage's blocks */
    SW_CF_RANDOM,        /* random re-initialisation of every tensor */
};

struct sw_checkfree_config {
    float lr_bump;     /* learning-rate multiplier of a rebuilt stage; 1.1 */
    bool clipped_norm; /* weigh by the clipped gradient norm instead of the pre-clip one */
};

void sw_checkfree_config_default(struct sw_checkfree_config *cc);

/* The CheckFree weight of a neighbour: its last pre-clip (or clipped) norm. */
float sw_checkfree_weight(const struct sw_optim *o, bool clipped);

/* 0 when stage dst can be rebuilt block by block from a and b (either may be
 * NULL: checks only the other); -SW_ESHAPE when block counts differ, with a
 * reason in why[]. */
int sw_checkfree_check(const struct sw_stage *dst, const struct sw_stage *a,
                       const struct sw_stage *b, char *why, size_t whylen) SW_WARN_UNUSED;

/* Every block tensor of dst = (wa * a + wb * b) / (wa + wb), block j from
 * local block j of a and b.  Non-block tensors of dst are left alone.
 * wa = wb = 0 (or non-finite) means equal weights.  -SW_ESHAPE (logged) when
 * the block counts differ. */
int sw_checkfree_average_blocks(struct sw_stage *dst, const struct sw_stage *a, float wa,
                                const struct sw_stage *b, float wb) SW_WARN_UNUSED;

/* Block tensors of dst = those of src, by local index. */
int sw_checkfree_copy_blocks(struct sw_stage *dst, const struct sw_stage *src) SW_WARN_UNUSED;

/* Fresh AdamW moments and step count; lr_mult = lr_bump. */
int sw_checkfree_reset_optim(struct sw_optim *o, float lr_bump) SW_WARN_UNUSED;

/* One rebuild with neighbours prev and next (either NULL when absent) and
 * their optimizers (for the weights): the rule's weights, then the fresh
 * optimizer.  -SW_ELOST (logged) when the rule needs a neighbour that is
 * NULL or when dst owns the embedding or head and the rule is not
 * SW_CF_RANDOM; -SW_ESHAPE when block counts differ. */
int sw_checkfree_rebuild(struct sw_stage *dst, struct sw_optim *dst_opt, enum sw_checkfree_rule rule,
                         const struct sw_stage *prev, const struct sw_optim *prev_opt,
                         const struct sw_stage *next, const struct sw_optim *next_opt,
                         const struct sw_checkfree_config *cc, uint64_t seed) SW_WARN_UNUSED;

/* ---- CheckFree+'s swapped route ---- */

/* One hop of a microbatch's route: stage `stage` runs `parts` (SW_PART_*)
 * on its visit `visit` (0, or 1 for the second visit to stage 0 or S-1). */
struct sw_hop {
    int stage, visit;
    unsigned parts;
};

/*
 * Hop h of a microbatch's route through S stages: plain, hop h is stage h
 * whole (S hops); swapped (CheckFree+, every odd microbatch), S + 2 hops:
 * the embedding of 0, stage 1, the blocks of 0 (its second visit), stages
 * 2..S-3, the blocks of S-1, stage S-2, the final norm and head of S-1 (its
 * second visit); so stage 1 learns to follow the embedding and stage S-2 to
 * precede the head, and each can stand in for its boundary stage.  The one
 * definition the simulator (sim.c) and the swarm (peers/plan.h) share.
 */
struct sw_hop sw_checkfree_hop(int S, bool swapped, int h);

/* ---- CheckFree+ replicas ---- */

enum sw_checkfree_replica_kind {
    SW_CF_REPLICA_EMBED = 0, /* model.embed_tokens.weight, kept by stage 1 */
    SW_CF_REPLICA_HEAD = 1,  /* model.norm.weight + lm_head.weight, kept by stage S-2 */
};

struct sw_checkfree_replica {
    const struct sw_kernels *k;
    enum sw_checkfree_replica_kind kind;
    int ntensors;                 /* 1 (embed) or 2 (norm, head) */
    struct sw_tensor_info t[2];   /* names and shapes; offset: into data */
    float *data;                  /* backend memory, the tensors back to back */
    size_t numel;
};

/* The tensors of a replica of kind in lay, in their replica order (the
 * embedding; or the final norm, then the head): how many (1 or 2), or
 * -SW_EINVAL when lay lacks them. */
int sw_checkfree_replica_tensors(const struct sw_stage_layout *lay,
                                 enum sw_checkfree_replica_kind kind,
                                 const struct sw_tensor_info **t) SW_WARN_UNUSED;

/* Allocates a replica shaped like owner's embedding (or norm + head);
 * -SW_EINVAL when owner has no such tensors (tied heads are refused). */
int sw_checkfree_replica_init(struct sw_checkfree_replica *r, const struct sw_stage *owner,
                       enum sw_checkfree_replica_kind kind) SW_WARN_UNUSED;
void sw_checkfree_replica_release(struct sw_checkfree_replica *r);
/* Copy the owner's current tensors into the replica. */
int sw_checkfree_replica_refresh(struct sw_checkfree_replica *r, const struct sw_stage *owner) SW_WARN_UNUSED;
/* Copy the replica into dst's tensors of the same names. */
int sw_checkfree_replica_restore(const struct sw_checkfree_replica *r, struct sw_stage *dst) SW_WARN_UNUSED;
/* True when the replica and owner's tensors are bit-identical. */
bool sw_checkfree_replica_equal(const struct sw_checkfree_replica *r, const struct sw_stage *owner);

#endif
