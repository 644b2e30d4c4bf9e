/*
 * test_kernels.c - the CPU backend of kernels.h against finite differences,
 * known answers and naive double-precision references.
 *
 * Gradient checks: every backward is compared with central differences of a
 * random linear functional of its forward, L = sum(out * r), where L is
 * accumulated in double from the float kernel's output and the step is the
 * float-representable x[i] +- h (h = 1e-3).  The error of one entry is
 * |analytic - fd| / max(1, |fd|); its maximum over all inputs and weights of
 * the op is printed as a diagnostic.  Gradients that kernels.h says are
 * accumulated are checked on top of a random prior content; gradients that
 * are written start out as garbage, so a missed element shows.
 *
 * Shapes are small and odd (N = 7, C = 12, T = 5, NH = 4, NKV = 2, HS = 6)
 * plus a few larger ones that cross the backend's internal blocking (64-row
 * attention blocks, the GEMM split over threads).  The backend is set to two
 * OpenMP threads; the small cases stay under its threading threshold, the
 * stage-sized pass at the end runs every op threaded, twice (bit-identical)
 * and once more on one thread.  Seeds are fixed; timing is never asserted.
 */
#include "sw.h"

#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "tap.h"

static const struct sw_kernels *K = &sw_kernels_cpu;

/* ---- helpers ---- */

static uint64_t rng_state;

static void
rng_seed(uint64_t s)
{
    rng_state = s;
}

static uint64_t
rng_next(void)
{
    return sw_splitmix64(&rng_state);
}

/* uniform in [-1, 1) */
static float
rng_unif(void)
{
    return (float)((double)(rng_next() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static float *
fnew(size_t n)
{
    float *p = sw_malloc_big(n * sizeof(float));

    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(99);
    }
    return p;
}

static float *
frand(size_t n, float scale)
{
    float *p = fnew(n);

    for (size_t i = 0; i < n; i++)
        p[i] = scale * rng_unif();
    return p;
}

static float *
fdup(const float *src, size_t n)
{
    float *p = fnew(n);

    memcpy(p, src, n * sizeof(float));
    return p;
}

static void
ffill(float *p, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        p[i] = v;
}

static double
dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;

    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

/* max over i of |got[i] - want[i]| / max(1, |want[i]|) */
static double
maxrel(const float *got, const double *want, size_t n)
{
    double m = 0.0;

    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]) / fmax(1.0, fabs(want[i]));

        if (!(d <= m)) /* NaN wins */
            m = d;
    }
    return m;
}

/* grad - prior: what an accumulating backward added */
static float *
added(const float *grad, const float *prior, size_t n)
{
    float *p = fnew(n);

    for (size_t i = 0; i < n; i++)
        p[i] = grad[i] - prior[i];
    return p;
}

#define FD_H 1e-3f

typedef double loss_fn(void *ctx);

/* Central differences of f over x[idx[k]] (all of x when idx is NULL) against
 * the analytic gradient g; returns the largest relative error. */
static double
fd_check(loss_fn *f, void *ctx, float *x, size_t n, const float *g, const size_t *idx,
         size_t nidx)
{
    double worst = 0.0;
    size_t cnt = idx ? nidx : n;

    for (size_t k = 0; k < cnt; k++) {
        size_t i = idx ? idx[k] : k;
        float x0 = x[i], xp = x0 + FD_H, xm = x0 - FD_H;
        double lp, lm, fd, d;

        x[i] = xp;
        lp = f(ctx);
        x[i] = xm;
        lm = f(ctx);
        x[i] = x0;
        fd = (lp - lm) / ((double)xp - (double)xm);
        d = fabs((double)g[i] - fd) / fmax(1.0, fabs(fd));
        if (!(d <= worst))
            worst = d;
    }
    return worst;
}

static int
check_grad(const char *what, double maxdiff, double tol)
{
    tap_diag("%s: fd maxdiff %.3g (tol %.3g)", what, maxdiff, tol);
    return tap_ok(maxdiff <= tol, "%s matches finite differences", what);
}

#define FD_TOL 5e-3

/* ---- embedding ---- */

struct emb_ctx {
    float *out, *wte, *r;
    int32_t *inp;
    int N, C;
};

static double
emb_loss(void *p)
{
    struct emb_ctx *c = p;

    K->embedding_forward(c->out, c->inp, c->wte, c->N, c->C);
    return dot(c->out, c->r, (size_t)c->N * c->C);
}

static void
test_embedding(void)
{
    int N = 7, C = 12, V = 5;
    int32_t inp[7] = {3, 0, 3, 4, 1, 3, 0}; /* repeats: the scatter must add */
    struct emb_ctx c = {.N = N, .C = C, .inp = inp};
    float *prior, *dwte, *d;

    c.wte = frand((size_t)V * C, 1.0f);
    c.r = frand((size_t)N * C, 1.0f);
    c.out = fnew((size_t)N * C);
    K->embedding_forward(c.out, inp, c.wte, N, C);
    tap_ok(memcmp(c.out + 2 * C, c.wte + 3 * C, C * sizeof(float)) == 0 &&
               memcmp(c.out + 4 * C, c.wte + 1 * C, C * sizeof(float)) == 0,
           "embedding_forward copies rows");

    prior = frand((size_t)V * C, 1.0f);
    dwte = fdup(prior, (size_t)V * C);
    K->embedding_backward(dwte, c.r, inp, N, C);
    d = added(dwte, prior, (size_t)V * C);
    check_grad("embedding dwte (accumulated)",
               fd_check(emb_loss, &c, c.wte, (size_t)V * C, d, NULL, 0), FD_TOL);

    /* wider than one channel block, many repeats */
    {
        int N2 = 300, C2 = 130, V2 = 9;
        int32_t *inp2 = sw_malloc(N2 * sizeof(int32_t));
        float *dout2 = frand((size_t)N2 * C2, 1.0f), *dw = fnew((size_t)V2 * C2);
        double *want = calloc((size_t)V2 * C2, sizeof(double));

        for (int n = 0; n < N2; n++)
            inp2[n] = (int32_t)(rng_next() % V2);
        for (int n = 0; n < N2; n++)
            for (int i = 0; i < C2; i++)
                want[(size_t)inp2[n] * C2 + i] += dout2[(size_t)n * C2 + i];
        K->embedding_backward(dw, dout2, inp2, N2, C2);
        tap_ok(maxrel(dw, want, (size_t)V2 * C2) < 1e-5, "embedding_backward sums repeats");
        free(want);
        sw_free(inp2);
        sw_free_big(dout2);
        sw_free_big(dw);
    }
    sw_free_big(c.wte);
    sw_free_big(c.r);
    sw_free_big(c.out);
    sw_free_big(prior);
    sw_free_big(dwte);
    sw_free_big(d);
}

/* ---- rmsnorm ---- */

struct rms_ctx {
    float *out, *rstd, *inp, *weight, *r;
    int N, C;
};

static double
rms_loss(void *p)
{
    struct rms_ctx *c = p;

    K->rmsnorm_forward(c->out, c->rstd, c->inp, c->weight, c->N, c->C, 1e-5f);
    return dot(c->out, c->r, (size_t)c->N * c->C);
}

static void
test_rmsnorm(void)
{
    int N = 7, C = 12;
    struct rms_ctx c = {.N = N, .C = C};
    float *pi, *pw, *dinp, *dw, *di, *dwa;

    /* known answer: x = (3, 4), weight (1, 2): rms = sqrt(12.5) */
    {
        float x[2] = {3.0f, 4.0f}, w[2] = {1.0f, 2.0f}, y[2], rs;
        double r = 1.0 / sqrt(12.5 + 1e-5);

        K->rmsnorm_forward(y, &rs, x, w, 1, 2, 1e-5f);
        tap_ok(fabs(rs - r) < 1e-6 && fabs(y[0] - 3 * r) < 1e-6 && fabs(y[1] - 8 * r) < 1e-6,
               "rmsnorm of (3, 4): rstd %.7f out (%.7f, %.7f)", rs, y[0], y[1]);
    }

    c.inp = frand((size_t)N * C, 2.0f);
    c.weight = frand(C, 1.5f);
    c.r = frand((size_t)N * C, 1.0f);
    c.out = fnew((size_t)N * C);
    c.rstd = fnew(N);
    rms_loss(&c);

    pi = frand((size_t)N * C, 1.0f);
    pw = frand(C, 1.0f);
    dinp = fdup(pi, (size_t)N * C);
    dw = fdup(pw, C);
    K->rmsnorm_backward(dinp, dw, c.r, c.inp, c.weight, c.rstd, N, C);
    di = added(dinp, pi, (size_t)N * C);
    dwa = added(dw, pw, C);
    check_grad("rmsnorm dinp (accumulated)",
               fd_check(rms_loss, &c, c.inp, (size_t)N * C, di, NULL, 0), FD_TOL);
    check_grad("rmsnorm dweight (accumulated)", fd_check(rms_loss, &c, c.weight, C, dwa, NULL, 0),
               FD_TOL);
    sw_free_big(c.inp);
    sw_free_big(c.weight);
    sw_free_big(c.r);
    sw_free_big(c.out);
    sw_free_big(c.rstd);
    sw_free_big(pi);
    sw_free_big(pw);
    sw_free_big(dinp);
    sw_free_big(dw);
    sw_free_big(di);
    sw_free_big(dwa);
}

/* ---- matmul ---- */

struct mm_ctx {
    float *out, *inp, *weight, *r;
    int N, C, OC;
};

static double
mm_loss(void *p)
{
    struct mm_ctx *c = p;

    K->matmul_forward(c->out, c->inp, c->weight, c->N, c->C, c->OC);
    return dot(c->out, c->r, (size_t)c->N * c->OC);
}

/* forward and backward against naive double loops at sizes where the GEMMs
 * are split over threads, by rows (tall) and by columns (wide) */
static void
test_matmul_large(int N, int C, int OC)
{
    float *inp = frand((size_t)N * C, 1.0f), *w = frand((size_t)OC * C, 1.0f);
    float *out = fnew((size_t)N * OC), *dout = frand((size_t)N * OC, 1.0f);
    float *dinp = fnew((size_t)N * C), *dw = fnew((size_t)OC * C);
    double *ro = malloc(sizeof(double) * N * OC), *ri = malloc(sizeof(double) * N * C);
    double *rw = malloc(sizeof(double) * OC * C);

    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = 0;
            for (int i = 0; i < C; i++)
                s += (double)inp[n * C + i] * w[o * C + i];
            ro[n * OC + o] = s;
        }
    for (int n = 0; n < N; n++)
        for (int i = 0; i < C; i++) {
            double s = 0;
            for (int o = 0; o < OC; o++)
                s += (double)dout[n * OC + o] * w[o * C + i];
            ri[n * C + i] = s;
        }
    for (int o = 0; o < OC; o++)
        for (int i = 0; i < C; i++) {
            double s = 0;
            for (int n = 0; n < N; n++)
                s += (double)dout[n * OC + o] * inp[n * C + i];
            rw[o * C + i] = s;
        }
    K->matmul_forward(out, inp, w, N, C, OC);
    K->matmul_backward(dinp, dw, dout, inp, w, N, C, OC);
    tap_ok(maxrel(out, ro, (size_t)N * OC) < 5e-5, "matmul_forward %dx%dx%d vs reference (%.3g)",
           N, C, OC, maxrel(out, ro, (size_t)N * OC));
    tap_ok(maxrel(dinp, ri, (size_t)N * C) < 5e-5 && maxrel(dw, rw, (size_t)OC * C) < 5e-5,
           "matmul_backward %dx%dx%d vs reference (%.3g, %.3g)", N, C, OC,
           maxrel(dinp, ri, (size_t)N * C), maxrel(dw, rw, (size_t)OC * C));
    K->matmul_backward(NULL, dw, dout, inp, w, N, C, OC);
    for (size_t i = 0; i < (size_t)OC * C; i++)
        rw[i] *= 2.0;
    tap_ok(maxrel(dw, rw, (size_t)OC * C) < 5e-5, "matmul_backward dinp=NULL accumulates dweight");
    sw_free_big(inp);
    sw_free_big(w);
    sw_free_big(out);
    sw_free_big(dout);
    sw_free_big(dinp);
    sw_free_big(dw);
    free(ro);
    free(ri);
    free(rw);
}

static void
test_matmul(void)
{
    int N = 7, C = 12, OC = 10;
    struct mm_ctx c = {.N = N, .C = C, .OC = OC};
    float *pw, *dinp, *dw, *dwa, *dw2;

    c.inp = frand((size_t)N * C, 1.0f);
    c.weight = frand((size_t)OC * C, 1.0f);
    c.r = frand((size_t)N * OC, 1.0f);
    c.out = fnew((size_t)N * OC);

    pw = frand((size_t)OC * C, 1.0f);
    dinp = fnew((size_t)N * C);
    ffill(dinp, (size_t)N * C, 12345.0f); /* written, not accumulated */
    dw = fdup(pw, (size_t)OC * C);
    K->matmul_backward(dinp, dw, c.r, c.inp, c.weight, N, C, OC);
    dwa = added(dw, pw, (size_t)OC * C);
    check_grad("matmul dinp (written)", fd_check(mm_loss, &c, c.inp, (size_t)N * C, dinp, NULL, 0),
               FD_TOL);
    check_grad("matmul dweight (accumulated)",
               fd_check(mm_loss, &c, c.weight, (size_t)OC * C, dwa, NULL, 0), FD_TOL);
    dw2 = fdup(pw, (size_t)OC * C);
    K->matmul_backward(NULL, dw2, c.r, c.inp, c.weight, N, C, OC);
    tap_ok(memcmp(dw, dw2, (size_t)OC * C * sizeof(float)) == 0,
           "matmul_backward with dinp NULL gives the same dweight");
    test_matmul_large(200, 72, 130);
    test_matmul_large(40, 64, 600);
    sw_free_big(c.inp);
    sw_free_big(c.weight);
    sw_free_big(c.r);
    sw_free_big(c.out);
    sw_free_big(pw);
    sw_free_big(dinp);
    sw_free_big(dw);
    sw_free_big(dwa);
    sw_free_big(dw2);
}

/* ---- rope ---- */

struct rope_ctx {
    float *x, *work, *cos, *sin, *r;
    int B, T, NH, NKV, HS;
};

static size_t
qkv_size(int B, int T, int NH, int NKV, int HS)
{
    return (size_t)B * T * (NH + 2 * NKV) * HS;
}

static double
rope_loss(void *p)
{
    struct rope_ctx *c = p;
    size_t n = qkv_size(c->B, c->T, c->NH, c->NKV, c->HS);

    memcpy(c->work, c->x, n * sizeof(float));
    K->rope_forward(c->work, c->cos, c->sin, c->B, c->T, c->NH, c->NKV, c->HS);
    return dot(c->work, c->r, n);
}

static void
test_rope(void)
{
    int B = 2, T = 5, NH = 4, NKV = 2, HS = 6, half = 3, row = (NH + 2 * NKV) * HS;
    size_t n = qkv_size(B, T, NH, NKV, HS);
    struct rope_ctx c = {.B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS};
    float *g;
    int ok;

    c.cos = fnew((size_t)T * half);
    c.sin = fnew((size_t)T * half);
    sw_rope_tables(c.cos, c.sin, T, HS, 10000.0);
    c.x = frand(n, 1.0f);
    c.work = fnew(n);
    c.r = frand(n, 1.0f);

    /* t = 0 is the identity; v heads are never touched */
    memcpy(c.work, c.x, n * sizeof(float));
    K->rope_forward(c.work, c.cos, c.sin, B, T, NH, NKV, HS);
    ok = 1;
    for (int b = 0; b < B; b++)
        ok &= memcmp(c.work + (size_t)b * T * row, c.x + (size_t)b * T * row,
                     row * sizeof(float)) == 0;
    tap_ok(ok, "rope at t = 0 is the identity");
    ok = 1;
    for (int bt = 0; bt < B * T; bt++)
        ok &= memcmp(c.work + (size_t)bt * row + (NH + NKV) * HS,
                     c.x + (size_t)bt * row + (NH + NKV) * HS, NKV * HS * sizeof(float)) == 0;
    tap_ok(ok, "rope leaves the v heads alone");

    /* known angle: tables of one angle a at t = 1 */
    {
        float cs[2 * 3], sn[2 * 3], q[1 * 2 * 4 * 6];
        double a = 0.7;

        for (int i = 0; i < half; i++) {
            cs[i] = 1.0f, sn[i] = 0.0f;
            cs[half + i] = (float)cos(a * (i + 1)), sn[half + i] = (float)sin(a * (i + 1));
        }
        for (int i = 0; i < 2 * 4 * 6; i++)
            q[i] = (float)(i % 7) - 3.0f;
        /* B=1, T=2, NH=2, NKV=1, HS=6: row = 4 heads of 6 */
        {
            float before[48];
            double worst = 0;

            memcpy(before, q, sizeof(before));
            K->rope_forward(q, cs, sn, 1, 2, 2, 1, 6);
            for (int hd = 0; hd < 3; hd++)
                for (int i = 0; i < half; i++) {
                    const float *x = before + 24 + hd * 6;
                    double ang = a * (i + 1);
                    double y1 = x[i] * cos(ang) - x[i + half] * sin(ang);
                    double y2 = x[i + half] * cos(ang) + x[i] * sin(ang);

                    worst = fmax(worst, fabs(q[24 + hd * 6 + i] - y1));
                    worst = fmax(worst, fabs(q[24 + hd * 6 + i + half] - y2));
                }
            tap_ok(worst < 1e-6, "rope at a known angle (rotate_half), maxdiff %.3g", worst);
        }
    }

    g = fdup(c.r, n);
    K->rope_backward(g, c.cos, c.sin, B, T, NH, NKV, HS);
    check_grad("rope dqkv", fd_check(rope_loss, &c, c.x, n, g, NULL, 0), FD_TOL);
    sw_free_big(c.cos);
    sw_free_big(c.sin);
    sw_free_big(c.x);
    sw_free_big(c.work);
    sw_free_big(c.r);
    sw_free_big(g);
}

/* ---- attention ---- */

struct att_ctx {
    float *out, *att, *qkv, *r;
    int B, T, NH, NKV, HS;
};

static double
att_loss(void *p)
{
    struct att_ctx *c = p;

    K->attention_forward(c->out, c->att, c->qkv, c->B, c->T, c->NH, c->NKV, c->HS);
    return dot(c->out, c->r, (size_t)c->B * c->T * c->NH * c->HS);
}

/* naive double attention: out[B*T, NH*HS] */
static void
att_reference(double *out, const float *qkv, int B, int T, int NH, int NKV, int HS)
{
    int row = (NH + 2 * NKV) * HS;
    double *s = malloc(sizeof(double) * T);

    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int kv = h / (NH / NKV);

            for (int t = 0; t < T; t++) {
                const float *q = qkv + ((size_t)b * T + t) * row + h * HS;
                double mx = -INFINITY, sum = 0;

                for (int j = 0; j <= t; j++) {
                    const float *k = qkv + ((size_t)b * T + j) * row + (NH + kv) * HS;
                    double d = 0;

                    for (int i = 0; i < HS; i++)
                        d += (double)q[i] * k[i];
                    s[j] = d / sqrt((double)HS);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j <= t; j++)
                    sum += (s[j] = exp(s[j] - mx));
                for (int i = 0; i < HS; i++) {
                    double o = 0;

                    for (int j = 0; j <= t; j++)
                        o += s[j] / sum *
                             qkv[((size_t)b * T + j) * row + (NH + NKV + kv) * HS + i];
                    out[((size_t)b * T + t) * NH * HS + h * HS + i] = o;
                }
            }
        }
    free(s);
}

static void
att_case(int B, int T, int NH, int NKV, int HS, size_t nsample)
{
    struct att_ctx c = {.B = B, .T = T, .NH = NH, .NKV = NKV, .HS = HS};
    size_t n = qkv_size(B, T, NH, NKV, HS), no = (size_t)B * T * NH * HS;
    size_t natt = (size_t)B * NH * T * T, *idx = NULL;
    float *dqkv, *datt;
    double *ref = malloc(sizeof(double) * no);
    int ok = 1;
    char what[96];

    c.qkv = frand(n, 1.5f);
    c.r = frand(no, 1.0f);
    c.out = fnew(no);
    c.att = fnew(natt);
    att_loss(&c);

    att_reference(ref, c.qkv, B, T, NH, NKV, HS);
    snprintf(what, sizeof(what), "B=%d T=%d NH=%d NKV=%d HS=%d", B, T, NH, NKV, HS);
    tap_ok(maxrel(c.out, ref, no) < 1e-5, "attention_forward %s vs reference (maxdiff %.3g)",
           what, maxrel(c.out, ref, no));
    for (size_t bh = 0; bh < (size_t)B * NH; bh++)
        for (int t = 0; t < T; t++) {
            const float *p = c.att + (bh * T + t) * T;
            double s = 0;

            for (int j = 0; j < T; j++)
                s += p[j];
            ok &= fabs(s - 1.0) < 1e-5;
            for (int j = t + 1; j < T; j++)
                ok &= p[j] == 0.0f;
        }
    tap_ok(ok, "attention %s: att rows sum to 1, zero above the diagonal", what);

    dqkv = fnew(n);
    ffill(dqkv, n, 12345.0f); /* written, all three parts */
    datt = fnew(natt);
    ffill(datt, natt, -777.0f);
    K->attention_backward(dqkv, datt, c.r, c.qkv, c.att, B, T, NH, NKV, HS);
    if (nsample) {
        idx = malloc(sizeof(size_t) * nsample);
        for (size_t k = 0; k < nsample; k++)
            idx[k] = (size_t)(rng_next() % n);
    }
    snprintf(what, sizeof(what), "attention dqkv (written) B=%d T=%d NH=%d NKV=%d HS=%d%s", B, T,
             NH, NKV, HS, nsample ? ", sampled" : "");
    check_grad(what, fd_check(att_loss, &c, c.qkv, n, dqkv, idx, nsample), FD_TOL);
    free(idx);
    free(ref);
    sw_free_big(c.qkv);
    sw_free_big(c.r);
    sw_free_big(c.out);
    sw_free_big(c.att);
    sw_free_big(dqkv);
    sw_free_big(datt);
}

static void
test_attention(void)
{
    /* T = 1: out is exactly v of the matching kv head (grouped mapping) */
    {
        int B = 2, NH = 6, NKV = 3, HS = 4, row = (NH + 2 * NKV) * HS, ok = 1;
        float *qkv = frand((size_t)B * row, 1.0f), *out = fnew((size_t)B * NH * HS);
        float *att = fnew((size_t)B * NH);

        K->attention_forward(out, att, qkv, B, 1, NH, NKV, HS);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                ok &= memcmp(out + (size_t)b * NH * HS + h * HS,
                             qkv + (size_t)b * row + (NH + NKV + h / (NH / NKV)) * HS,
                             HS * sizeof(float)) == 0 &&
                      att[b * NH + h] == 1.0f;
        tap_ok(ok, "attention with T = 1 returns v of kv head h / (NH / NKV)");
        sw_free_big(qkv);
        sw_free_big(out);
        sw_free_big(att);
    }
    /* a NaN in one key reaches every later output of its heads, not hidden */
    {
        int T = 3, NH = 2, NKV = 1, HS = 4, row = (NH + 2 * NKV) * HS;
        float *qkv = frand((size_t)T * row, 1.0f), *out = fnew((size_t)T * NH * HS);
        float *att = fnew((size_t)NH * T * T);

        qkv[1 * row + NH * HS] = NAN; /* key of position 1 */
        K->attention_forward(out, att, qkv, 1, T, NH, NKV, HS);
        tap_ok(!isnan(out[0]) && isnan(out[1 * NH * HS]) && isnan(out[2 * NH * HS + HS]),
               "attention propagates a NaN key");
        sw_free_big(qkv);
        sw_free_big(out);
        sw_free_big(att);
    }
    att_case(2, 5, 4, 2, 6, 0);  /* grouped */
    att_case(1, 4, 3, 3, 5, 0);  /* plain multi-head, odd HS */
    att_case(2, 3, 4, 1, 6, 0);  /* multi-query */
    att_case(1, 70, 2, 1, 8, 400); /* crosses a 64-row block */
}

/* ---- swiglu ---- */

struct swi_ctx {
    float *out, *gu, *r;
    int N, F;
};

static double
swi_loss(void *p)
{
    struct swi_ctx *c = p;

    K->swiglu_forward(c->out, c->gu, c->N, c->F);
    return dot(c->out, c->r, (size_t)c->N * c->F);
}

static void
test_swiglu(void)
{
    int N = 7, F = 12;
    struct swi_ctx c = {.N = N, .F = F};
    float *dgu;

    c.gu = frand((size_t)N * 2 * F, 3.0f);
    c.r = frand((size_t)N * F, 1.0f);
    c.out = fnew((size_t)N * F);
    swi_loss(&c);
    {
        float gu[2] = {1.0f, 2.0f}, o;

        K->swiglu_forward(&o, gu, 1, 1);
        tap_ok(fabs(o - 2.0 / (1.0 + exp(-1.0))) < 1e-6, "swiglu(1, 2) = 2 sigmoid(1)");
    }
    {
        float gu[4] = {NAN, 40.0f, 2.0f, 1.0f}, o[2];

        K->swiglu_forward(o, gu, 1, 2);
        tap_ok(isnan(o[0]) && fabs(o[1] - 40.0) < 1e-5, "swiglu: NaN stays NaN, large gates pass");
    }
    dgu = fnew((size_t)N * 2 * F);
    ffill(dgu, (size_t)N * 2 * F, 12345.0f);
    K->swiglu_backward(dgu, c.r, c.gu, N, F);
    check_grad("swiglu dgu (written)", fd_check(swi_loss, &c, c.gu, (size_t)N * 2 * F, dgu, NULL, 0),
               FD_TOL);
    sw_free_big(c.gu);
    sw_free_big(c.r);
    sw_free_big(c.out);
    sw_free_big(dgu);
}

/* ---- residual ---- */

struct res_ctx {
    float *out, *a, *b, *r;
    size_t n;
};

static double
res_loss(void *p)
{
    struct res_ctx *c = p;

    K->residual_forward(c->out, c->a, c->b, c->n);
    return dot(c->out, c->r, c->n);
}

static void
test_residual(void)
{
    size_t n = 37;
    struct res_ctx c = {.n = n};
    float *p1, *p2, *d1, *d2, *a1, *a2;

    c.a = frand(n, 1.0f);
    c.b = frand(n, 1.0f);
    c.r = frand(n, 1.0f);
    c.out = fnew(n);
    p1 = frand(n, 1.0f);
    p2 = frand(n, 1.0f);
    d1 = fdup(p1, n);
    d2 = fdup(p2, n);
    K->residual_backward(d1, d2, c.r, n);
    a1 = added(d1, p1, n);
    a2 = added(d2, p2, n);
    check_grad("residual dinp1 (accumulated)", fd_check(res_loss, &c, c.a, n, a1, NULL, 0),
               FD_TOL);
    check_grad("residual dinp2 (accumulated)", fd_check(res_loss, &c, c.b, n, a2, NULL, 0),
               FD_TOL);
    {
        float *x = fdup(c.a, n);
        int ok = 1;

        K->residual_forward(x, x, c.b, n); /* out aliases inp1 */
        for (size_t i = 0; i < n; i++)
            ok &= x[i] == c.a[i] + c.b[i];
        tap_ok(ok, "residual_forward in place");
        sw_free_big(x);
    }
    sw_free_big(c.a);
    sw_free_big(c.b);
    sw_free_big(c.r);
    sw_free_big(c.out);
    sw_free_big(p1);
    sw_free_big(p2);
    sw_free_big(d1);
    sw_free_big(d2);
    sw_free_big(a1);
    sw_free_big(a2);
}

/* ---- cross-entropy ---- */

struct ce_ctx {
    float *losses, *probs, *logits;
    int32_t *targets;
    float dloss;
    int N, V;
};

static double
ce_loss(void *p)
{
    struct ce_ctx *c = p;
    double s = 0;

    K->crossentropy_forward(c->losses, c->probs, c->logits, c->targets, c->N, c->V);
    for (int n = 0; n < c->N; n++)
        s += (double)c->dloss * c->losses[n];
    return s;
}

static void
test_crossentropy(void)
{
    int N = 7, V = 11;
    int32_t targets[7] = {0, 10, 3, 3, 7, 1, 5};
    struct ce_ctx c = {.N = N, .V = V, .targets = targets, .dloss = 0.37f};
    float *dl;

    c.logits = frand((size_t)N * V, 3.0f);
    c.losses = fnew(N);
    c.probs = fnew((size_t)N * V);
    ce_loss(&c);

    {
        float lg[2 * 11], pr[2 * 11], ls[2];
        int32_t tg[2] = {4, 10};
        int ok = 1;

        ffill(lg, 11, 0.5f);
        ffill(lg + 11, 11, 1000.0f); /* stable with huge logits */
        K->crossentropy_forward(ls, pr, lg, tg, 2, 11);
        for (int i = 0; i < 22; i++)
            ok &= fabs(pr[i] - 1.0 / 11) < 1e-7;
        tap_ok(ok && fabs(ls[0] - log(11.0)) < 1e-6 && fabs(ls[1] - log(11.0)) < 1e-6,
               "cross-entropy of equal logits is ln(V): %.7f %.7f", ls[0], ls[1]);
    }

    dl = fnew((size_t)N * V);
    ffill(dl, (size_t)N * V, 12345.0f);
    K->crossentropy_backward(dl, c.probs, targets, c.dloss, N, V);
    check_grad("cross-entropy dlogits (written)",
               fd_check(ce_loss, &c, c.logits, (size_t)N * V, dl, NULL, 0), FD_TOL);
    sw_free_big(c.logits);
    sw_free_big(c.losses);
    sw_free_big(c.probs);
    sw_free_big(dl);
}

/* ---- optimizer and recovery ---- */

static void
test_adamw(void)
{
    size_t n = 101;
    float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    float *p = frand(n, 1.0f), *g = frand(n, 1.0f), *m = fnew(n), *v = fnew(n);
    float *p0 = fdup(p, n);
    double *want = malloc(sizeof(double) * n), *wm = malloc(sizeof(double) * n);
    double *wv = malloc(sizeof(double) * n), mm = 0;

    /* first step from zero moments: |mhat / sqrt(vhat)| = 1 */
    K->adamw_update(p, g, m, v, n, lr, b1, b2, eps, wd, gs, 1);
    for (size_t i = 0; i < n; i++) {
        want[i] = p0[i] - lr * ((g[i] > 0 ? 1.0 : -1.0) + wd * p0[i]);
        wm[i] = (1.0 - b1) * gs * g[i];
        wv[i] = (1.0 - b2) * (double)gs * g[i] * gs * g[i];
        mm = fmax(mm, fabs(m[i] - wm[i]) / fabs(wm[i]));
    }
    tap_ok(maxrel(p, want, n) < 1e-6 && mm < 1e-5,
           "adamw first step moves by lr * sign(g) plus decay (maxdiff %.3g)",
           maxrel(p, want, n));

    /* second step against a double reference */
    memcpy(p0, p, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        g[i] = rng_unif();
    K->adamw_update(p, g, m, v, n, lr, b1, b2, eps, wd, gs, 2);
    for (size_t i = 0; i < n; i++) {
        double gi = (double)g[i] * gs;
        double mi = b1 * wm[i] + (1.0 - b1) * gi, vi = b2 * wv[i] + (1.0 - b2) * gi * gi;
        double mh = mi / (1.0 - pow(b1, 2)), vh = vi / (1.0 - pow(b2, 2));

        want[i] = p0[i] - lr * (mh / (sqrt(vh) + eps) + wd * p0[i]);
    }
    tap_ok(maxrel(p, want, n) < 1e-6, "adamw second step vs reference (maxdiff %.3g)",
           maxrel(p, want, n));
    sw_free_big(p);
    sw_free_big(g);
    sw_free_big(m);
    sw_free_big(v);
    sw_free_big(p0);
    free(want);
    free(wm);
    free(wv);
}

static void
test_sumsq(void)
{
    size_t n = 1001, big = 300007;
    float *x = fnew(big);
    double want = 0, s1, s2;

    for (size_t i = 0; i < n; i++) {
        x[i] = (float)((int)(i % 9) - 4);
        want += (double)x[i] * x[i];
    }
    tap_ok(K->sumsq(x, n) == want, "sumsq of small ints is exact (%.1f)", want);
    tap_ok(K->sumsq(x, 0) == 0.0, "sumsq of nothing is 0");
    for (size_t i = 0; i < big; i++)
        x[i] = (float)((int)(i % 5) - 2) * 0.5f;
    want = 0;
    for (size_t i = 0; i < big; i++)
        want += (double)x[i] * x[i];
    s2 = K->sumsq(x, big);
    (void)K->set_threads(1);
    s1 = K->sumsq(x, big);
    (void)K->set_threads(2);
    tap_ok(s2 == want && s1 == s2, "sumsq over %zu floats exact and thread-count independent",
           big);
    sw_free_big(x);
}

static void
test_weighted_average(void)
{
    size_t n = 33;
    float *a = fnew(n), *b = fnew(n), *o = fnew(n);
    int ok = 1;

    for (size_t i = 0; i < n; i++) {
        a[i] = (float)i;
        b[i] = (float)(3 * i + 8);
    }
    /* (1 * i + 3 * (3i + 8)) / 4 = (10 i + 24) / 4 = 2.5 i + 6 */
    K->weighted_average(o, a, 1.0f, b, 3.0f, n);
    for (size_t i = 0; i < n; i++)
        ok &= o[i] == 2.5f * (float)i + 6.0f;
    K->weighted_average(a, a, 1.0f, b, 3.0f, n); /* out aliases a */
    ok &= memcmp(a, o, n * sizeof(float)) == 0;
    tap_ok(ok, "weighted_average exact, in place too");
    sw_free_big(a);
    sw_free_big(b);
    sw_free_big(o);
}

/* ---- the table and determinism ---- */

static void
test_table(void)
{
    const void **fp = (const void **)&K->alloc;
    size_t nfp = (sizeof(*K) - offsetof(struct sw_kernels, alloc)) / sizeof(void *);
    unsigned char *p;
    int ok = 1;

    for (size_t i = 0; i < nfp; i++)
        ok &= fp[i] != NULL;
    tap_ok(ok && strcmp(K->name, "cpu") == 0 && K->device == SW_DEVICE_CPU,
           "cpu table: every entry filled");
    p = K->alloc(1000);
    ok = p && ((uintptr_t)p & 63) == 0;
    for (int i = 0; ok && i < 1000; i++)
        ok &= p[i] == 0;
    tap_ok(ok, "alloc is 64-byte aligned and zeroed");
    K->free(p);
    tap_ok(K->set_math(SW_MATH_FP32) == 0 && K->set_math(SW_MATH_TF32) == -SW_ENOTSUP &&
               K->set_math(SW_MATH_BF16) == -SW_ENOTSUP && K->sync() == 0 &&
               K->last_error() == 0 && K->set_threads(0) == -SW_EINVAL,
           "set_math fp32 only; sync, last_error 0");
}

/* one stage-like pass, big enough that every op takes its threaded path */
enum { ST_B = 2, ST_T = 130, ST_NH = 4, ST_NKV = 2, ST_HS = 16, ST_V = 16, ST_NOUT = 13 };
#define ST_BUF ((size_t)ST_B * ST_NH * ST_T * ST_T) /* the largest output, att */

static void
run_stage(float **outs, const float *x, const float *w, const int32_t *tok)
{
    int B = ST_B, T = ST_T, NH = ST_NH, NKV = ST_NKV, HS = ST_HS, C = NH * HS;
    int QKV = (NH + 2 * NKV) * HS, N = B * T;
    float *cs = fnew((size_t)T * HS / 2), *sn = fnew((size_t)T * HS / 2);

    sw_rope_tables(cs, sn, T, HS, 10000.0);
    K->embedding_forward(outs[0], tok, w, N, C);
    K->rmsnorm_forward(outs[1], outs[2], x, w, N, C, 1e-5f);
    K->matmul_forward(outs[3], outs[1], w, N, C, QKV);
    K->rope_forward(outs[3], cs, sn, B, T, NH, NKV, HS);
    K->attention_forward(outs[4], outs[5], outs[3], B, T, NH, NKV, HS);
    K->attention_backward(outs[6], outs[7], outs[4], outs[3], outs[5], B, T, NH, NKV, HS);
    K->rope_backward(outs[6], cs, sn, B, T, NH, NKV, HS);
    K->matmul_backward(outs[8], outs[9], outs[6], outs[1], w, N, C, QKV);
    K->rmsnorm_backward(outs[10], outs[11], outs[8], x, w, outs[2], N, C);
    K->embedding_backward(outs[12], x, tok, N, C);
    sw_free_big(cs);
    sw_free_big(sn);
}

static void
test_determinism(void)
{
    size_t sz = (size_t)ST_B * ST_T * ST_NH * ST_HS;
    float *x = frand(sz, 1.0f), *w = frand(sz, 0.5f), *o1[ST_NOUT], *o2[ST_NOUT], *o3[ST_NOUT];
    int32_t tok[ST_B * ST_T];
    double worst = 0.0;
    int same = 1;

    for (int i = 0; i < ST_B * ST_T; i++)
        tok[i] = (int32_t)(rng_next() % ST_V);
    for (int i = 0; i < ST_NOUT; i++) {
        o1[i] = fnew(ST_BUF);
        o2[i] = fnew(ST_BUF);
        o3[i] = fnew(ST_BUF);
    }
    run_stage(o1, x, w, tok);
    run_stage(o2, x, w, tok);
    for (int i = 0; i < ST_NOUT; i++)
        same &= memcmp(o1[i], o2[i], ST_BUF * sizeof(float)) == 0;
    tap_ok(same, "same inputs twice give bit-identical outputs (2 threads)");

    /* one thread: the same up to rounding (GEMM slices may round differently) */
    (void)K->set_threads(1);
    run_stage(o3, x, w, tok);
    (void)K->set_threads(2);
    for (int i = 0; i < ST_NOUT; i++)
        for (size_t j = 0; j < ST_BUF; j++) {
            double d = fabs((double)o1[i][j] - o3[i][j]) / fmax(1.0, fabs((double)o3[i][j]));

            worst = d > worst ? d : worst;
        }
    tap_diag("2 threads vs 1 thread: maxdiff %.3g", worst);
    tap_ok(worst < 1e-5, "2 threads agree with 1 thread");
    for (int i = 0; i < ST_NOUT; i++) {
        sw_free_big(o1[i]);
        sw_free_big(o2[i]);
        sw_free_big(o3[i]);
    }
    sw_free_big(x);
    sw_free_big(w);
}

int
main(void)
{
    rng_seed(20240520);
    if (K->set_threads(2) != 0)
        return tap_ok(0, "set_threads(2)"), tap_done();
    test_table();
    test_embedding();
    test_rmsnorm();
    test_matmul();
    test_rope();
    test_attention();
    test_swiglu();
    test_residual();
    test_crossentropy();
    test_adamw();
    test_sumsq();
    test_weighted_average();
    test_determinism();
    return tap_done();
}
