/*
 * compute.c - the stage's math of a swarmd training node (see compute.h).
 */
#include "sw.h"

#include <math.h>
#include <sodium.h>
#include <string.h>

#include "checkfree.h"
#include "compute.h"

int
sw_compute_init(struct sw_compute *c, const struct sw_manifest *man, int stage,
                const char *device, int threads, const char *data)
{
    enum sw_device dev;
    const char *path;
    bool plus = man->recovery_mode == SW_RECOVERY_CHECKFREE_PLUS;
    int err;

    memset(c, 0, sizeof(*c));
    c->man = man;
    c->S = man->stages;
    c->stage = stage;
    c->B = man->batch;
    c->T = man->T;
    c->M = man->micro;
    if (sw_device_parse(device, &dev) < 0) {
        sw_log(SW_LOG_ERROR, "--device: want auto, cpu or cuda, got '%s'", device);
        return -SW_ECONFIG;
    }
    if ((err = sw_kernels_pick(dev, &c->k)) < 0)
        return err;
    if (threads > 0)
        c->k->set_threads(threads);
    c->threads = threads;
    /* CheckFree+: stages 0 and S-1 hold two visits of a swapped microbatch */
    if ((err = sw_stage_init(&c->st, c->k, &man->model, c->S, stage, c->B, c->T,
                             c->M * (plus && (stage == 0 || stage == c->S - 1) ? 2 : 1),
                             SW_STAGE_NO_INIT)) < 0)
        return err;
    c->have_st = true;
    if ((err = sw_optim_init(&c->opt, &man->optim, &c->st)) < 0)
        return err;
    c->have_opt = true;
    c->host = sw_malloc_big(c->st.lay.numel * sizeof(float));
    c->tok = sw_malloc((size_t)c->B * c->T * sizeof(int32_t));
    c->tg = sw_malloc((size_t)c->B * c->T * sizeof(int32_t));
    if (!c->host || !c->tok || !c->tg)
        return -SW_ENOMEM;
    for (int i = 0; i < 2 && plus; i++) {
        if ((err = sw_stage_layout_init(&c->owner[i], &man->model, c->S, i ? c->S - 1 : 0)) < 0)
            return err;
        c->have_owner[i] = true;
    }
    if (stage == 0) {
        path = data && data[0] ? data : man->data;
        if (!path[0]) {
            sw_log(SW_LOG_ERROR, "stage 0 reads the data: give --data PATH or [data] path");
            return -SW_ECONFIG;
        }
        if ((err = sw_data_open(&c->data, path, man->model.vocab_size, man->val_frac,
                                man->seed)) < 0)
            return err;
        c->have_data = true;
    }
    sw_log(SW_LOG_INFO,
           "stage %d of %d: blocks [%d, %d)%s%s, %.2fM params, batch %d x %d x %d micro, %s",
           stage, c->S, c->st.lay.l0, c->st.lay.l1, c->st.lay.has_embed ? " + embedding" : "",
           c->st.lay.has_head ? " + head" : "", c->st.lay.numel / 1e6, c->B, c->T, c->M,
           c->k->name);
    return 0;
}

static void job_stop(struct sw_compute *c);

void
sw_compute_release(struct sw_compute *c)
{
    job_stop(c);
    if (c->have_data)
        sw_data_release(&c->data);
    if (c->have_opt)
        sw_optim_release(&c->opt);
    if (c->have_st)
        sw_stage_release(&c->st);
    for (int i = 0; i < 2; i++)
        if (c->have_owner[i])
            sw_stage_layout_release(&c->owner[i]);
    sw_free_big(c->host);
    sw_free(c->tok);
    sw_free(c->tg);
    memset(c, 0, sizeof(*c));
}

/* Runs err = call, then the backend's sync, adding the time to compute_s. */
static int
timed(struct sw_compute *c, int err, double t0)
{
    if (err >= 0)
        err = c->k->sync();
    c->compute_s += sw_now_s() - t0;
    return err;
}

static int
d2h(struct sw_compute *c, float *host, const float *dev, size_t n)
{
    int err = c->k->copy_d2h(host, dev, n * sizeof(float));

    return err < 0 ? err : c->k->sync();
}

static int
h2d(struct sw_compute *c, float *dev, const float *host, size_t n)
{
    int err = c->k->copy_h2d(dev, host, n * sizeof(float));

    return err < 0 ? err : c->k->sync();
}

/* The parameters' hash (the op's, and the update's). */
static int
hash_params(struct sw_compute *c, uint8_t out[32])
{
    size_t n = c->st.lay.numel;
    int err;

    if ((err = d2h(c, c->host, c->st.params, n)) < 0)
        return err;
    crypto_generichash(out, 32, (const uint8_t *)c->host, n * sizeof(float), NULL, 0);
    return 0;
}

/* The update op's work (trainer.h), on whichever thread runs it. */
static int
update_run(struct sw_compute *c, const struct sw_compute_job *j)
{
    struct sw_update *out = j->out;
    size_t n = c->st.lay.numel;
    int err;

    if (j->ngrads > 0) { /* summed in the trainer's order, as swarmsim does */
        memset(c->host, 0, n * sizeof(float));
        for (int r = 0; r < j->ngrads; r++)
            for (size_t i = 0; i < n; i++)
                c->host[i] += j->grads[r][i];
        if ((err = h2d(c, c->st.grads, c->host, n)) < 0)
            return err;
    }
    out->lr = sw_lr_at(&c->man->optim, (int)j->step);
    if ((err = sw_optim_update(&c->opt, &c->st, out->lr)) < 0)
        return err;
    out->norm = c->opt.last_norm;
    if ((err = hash_params(c, out->hash)) < 0)
        return err;
    memcpy(c->hash, out->hash, 32);
    c->hash_ok = true;
    return sw_stage_zero_grad(&c->st);
}

/* ---- compute apart: one job at a time on the struct's thread ---- */

/* The job of c->job, on whichever thread runs it. */
static void
job_run(struct sw_compute *c)
{
    double t0 = sw_now_s();

    c->job.loss = 0;
    switch (c->job.kind) {
    case SW_JOB_FORWARD:
        c->job.err = timed(c, sw_stage_forward(&c->st, c->job.u, c->job.parts, c->job.tokens,
                                               c->job.x_in, c->job.targets, c->job.x_out,
                                               &c->job.loss), t0);
        break;
    case SW_JOB_BACKWARD:
        c->job.err = timed(c, sw_stage_backward(&c->st, c->job.u, c->job.x_in, c->job.x_out,
                                                c->job.scale), t0);
        break;
    case SW_JOB_INIT: /* not compute time: the step's figures leave it out */
        if ((c->job.err = sw_stage_init_params(&c->st, c->job.seed)) >= 0 &&
            (c->job.err = hash_params(c, c->hash)) >= 0)
            c->hash_ok = true;
        break;
    case SW_JOB_UPDATE: /* nor this */
        c->job.err = c->job.out->err = update_run(c, &c->job);
        c->job.out->took_ms = (sw_now_s() - t0) * 1000.0;
        break;
    }
}

static void *
worker(void *arg)
{
    struct sw_compute *c = arg;

    if (c->threads > 0) /* OpenMP's count is the thread's own */
        c->k->set_threads(c->threads);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->quit && c->jstate != SW_JOB_RUNNING)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->quit)
            break;
        pthread_mutex_unlock(&c->mu);
        job_run(c);
        pthread_mutex_lock(&c->mu);
        c->jstate = SW_JOB_DONE;
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
        c->done(c->done_arg);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int
sw_compute_apart(struct sw_compute *c, void (*done)(void *arg), void *arg)
{
    int err;

    if (c->apart)
        return 0;
    c->done = done;
    c->done_arg = arg;
    c->jstate = SW_JOB_IDLE;
    c->quit = false;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if ((err = pthread_create(&c->thread, NULL, worker, c)) != 0) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        sw_log(SW_LOG_WARN, "no compute thread (%s): the loop computes", strerror(err));
        return -SW_ENOMEM;
    }
    c->apart = true;
    return 0;
}

/* Waits until no job runs (its result, if any, stays to be taken). */
#define job_wait(c) job_wait_in(c, __func__)
static void
job_wait_in(struct sw_compute *c, const char *op)
{
    double t0, waited;

    if (!c->apart)
        return;
    t0 = sw_now_s();
    pthread_mutex_lock(&c->mu);
    while (c->jstate == SW_JOB_RUNNING)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    /* the caller's loop was held meanwhile: a long wait is worth knowing of */
    if ((waited = sw_now_s() - t0) > 0.2)
        SW_LOG_RATELIMITED(SW_LOG_INFO, 10000, "%s waited %.0f ms for the compute in flight (the "
                           "loop was held)", op, waited * 1e3);
}

/*
 * A read of the parameters, AdamW moments or scalars (a copy's STATE
 * pieces, a rebuild's, a checkpoint's): a forward or backward in flight
 * reads them too and writes none, so in host memory (the CPU backend) the
 * read goes on beside it; an update, an init or a device's stream is
 * waited for.  A copy's source waited up to a block's compute per piece
 * served, its loop held: 831 and 919 ms in the two steps of
 * llama124_bench's late replica's copy (2026-12-07).  No job starts
 * meanwhile: only the caller's thread starts them.
 */
#define read_wait(c) read_wait_in(c, __func__)
static void
read_wait_in(struct sw_compute *c, const char *op)
{
    bool beside = false;

    if (c->apart && strcmp(c->k->name, "cpu") == 0) {
        pthread_mutex_lock(&c->mu);
        beside = c->jstate == SW_JOB_RUNNING &&
                 (c->job.kind == SW_JOB_FORWARD || c->job.kind == SW_JOB_BACKWARD);
        pthread_mutex_unlock(&c->mu);
    }
    if (!beside)
        job_wait_in(c, op);
}

static void
job_stop(struct sw_compute *c)
{
    if (!c->apart)
        return;
    pthread_mutex_lock(&c->mu);
    c->quit = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL); /* a job running is finished first */
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    c->apart = false;
}

/* Runs c->job apart (SW_COMPUTE_PENDING) or here (its status). */
static int
job_start(struct sw_compute *c, float *loss)
{
    if (!c->apart) {
        job_run(c);
        if (loss)
            *loss = c->job.loss;
        return c->job.err;
    }
    pthread_mutex_lock(&c->mu);
    c->jstate = SW_JOB_RUNNING; /* the trainer starts one only when none is in flight */
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return SW_COMPUTE_PENDING;
}

bool
sw_compute_take(struct sw_compute *c, int *err, float *loss)
{
    bool done;

    if (!c->apart)
        return false;
    pthread_mutex_lock(&c->mu);
    if ((done = c->jstate == SW_JOB_DONE)) {
        c->jstate = SW_JOB_IDLE;
        *err = c->job.err;
        *loss = c->job.loss;
    }
    pthread_mutex_unlock(&c->mu);
    return done;
}

static void
op_cancel(void *m)
{
    struct sw_compute *c = m;

    if (!c->apart)
        return;
    job_wait(c);
    pthread_mutex_lock(&c->mu);
    c->jstate = SW_JOB_IDLE; /* its result is dropped */
    pthread_mutex_unlock(&c->mu);
}

static int
op_forward(void *m, int u, unsigned parts, const int32_t *tokens, const float *x_in,
           const int32_t *targets, float *x_out, float *loss)
{
    struct sw_compute *c = m;

    job_wait(c);
    c->job = (struct sw_compute_job){.kind = SW_JOB_FORWARD, .u = u, .parts = parts,
                                     .tokens = tokens, .targets = targets, .x_in = x_in,
                                     .x_out = x_out};
    return job_start(c, loss);
}

static int
op_backward(void *m, int u, const float *dx_in, float *dx_out, float scale)
{
    struct sw_compute *c = m;

    job_wait(c);
    c->job = (struct sw_compute_job){.kind = SW_JOB_BACKWARD, .u = u, .x_in = dx_in,
                                     .x_out = dx_out, .scale = scale};
    return job_start(c, NULL);
}

static int
op_zero_grad(void *m)
{
    job_wait(m);
    return sw_stage_zero_grad(&((struct sw_compute *)m)->st);
}

static int
op_grads_get(void *m, float *host)
{
    struct sw_compute *c = m;

    job_wait(c);

    return d2h(c, host, c->st.grads, c->st.lay.numel);
}

static int
op_update(void *m, uint64_t step, const float *const *grads, int ngrads,
          struct sw_update *out)
{
    struct sw_compute *c = m;

    job_wait(c);
    c->hash_ok = false;
    memset(out, 0, sizeof(*out));
    c->job = (struct sw_compute_job){.kind = SW_JOB_UPDATE, .step = step, .grads = grads,
                                     .ngrads = ngrads, .out = out};
    return job_start(c, NULL);
}

static int
op_hash(void *m, uint8_t out[32])
{
    struct sw_compute *c = m;
    int err;

    job_wait(c);
    if (!c->hash_ok) {
        if ((err = hash_params(c, c->hash)) < 0)
            return err;
        c->hash_ok = true;
    }
    memcpy(out, c->hash, 32);
    return 0;
}

static float *
slab(struct sw_compute *c, int which)
{
    return which == 0 ? c->st.params : which == 1 ? c->opt.m : c->opt.v;
}

static int
op_read(void *m, int which, size_t off, size_t n, float *host)
{
    struct sw_compute *c = m;

    read_wait(c);

    if (which < 0 || which > 2 || off > c->st.lay.numel || n > c->st.lay.numel - off)
        return -SW_EINVAL;
    return d2h(c, host, slab(c, which) + off, n);
}

static int
op_write(void *m, const float *host, const struct sw_stage_scalars *sc)
{
    struct sw_compute *c = m;
    size_t n = c->st.lay.numel;
    int err;

    job_wait(c);
    c->hash_ok = false;
    for (int w = 0; w < 3; w++)
        if ((err = h2d(c, slab(c, w), host + (size_t)w * n, n)) < 0)
            return err;
    c->opt.t = sc->t;
    c->opt.lr_mult = sc->lr_mult;
    c->opt.last_norm = sc->last_norm;
    c->opt.last_norm_clipped = sc->last_norm_clipped;
    return 0;
}

static void
op_scalars(void *m, struct sw_stage_scalars *sc)
{
    struct sw_compute *c = m;

    read_wait(c);
    sc->t = c->opt.t;
    sc->lr_mult = c->opt.lr_mult;
    sc->last_norm = isfinite(c->opt.last_norm) ? c->opt.last_norm : 0.0f;
    sc->last_norm_clipped = isfinite(c->opt.last_norm_clipped) ? c->opt.last_norm_clipped : 0.0f;
}

/* Seconds for a big stage (page faults, the normal draws): apart too. */
static int
op_init(void *m, uint64_t seed)
{
    struct sw_compute *c = m;

    job_wait(c);
    c->hash_ok = false;
    c->job = (struct sw_compute_job){.kind = SW_JOB_INIT, .seed = seed};
    return job_start(c, NULL);
}

static size_t
op_stage_numel(void *m, int s)
{
    struct sw_compute *c = m;
    struct sw_stage_layout lay;
    size_t n;

    if (s == c->stage)
        return c->st.lay.numel;
    if (sw_stage_layout_init(&lay, &c->man->model, c->S, s) < 0)
        return 0;
    n = lay.numel;
    sw_stage_layout_release(&lay);
    return n;
}

/* A parameters-only stage over host params fetched from stage s (on a GPU
 * over a device copy, *dev, which the caller frees). */
static int
view(struct sw_compute *c, struct sw_stage *v, int s, const float *host, float **dev)
{
    size_t bytes = op_stage_numel(c, s) * sizeof(float);
    float *p = (float *)host;
    int err;

    *dev = NULL;
    if (c->k != &sw_kernels_cpu) {
        if (!(p = *dev = c->k->alloc(bytes)))
            return -SW_ENOMEM;
        if ((err = h2d(c, p, host, bytes / sizeof(float))) < 0)
            return err;
    }
    return sw_stage_view_init(v, c->k, &c->man->model, c->S, s, p);
}

/* The replica tensors of kind in lay (1 or 2 of them); -SW_EINVAL when absent. */
static int
rep_tensors(const struct sw_stage_layout *lay, int kind, const struct sw_tensor_info **t)
{
    return sw_checkfree_replica_tensors(lay, (enum sw_checkfree_replica_kind)kind, t);
}

static int
rebuild_plus(struct sw_compute *c, const struct sw_stage *src, const struct sw_rebuild *rb,
             const struct sw_checkfree_config *cc)
{
    const struct sw_tensor_info *t[2];
    size_t off = 0;
    int err = sw_checkfree_copy_blocks(&c->st, src), n;

    if (err >= 0 && rb->rep) {
        if ((n = rep_tensors(&c->st.lay, c->stage == 0 ? 0 : 1, t)) < 0)
            return n;
        for (int i = 0; i < n && err >= 0; i++) {
            if (off + t[i]->numel > rb->rep_numel)
                return -SW_ESHAPE;
            err = h2d(c, c->st.params + t[i]->offset, rb->rep + off, t[i]->numel);
            off += t[i]->numel;
        }
    }
    if (err >= 0)
        err = sw_checkfree_reset_optim(&c->opt, cc->lr_bump);
    return err;
}

static int
op_rebuild(void *m, struct sw_rebuild *rb)
{
    struct sw_compute *c = m;
    struct sw_checkfree_config cc;
    struct sw_stage v[2];
    struct sw_optim po, no;
    float *dev[2] = {NULL, NULL};
    bool have[2] = {false, false};
    double t0 = sw_now_s();
    int err = 0;

    job_wait(c);
    c->hash_ok = false;
    sw_checkfree_config_default(&cc);
    for (int i = 0; i < (rb->plus ? 1 : 2) && err >= 0; i++)
        have[i] = (err = view(c, &v[i], rb->src_stage[i], rb->src[i], &dev[i])) >= 0;
    if (err >= 0 && rb->plus) {
        err = rebuild_plus(c, &v[0], rb, &cc);
    } else if (err >= 0) {
        memset(&po, 0, sizeof(po));
        memset(&no, 0, sizeof(no));
        po.last_norm = po.last_norm_clipped = (float)rb->src_norm[0];
        no.last_norm = no.last_norm_clipped = (float)rb->src_norm[1];
        err = sw_checkfree_rebuild(&c->st, &c->opt, SW_CF_CHECKFREE, &v[0], &po, &v[1], &no, &cc,
                                   rb->seed);
    }
    for (int i = 0; i < 2; i++) {
        if (have[i])
            sw_stage_release(&v[i]);
        if (dev[i])
            c->k->free(dev[i]);
    }
    if (err >= 0)
        err = c->k->sync();
    rb->took_s = sw_now_s() - t0;
    return err;
}

static size_t
op_rep_numel(void *m, int kind)
{
    struct sw_compute *c = m;
    const struct sw_tensor_info *t[2];
    size_t numel = 0;
    int n;

    if (!c->have_owner[kind] || (n = rep_tensors(&c->owner[kind], kind, t)) < 0)
        return 0;
    for (int i = 0; i < n; i++)
        numel += t[i]->numel;
    return numel;
}

static int
op_rep_read(void *m, int kind, float *host)
{
    struct sw_compute *c = m;
    const struct sw_tensor_info *t[2];
    size_t off = 0;
    int n, err = 0;

    job_wait(c);

    if ((n = rep_tensors(&c->st.lay, kind, t)) < 0)
        return n;
    for (int i = 0; i < n && err >= 0; i++) {
        err = d2h(c, host + off, c->st.params + t[i]->offset, t[i]->numel);
        off += t[i]->numel;
    }
    return err;
}

static int
op_batch(void *m, int32_t *tokens, int32_t *targets)
{
    struct sw_compute *c = m;

    return sw_data_next_batch(&c->data, tokens, targets, c->B, c->T);
}

static void
op_data_mark(void *m)
{
    struct sw_compute *c = m;

    sw_data_cursor_get(&c->data, &c->mark);
}

static void
op_data_rewind(void *m)
{
    struct sw_compute *c = m;

    sw_data_cursor_set(&c->data, &c->mark);
}

/* The cursor of step, by replaying the stream from the seed. */
static int
op_data_seek(void *m, uint64_t step)
{
    struct sw_compute *c = m;
    int err;

    if (!c->have_data)
        return 0;
    sw_data_seed(&c->data, c->man->seed);
    for (uint64_t s = 0; s < step; s++)
        for (int mb = 0; mb < c->M; mb++)
            if ((err = sw_data_next_batch(&c->data, c->tok, c->tg, c->B, c->T)) < 0)
                return err;
    return 0;
}

static double
op_compute_s(void *m)
{
    job_wait(m);
    return ((struct sw_compute *)m)->compute_s;
}

const struct sw_stage_ops sw_compute_ops = {
    .forward = op_forward,
    .backward = op_backward,
    .zero_grad = op_zero_grad,
    .grads_get = op_grads_get,
    .update = op_update,
    .hash = op_hash,
    .read = op_read,
    .write = op_write,
    .scalars = op_scalars,
    .init = op_init,
    .rebuild = op_rebuild,
    .stage_numel = op_stage_numel,
    .rep_numel = op_rep_numel,
    .rep_read = op_rep_read,
    .batch = op_batch,
    .data_mark = op_data_mark,
    .data_rewind = op_data_rewind,
    .data_seek = op_data_seek,
    .compute_s = op_compute_s,
    .cancel = op_cancel,
};
