/*
 * stub_model.c - the stub model of the swarm simulator (see stub_model.h).
 */
#include "sw.h"

#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "plan.h"
#include "stub_model.h"

size_t
sw_stub_numel(int S, int s)
{
    (void)S;
    return SW_STUB_BASE + 2 + (size_t)s;
}

float
sw_stub_loss(int64_t k)
{
    return 1.0f + (float)(k % 5) * 0.25f;
}

__attribute__((format(printf, 2, 3))) static void
violation(struct sw_stub *s, const char *fmt, ...)
{
    va_list ap;

    if (s->violations++)
        return;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof(s->why), fmt, ap);
    va_end(ap);
}

int
sw_stub_init(struct sw_stub *s, const struct sw_manifest *man, int stage, double cost_ms,
             uint64_t *clock_ms, uint64_t *lineages)
{
    memset(s, 0, sizeof(*s));
    s->S = man->stages;
    s->stage = stage;
    s->M = man->micro;
    s->plus = man->recovery_mode == SW_RECOVERY_CHECKFREE_PLUS;
    s->V = s->plus ? 2 : 1;
    s->N = (size_t)man->batch * man->T;
    s->C = (size_t)man->model.d_model;
    s->P = sw_stub_numel(s->S, stage);
    s->cost_ms = cost_ms;
    s->clock_ms = clock_ms;
    s->lineages = lineages;
    s->sc.lr_mult = 1.0f;
    for (int i = 0; i < 3; i++)
        if (!(s->w[i] = sw_calloc(s->P, sizeof(float))))
            return -SW_ENOMEM;
    if (!(s->g = sw_calloc(s->P, sizeof(float))) ||
        !(s->slot_k = sw_calloc((size_t)s->V * s->M, sizeof(int64_t))))
        return -SW_ENOMEM;
    return 0;
}

void
sw_stub_release(struct sw_stub *s)
{
    for (int i = 0; i < 3; i++)
        sw_free(s->w[i]);
    sw_free(s->g);
    sw_free(s->slot_k);
    memset(s, 0, sizeof(*s));
}

/* The trainer touched the state while the update computed apart (swarmd's
 * op would wait for it, holding the loop: step.h, Compute apart). */
static void
not_updating(struct sw_stub *s, const char *op)
{
    if (s->pending_update)
        violation(s, "%s while the update computed apart", op);
}

/* ... or while its initialisation did. */
static void
settled(struct sw_stub *s, const char *op)
{
    not_updating(s, op);
    if (s->pending_init)
        violation(s, "%s while the seed's initialisation computed apart", op);
}

static void update_now(struct sw_stub *s);

static void
busy(struct sw_stub *s)
{
    settled(s, "a forward or backward");
    if (s->pending)
        violation(s, "a forward or backward started while one was computing apart");
    if (!s->apart)
        *s->clock_ms += (uint64_t)s->cost_ms;
    s->compute_ms += s->cost_ms;
}

/* A forward or backward's status: done now, or pending when apart. */
static int
done(struct sw_stub *s, float loss)
{
    if (!s->apart)
        return 0;
    s->pending = true;
    s->scheduled = false;
    s->pending_loss = loss;
    return SW_COMPUTE_PENDING;
}

static void
op_cancel(void *m)
{
    struct sw_stub *s = m;

    if (s->pending) {
        s->pending = false;
        s->pending_init = false;
        s->gen++;
        if (s->pending_update)
            update_now(s);
    }
}

static int
op_forward(void *m, int u, unsigned parts, const int32_t *tokens, const float *x_in,
           const int32_t *targets, float *x_out, float *loss)
{
    struct sw_stub *s = m;
    int64_t k;

    (void)parts;
    busy(s);
    if (u < 0 || u >= s->V * s->M)
        return -SW_EINVAL;
    if (x_in) {
        k = (int64_t)x_in[0];
        if (k % SW_STUB_VOCAB != targets[0])
            violation(s, "forward: activation of microbatch %lld with targets of %lld",
                      (long long)k, (long long)targets[0]);
        x_out[1] = x_in[1] + 1;
    } else {
        k = tokens[0];
        x_out[1] = 1;
    }
    x_out[0] = (float)k;
    for (size_t i = 2; i < s->N * s->C; i++)
        x_out[i] = 0;
    s->slot_k[u] = k;
    *loss = sw_stub_loss(k);
    return done(s, *loss);
}

static int
op_backward(void *m, int u, const float *dx_in, float *dx_out, float scale)
{
    struct sw_stub *s = m;
    int64_t k = s->slot_k[u];
    int visit = u / s->M, mb = (int)(k % s->M);

    (void)scale;
    busy(s);
    if (dx_in && (int64_t)dx_in[0] != k)
        violation(s, "backward: gradient of microbatch %lld for the activation of %lld",
                  (long long)dx_in[0], (long long)k);
    s->g[2] += 1;
    s->g[3] += (float)(k / s->M);
    s->g[4] += (float)(1 << (mb + visit * s->M));
    for (size_t i = SW_STUB_BASE; i < s->P; i++)
        s->g[i] += 0.001f * (float)(k % 7);
    dx_out[0] = (float)k;
    for (size_t i = 1; i < s->N * s->C; i++)
        dx_out[i] = 0;
    return done(s, 0);
}

static int
op_zero_grad(void *m)
{
    struct sw_stub *s = m;

    not_updating(s, "zero_grad");
    memset(s->g, 0, s->P * sizeof(float));
    return 0;
}

static int
op_grads_get(void *m, float *host)
{
    struct sw_stub *s = m;

    settled(s, "grads_get");
    memcpy(host, s->g, s->P * sizeof(float));
    return 0;
}

/* The visits the step owes this stage: their count and bits. */
static void
expected(const struct sw_stub *s, uint64_t step, int *count, unsigned *bits)
{
    *count = 0;
    *bits = 0;
    for (int mb = 0; mb < s->M; mb++) {
        bool sw = sw_plan_swapped(s->plus, step, s->M, mb);
        for (int v = 0; v < sw_plan_nvisits(s->S, sw, s->stage); v++) {
            (*count)++;
            *bits |= 1u << (mb + v * s->M);
        }
    }
}

/* Every visit of the step exactly once, all of this step (see stub_model.h). */
static void
check_update(struct sw_stub *s, uint64_t step)
{
    int want, count = (int)s->g[2];
    unsigned wbits, bits = (unsigned)s->g[4];

    expected(s, step, &want, &wbits);
    if ((double)s->g[3] != (double)step * count)
        violation(s, "update of step %llu with visits of other steps (sum of steps %.0f)",
                  (unsigned long long)step, s->g[3]);
    else if (count > want || (bits & ~wbits) || __builtin_popcount(bits) != count)
        violation(s, "update of step %llu: a visit counted twice or foreign (bits %x)",
                  (unsigned long long)step, bits);
    else if (count < want)
        s->partial++;
}

static void
update_now(struct sw_stub *s)
{
    struct sw_update *out = s->upd_out;
    double n2 = 0;

    s->pending_update = false;
    if (s->upd_ngrads > 0) { /* the trainer's buffers, read only now */
        memset(s->g, 0, s->P * sizeof(float));
        for (int r = 0; r < s->upd_ngrads; r++)
            for (size_t i = 0; i < s->P; i++)
                s->g[i] += s->upd_grads[r][i];
    }
    check_update(s, s->upd_step);
    for (size_t i = 2; i < s->P; i++)
        n2 += (double)s->g[i] * s->g[i];
    out->norm = sqrt(n2);
    out->lr = 1e-3f * s->sc.lr_mult;
    s->w[0][1] += 1;
    for (size_t i = SW_STUB_BASE; i < s->P; i++) {
        s->w[1][i] = 0.9f * s->w[1][i] + s->g[i];
        s->w[2][i] = 0.99f * s->w[2][i] + s->g[i] * s->g[i];
        s->w[0][i] -= out->lr * s->w[1][i];
    }
    s->sc.t++;
    s->sc.last_norm = s->sc.last_norm_clipped = (float)out->norm;
    crypto_generichash(out->hash, 32, (const uint8_t *)s->w[0], s->P * sizeof(float), NULL, 0);
    memset(s->g, 0, s->P * sizeof(float));
    out->err = 0;
}

/* Apart: nothing changes until sw_stub_computed (or a cancel), and the
 * gradients are read only then (the trainer must leave grads alone). */
static int
op_update(void *m, uint64_t step, const float *const *grads, int ngrads,
          struct sw_update *out)
{
    struct sw_stub *s = m;

    settled(s, "update");
    s->upd_step = step;
    s->upd_grads = grads;
    s->upd_ngrads = ngrads;
    s->upd_out = out;
    s->pending_update = true;
    if (!s->apart) {
        update_now(s);
        return 0;
    }
    return done(s, 0);
}

static int
op_hash(void *m, uint8_t out[32])
{
    struct sw_stub *s = m;

    settled(s, "hash");
    crypto_generichash(out, 32, (const uint8_t *)s->w[0], s->P * sizeof(float), NULL, 0);
    return 0;
}

static int
op_read(void *m, int which, size_t off, size_t n, float *host)
{
    struct sw_stub *s = m;

    settled(s, "read");
    if (which < 0 || which > 2 || off > s->P || n > s->P - off)
        return -SW_EINVAL;
    memcpy(host, s->w[which] + off, n * sizeof(float));
    return 0;
}

static int
op_write(void *m, const float *host, const struct sw_stage_scalars *sc)
{
    struct sw_stub *s = m;

    settled(s, "write");
    for (int w = 0; w < 3; w++)
        memcpy(s->w[w], host + (size_t)w * s->P, s->P * sizeof(float));
    s->sc = *sc;
    s->installs++;
    s->last_install = 1;
    return 0;
}

static void
op_scalars(void *m, struct sw_stage_scalars *sc)
{
    not_updating(m, "scalars");
    *sc = ((struct sw_stub *)m)->sc;
}

static void
init_now(struct sw_stub *s, uint64_t seed)
{
    for (int w = 0; w < 3; w++)
        memset(s->w[w], 0, s->P * sizeof(float));
    for (size_t i = SW_STUB_BASE; i < s->P; i++)
        s->w[0][i] = (float)((seed + (uint64_t)s->stage * 31 + i) % 97) * 0.01f;
    s->sc = (struct sw_stage_scalars){0, 1.0f, 0, 0};
    s->installs++;
    s->last_install = 0;
}

/* Apart: the state stays half-written (zero) until sw_stub_computed. */
static int
op_init(void *m, uint64_t seed)
{
    struct sw_stub *s = m;

    settled(s, "init");
    if (s->pending)
        violation(s, "init while a forward or backward computed apart");
    if (!s->apart) {
        init_now(s, seed);
        return 0;
    }
    for (int w = 0; w < 3; w++)
        memset(s->w[w], 0, s->P * sizeof(float));
    s->pending_init = true;
    s->pending_seed = seed;
    return done(s, 0);
}

void
sw_stub_computed(struct sw_stub *s)
{
    s->pending = false;
    if (s->pending_update)
        update_now(s);
    if (s->pending_init) {
        s->pending_init = false;
        init_now(s, s->pending_seed);
    }
}

static int
op_rebuild(void *m, struct sw_rebuild *rb)
{
    struct sw_stub *s = m;
    size_t p0 = sw_stub_numel(s->S, rb->src_stage[0]);
    size_t p1 = rb->plus ? 1 : sw_stub_numel(s->S, rb->src_stage[1]);
    double a = rb->plus ? 1 : rb->src_norm[0], b = rb->plus ? 0 : rb->src_norm[1];

    settled(s, "rebuild");
    if (!(a + b > 0))
        a = b = 0.5;
    for (int w = 0; w < 3; w++)
        memset(s->w[w], 0, s->P * sizeof(float));
    for (size_t i = SW_STUB_BASE; i < s->P; i++)
        s->w[0][i] = (float)((a * rb->src[0][i % p0] + (rb->plus ? 0 : b * rb->src[1][i % p1])) /
                             (a + b));
    if (rb->rep && rb->rep_numel)
        s->w[0][SW_STUB_BASE] = rb->rep[0];
    s->w[0][0] = (float)++*s->lineages;
    s->sc = (struct sw_stage_scalars){0, 1.1f, 0, 0};
    rb->took_s = 0;
    s->installs++;
    s->last_install = rb->plus ? 3 : 2;
    return 0;
}

static size_t
op_stage_numel(void *m, int stage)
{
    struct sw_stub *s = m;

    return sw_stub_numel(s->S, stage);
}

static size_t
op_rep_numel(void *m, int kind)
{
    (void)m;
    return kind == 0 ? 2 : 3;
}

static int
op_rep_read(void *m, int kind, float *host)
{
    struct sw_stub *s = m;

    not_updating(s, "rep_read");
    for (size_t i = 0; i < op_rep_numel(m, kind); i++)
        host[i] = s->w[0][SW_STUB_BASE + i % (s->P - SW_STUB_BASE)];
    return 0;
}

static int
op_batch(void *m, int32_t *tokens, int32_t *targets)
{
    struct sw_stub *s = m;
    int64_t k = s->cursor++;

    for (size_t i = 0; i < s->N; i++) {
        tokens[i] = (int32_t)k;
        targets[i] = (int32_t)(k % SW_STUB_VOCAB); /* a FWD's targets are checked */
    }
    return 0;
}

static void
op_data_mark(void *m)
{
    struct sw_stub *s = m;

    s->mark = s->cursor;
}

static void
op_data_rewind(void *m)
{
    struct sw_stub *s = m;

    s->cursor = s->mark;
}

static int
op_data_seek(void *m, uint64_t step)
{
    struct sw_stub *s = m;

    s->cursor = (int64_t)step * s->M;
    return 0;
}

static double
op_compute_s(void *m)
{
    return ((struct sw_stub *)m)->compute_ms / 1000.0;
}

const struct sw_stage_ops sw_stub_ops = {
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
