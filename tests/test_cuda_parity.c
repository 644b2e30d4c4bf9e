/*
 * test_cuda_parity.c - every op of the CUDA backend against the CPU backend
 * on the same random inputs.
 *
 * Shapes are odd on purpose (B = 3, T = 37, C = 96, NH = 6, NKV = 2, HS = 16,
 * F = 200, V = 259), so no dimension is a multiple of a warp or a tile.  Each
 * op runs on the CPU (host memory) and on the GPU (device memory) from the
 * same inputs (an op's saved forward tensors, rstd or att, are the CPU's for
 * both), then the outputs are compared:
 *
 *   err = max_i |gpu_i - cpu_i| / (|cpu_i| + 1e-2 max_j |cpu_j|)
 *
 * a relative error with a floor at a hundredth of the tensor's scale, so a
 * near-zero entry that comes out of a cancellation is not over-weighted.
 * Each check prints the max abs difference, the tensor's max magnitude and
 * err, and passes when err <= the op's tolerance: 1e-5 for elementwise ops,
 * 1e-4 where sums run in another order than on the CPU (matmul, attention,
 * the rows of rmsnorm's backward).  TF32 and bf16 matmuls are compared with the fp32 CPU result
 * on maxabs / max|cpu| (the rounding of the operands is the point there).
 *
 * Gradients that kernels.h says are written start as NaN on the GPU (so an
 * element that is read before it is written, or never written, shows);
 * accumulated ones start from the same random content on both sides.
 *
 * With no CUDA device (or a build without CUDA) the whole test is skipped:
 * "1..0 # SKIP no CUDA device".
 */
#include "sw.h"

#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "tap.h"

enum {
    B = 3,
    T = 37,
    C = 96,
    NH = 6,
    NKV = 2,
    HS = 16,
    F = 200,
    V = 259,
    N = B * T,
    QKV = (NH + 2 * NKV) * HS,
};

#define TOL_ELEM 1e-5
#define TOL_SUM 1e-4
#define TOL_TF32 2e-3
#define TOL_BF16 1e-2

static const struct sw_kernels *cpu = &sw_kernels_cpu;
static const struct sw_kernels *gpu;

/* ---- helpers ---- */

static uint64_t rng_state = 0x5eed;

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

static void *
xmalloc(size_t bytes)
{
    void *p = sw_malloc(bytes ? bytes : 1);

    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(99);
    }
    return p;
}

static float *
hrand(size_t n, float scale)
{
    float *p = xmalloc(n * sizeof(float));

    for (size_t i = 0; i < n; i++)
        p[i] = scale * rng_unif();
    return p;
}

static float *
hcopy(const float *src, size_t n)
{
    float *p = xmalloc(n * sizeof(float));

    memcpy(p, src, n * sizeof(float));
    return p;
}

/* device copy of host data; bytes */
static void *
dev_of(const void *src, size_t bytes)
{
    void *d = gpu->alloc(bytes);

    if (!d || gpu->copy_h2d(d, src, bytes) < 0) {
        fprintf(stderr, "cannot allocate or fill %zu bytes of device memory\n", bytes);
        exit(99);
    }
    return d;
}

static float *
dev_f(const float *src, size_t n)
{
    return dev_of(src, n * sizeof(float));
}

/* device buffer of n NaNs (for outputs that must be written) */
static float *
dev_nan(size_t n)
{
    float *h = xmalloc(n * sizeof(float)), *d;

    for (size_t i = 0; i < n; i++)
        h[i] = NAN;
    d = dev_f(h, n);
    sw_free(h);
    return d;
}

/* host copy of device data (caller frees) */
static float *
host_of(const float *d, size_t n)
{
    float *h = xmalloc(n * sizeof(float));

    if (gpu->copy_d2h(h, d, n * sizeof(float)) < 0) {
        fprintf(stderr, "cannot copy %zu floats from the device\n", n);
        exit(99);
    }
    return h;
}

struct diff {
    double maxabs; /* max |gpu - cpu| */
    double maxref; /* max |cpu| */
    double rel;    /* max |gpu - cpu| / (|cpu| + 1e-2 maxref) */
};

static struct diff
diff_of(const float *got, const float *want, size_t n)
{
    struct diff d = {0, 0, 0};

    for (size_t i = 0; i < n; i++)
        d.maxref = fmax(d.maxref, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]);

        if (isnan(got[i]) != isnan(want[i]))
            e = INFINITY;
        d.maxabs = fmax(d.maxabs, e);
        d.rel = fmax(d.rel, e / (fabs(want[i]) + 1e-2 * d.maxref + 1e-30));
    }
    return d;
}

/* compare device tensor d_got with host tensor want on the floored relative error */
static int
check(const char *what, const float *d_got, const float *want, size_t n, double tol)
{
    float *got = host_of(d_got, n);
    struct diff d = diff_of(got, want, n);

    sw_free(got);
    tap_diag("%-44s maxabs %.3e  max|cpu| %.3e  rel %.3e  (tol %.0e)", what, d.maxabs, d.maxref,
             d.rel, tol);
    return tap_ok(d.rel <= tol, "%s: cuda matches cpu", what);
}

/* compare on maxabs / max|cpu| (reduced-precision modes) */
static int
check_norm(const char *what, const float *d_got, const float *want, size_t n, double tol)
{
    float *got = host_of(d_got, n);
    struct diff d = diff_of(got, want, n);
    double nrm = d.maxabs / (d.maxref > 0 ? d.maxref : 1);

    sw_free(got);
    tap_diag("%-44s maxabs %.3e  max|cpu| %.3e  maxabs/max|cpu| %.3e  (tol %.0e)", what,
             d.maxabs, d.maxref, nrm, tol);
    return tap_ok(nrm <= tol, "%s: within the mode's rounding of fp32", what);
}

static int
same_bits(const float *d_a, const float *d_b, size_t n)
{
    float *a = host_of(d_a, n), *b = host_of(d_b, n);
    int same = memcmp(a, b, n * sizeof(float)) == 0;

    sw_free(a);
    sw_free(b);
    return same;
}

/* ---- memory ---- */

static void
test_memory(void)
{
    enum { M = 1001 };
    float *h = hrand(M, 1.0f), *back = xmalloc(M * sizeof(float));
    float *d = gpu->alloc(M * sizeof(float)), *d2 = gpu->alloc(M * sizeof(float));
    int zero = 1;

    if (!d || !d2) {
        tap_ok(0, "alloc");
        exit(99);
    }
    gpu->copy_d2h(back, d, M * sizeof(float));
    for (int i = 0; i < M; i++)
        zero &= back[i] == 0.0f;
    tap_ok(zero, "alloc returns zero-filled memory");
    tap_ok(gpu->copy_h2d(d, h, M * sizeof(float)) == 0 &&
               gpu->copy_d2d(d2, d, M * sizeof(float)) == 0 &&
               gpu->copy_d2h(back, d2, M * sizeof(float)) == 0 &&
               memcmp(back, h, M * sizeof(float)) == 0,
           "copy_h2d, copy_d2d, copy_d2h round trip");
    tap_ok(gpu->memset0(d2, 17 * sizeof(float)) == 0 &&
               gpu->copy_d2h(back, d2, M * sizeof(float)) == 0 && back[0] == 0.0f &&
               back[16] == 0.0f && back[17] == h[17],
           "memset0 clears exactly the bytes asked");
    gpu->free(d);
    gpu->free(d2);
    sw_free(h);
    sw_free(back);
}

/* ---- ops ---- */

static void
test_embedding(void)
{
    int32_t tok[N];
    float *wte = hrand((size_t)V * C, 1.0f), *dout = hrand((size_t)N * C, 1.0f);
    float *dwte = hrand((size_t)V * C, 1.0f), *out = xmalloc((size_t)N * C * sizeof(float));
    int32_t *d_tok;
    float *d_wte, *d_out, *d_dout, *d_dwte, *d_dwte2;

    /* many repeats of a few tokens, and both ends of the vocabulary */
    for (int n = 0; n < N; n++)
        tok[n] = n % 3 == 0 ? 7 : n % 5 == 0 ? 42 : (int32_t)(rng_next() % V);
    tok[1] = 0;
    tok[2] = V - 1;
    d_tok = dev_of(tok, sizeof(tok));
    d_wte = dev_f(wte, (size_t)V * C);
    d_out = dev_nan((size_t)N * C);
    d_dout = dev_f(dout, (size_t)N * C);
    d_dwte = dev_f(dwte, (size_t)V * C);
    d_dwte2 = dev_f(dwte, (size_t)V * C);

    cpu->embedding_forward(out, tok, wte, N, C);
    gpu->embedding_forward(d_out, d_tok, d_wte, N, C);
    check("embedding_forward out", d_out, out, (size_t)N * C, TOL_ELEM);

    cpu->embedding_backward(dwte, dout, tok, N, C);
    gpu->embedding_backward(d_dwte, d_dout, d_tok, N, C);
    gpu->embedding_backward(d_dwte2, d_dout, d_tok, N, C);
    check("embedding_backward dwte (+=)", d_dwte, dwte, (size_t)V * C, TOL_ELEM);
    tap_ok(same_bits(d_dwte, d_dwte2, (size_t)V * C), "embedding_backward is deterministic");

    gpu->free(d_tok);
    gpu->free(d_wte);
    gpu->free(d_out);
    gpu->free(d_dout);
    gpu->free(d_dwte);
    gpu->free(d_dwte2);
    sw_free(wte);
    sw_free(dout);
    sw_free(dwte);
    sw_free(out);
}

static void
test_rmsnorm(void)
{
    size_t nc = (size_t)N * C;
    float *inp = hrand(nc, 2.0f), *w = hrand(C, 0.3f), *out = xmalloc(nc * sizeof(float));
    float *rstd = xmalloc(N * sizeof(float)), *dout = hrand(nc, 1.0f), *dinp = hrand(nc, 1.0f);
    float *dw = hrand(C, 1.0f);
    float *d_inp, *d_w, *d_out, *d_rstd, *d_dout, *d_dinp, *d_dw, *d_dw2, *d_dinp2;

    for (int c = 0; c < C; c++)
        w[c] += 1.0f;
    d_inp = dev_f(inp, nc);
    d_w = dev_f(w, C);
    d_out = dev_nan(nc);
    d_rstd = dev_nan(N);
    d_dout = dev_f(dout, nc);
    d_dinp = dev_f(dinp, nc);
    d_dinp2 = dev_f(dinp, nc);
    d_dw = dev_f(dw, C);
    d_dw2 = dev_f(dw, C);

    cpu->rmsnorm_forward(out, rstd, inp, w, N, C, 1e-5f);
    gpu->rmsnorm_forward(d_out, d_rstd, d_inp, d_w, N, C, 1e-5f);
    check("rmsnorm_forward out", d_out, out, nc, TOL_ELEM);
    check("rmsnorm_forward rstd", d_rstd, rstd, N, TOL_ELEM);

    gpu->copy_h2d(d_rstd, rstd, N * sizeof(float));
    cpu->rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
    gpu->rmsnorm_backward(d_dinp, d_dw, d_dout, d_inp, d_w, d_rstd, N, C);
    gpu->rmsnorm_backward(d_dinp2, d_dw2, d_dout, d_inp, d_w, d_rstd, N, C);
    check("rmsnorm_backward dinp (+=)", d_dinp, dinp, nc, TOL_SUM);
    check("rmsnorm_backward dweight (+=)", d_dw, dw, C, TOL_SUM);
    tap_ok(same_bits(d_dw, d_dw2, C) && same_bits(d_dinp, d_dinp2, nc),
           "rmsnorm_backward is deterministic");

    gpu->free(d_inp);
    gpu->free(d_w);
    gpu->free(d_out);
    gpu->free(d_rstd);
    gpu->free(d_dout);
    gpu->free(d_dinp);
    gpu->free(d_dinp2);
    gpu->free(d_dw);
    gpu->free(d_dw2);
    sw_free(inp);
    sw_free(w);
    sw_free(out);
    sw_free(rstd);
    sw_free(dout);
    sw_free(dinp);
    sw_free(dw);
}

/* matmul of [n, c] by [oc, c]^T in the current GPU math mode; check with
 * `chk` (check or check_norm) at tolerance tol */
static void
matmul_case(int n, int c, int oc, const char *mode, double tol,
            int (*chk)(const char *, const float *, const float *, size_t, double))
{
    float *inp = hrand((size_t)n * c, 1.0f), *w = hrand((size_t)oc * c, 0.5f);
    float *out = xmalloc((size_t)n * oc * sizeof(float)), *dout = hrand((size_t)n * oc, 1.0f);
    float *dinp = xmalloc((size_t)n * c * sizeof(float)), *dw = hrand((size_t)oc * c, 1.0f);
    float *dw_null = hcopy(dw, (size_t)oc * c);
    float *d_inp = dev_f(inp, (size_t)n * c), *d_w = dev_f(w, (size_t)oc * c);
    float *d_out = dev_nan((size_t)n * oc), *d_dout = dev_f(dout, (size_t)n * oc);
    float *d_dinp = dev_nan((size_t)n * c), *d_dw = dev_f(dw, (size_t)oc * c);
    float *d_dw_null = dev_f(dw, (size_t)oc * c);
    char what[96];

    cpu->matmul_forward(out, inp, w, n, c, oc);
    gpu->matmul_forward(d_out, d_inp, d_w, n, c, oc);
    snprintf(what, sizeof(what), "%s matmul_forward %dx%dx%d out", mode, n, c, oc);
    chk(what, d_out, out, (size_t)n * oc, tol);

    cpu->matmul_backward(dinp, dw, dout, inp, w, n, c, oc);
    gpu->matmul_backward(d_dinp, d_dw, d_dout, d_inp, d_w, n, c, oc);
    snprintf(what, sizeof(what), "%s matmul_backward %dx%dx%d dinp", mode, n, c, oc);
    chk(what, d_dinp, dinp, (size_t)n * c, tol);
    snprintf(what, sizeof(what), "%s matmul_backward %dx%dx%d dweight (+=)", mode, n, c, oc);
    chk(what, d_dw, dw, (size_t)oc * c, tol);

    cpu->matmul_backward(NULL, dw_null, dout, inp, w, n, c, oc);
    gpu->matmul_backward(NULL, d_dw_null, d_dout, d_inp, d_w, n, c, oc);
    snprintf(what, sizeof(what), "%s matmul_backward dinp=NULL dweight", mode);
    chk(what, d_dw_null, dw_null, (size_t)oc * c, tol);

    gpu->free(d_inp);
    gpu->free(d_w);
    gpu->free(d_out);
    gpu->free(d_dout);
    gpu->free(d_dinp);
    gpu->free(d_dw);
    gpu->free(d_dw_null);
    sw_free(inp);
    sw_free(w);
    sw_free(out);
    sw_free(dout);
    sw_free(dinp);
    sw_free(dw);
    sw_free(dw_null);
}

static void
test_rope(void)
{
    size_t nq = (size_t)N * QKV;
    float *cs = xmalloc((size_t)T * HS / 2 * sizeof(float));
    float *sn = xmalloc((size_t)T * HS / 2 * sizeof(float));
    float *qkv = hrand(nq, 1.0f), *dqkv = hrand(nq, 1.0f);
    float *d_cs, *d_sn, *d_qkv, *d_dqkv;

    sw_rope_tables(cs, sn, T, HS, 10000.0);
    d_cs = dev_f(cs, (size_t)T * HS / 2);
    d_sn = dev_f(sn, (size_t)T * HS / 2);
    d_qkv = dev_f(qkv, nq);
    d_dqkv = dev_f(dqkv, nq);

    cpu->rope_forward(qkv, cs, sn, B, T, NH, NKV, HS);
    gpu->rope_forward(d_qkv, d_cs, d_sn, B, T, NH, NKV, HS);
    check("rope_forward qkv (in place)", d_qkv, qkv, nq, TOL_ELEM);
    cpu->rope_backward(dqkv, cs, sn, B, T, NH, NKV, HS);
    gpu->rope_backward(d_dqkv, d_cs, d_sn, B, T, NH, NKV, HS);
    check("rope_backward dqkv (in place)", d_dqkv, dqkv, nq, TOL_ELEM);

    gpu->free(d_cs);
    gpu->free(d_sn);
    gpu->free(d_qkv);
    gpu->free(d_dqkv);
    sw_free(cs);
    sw_free(sn);
    sw_free(qkv);
    sw_free(dqkv);
}

/* attention at B x T with nh query heads, nkv KV heads of hs; the reduced
 * precision modes too when `modes` */
static void
attention_case(int b, int t, int nh, int nkv, int hs, bool modes)
{
    size_t n = (size_t)b * t, nq = n * (nh + 2 * nkv) * hs, no = n * nh * hs;
    size_t na = (size_t)b * nh * t * t;
    char what[96];
    float *qkv = hrand(nq, 1.5f), *out = xmalloc(no * sizeof(float));
    float *att = xmalloc(na * sizeof(float)), *datt = xmalloc(na * sizeof(float));
    float *dout = hrand(no, 1.0f), *dqkv = xmalloc(nq * sizeof(float)), *h_att;
    float *d_qkv = dev_f(qkv, nq), *d_out = dev_nan(no), *d_att = dev_nan(na);
    float *d_datt = dev_nan(na), *d_dout = dev_f(dout, no), *d_dqkv = dev_nan(nq);
    float *d_dqkv2 = dev_nan(nq);
    size_t above = 0;

    for (size_t i = 0; i < nq; i++)
        dqkv[i] = 7.0f; /* garbage: written, not accumulated */
    cpu->attention_forward(out, att, qkv, b, t, nh, nkv, hs);
    gpu->attention_forward(d_out, d_att, d_qkv, b, t, nh, nkv, hs);
    snprintf(what, sizeof(what), "attention_forward %dx%d %d/%dx%d out", b, t, nh, nkv, hs);
    check(what, d_out, out, no, TOL_SUM);
    snprintf(what, sizeof(what), "attention_forward %dx%d %d/%dx%d att", b, t, nh, nkv, hs);
    check(what, d_att, att, na, TOL_SUM);
    h_att = host_of(d_att, na);
    for (size_t r = 0; r < (size_t)b * nh * t; r++)
        for (int j = (int)(r % t) + 1; j < t; j++)
            above += h_att[r * t + j] != 0.0f;
    tap_ok(above == 0, "attention_forward att is 0 above the diagonal (%zu nonzero)", above);
    sw_free(h_att);

    gpu->copy_h2d(d_att, att, na * sizeof(float));
    cpu->attention_backward(dqkv, datt, dout, qkv, att, b, t, nh, nkv, hs);
    gpu->attention_backward(d_dqkv, d_datt, d_dout, d_qkv, d_att, b, t, nh, nkv, hs);
    snprintf(what, sizeof(what), "attention_backward %dx%d %d/%dx%d dqkv", b, t, nh, nkv, hs);
    check(what, d_dqkv, dqkv, nq, TOL_SUM);
    gpu->attention_backward(d_dqkv2, d_datt, d_dout, d_qkv, d_att, b, t, nh, nkv, hs);
    tap_ok(same_bits(d_dqkv, d_dqkv2, nq), "attention_backward is deterministic");

    /* reduced precision: attention's products in tf32 and bf16 */
    if (modes && gpu->set_math(SW_MATH_TF32) == 0) {
        gpu->attention_forward(d_out, d_att, d_qkv, b, t, nh, nkv, hs);
        check_norm("tf32 attention_forward out", d_out, out, no, TOL_TF32);
        gpu->copy_h2d(d_att, att, na * sizeof(float));
        gpu->attention_backward(d_dqkv, d_datt, d_dout, d_qkv, d_att, b, t, nh, nkv, hs);
        check_norm("tf32 attention_backward dqkv", d_dqkv, dqkv, nq, TOL_TF32);
    }
    if (modes && gpu->set_math(SW_MATH_BF16) == 0) {
        gpu->attention_forward(d_out, d_att, d_qkv, b, t, nh, nkv, hs);
        check_norm("bf16 attention_forward out", d_out, out, no, TOL_BF16);
        gpu->copy_h2d(d_att, att, na * sizeof(float));
        gpu->attention_backward(d_dqkv, d_datt, d_dout, d_qkv, d_att, b, t, nh, nkv, hs);
        check_norm("bf16 attention_backward dqkv", d_dqkv, dqkv, nq, TOL_BF16);
    }
    gpu->set_math(SW_MATH_FP32);

    gpu->free(d_qkv);
    gpu->free(d_out);
    gpu->free(d_att);
    gpu->free(d_datt);
    gpu->free(d_dout);
    gpu->free(d_dqkv);
    gpu->free(d_dqkv2);
    sw_free(qkv);
    sw_free(out);
    sw_free(att);
    sw_free(datt);
    sw_free(dout);
    sw_free(dqkv);
}

static void
test_attention(void)
{
    attention_case(B, T, NH, NKV, HS, true);
    attention_case(2, 130, 4, 1, 64, true); /* rows longer than 4 warps' worth, one KV head */
    attention_case(1, 64, 3, 3, 8, false);  /* no grouping */
}

static void
test_swiglu(void)
{
    size_t nf = (size_t)N * F;
    float *gu = hrand(2 * nf, 4.0f), *out = xmalloc(nf * sizeof(float));
    float *dout = hrand(nf, 1.0f), *dgu = xmalloc(2 * nf * sizeof(float));
    float *d_gu = dev_f(gu, 2 * nf), *d_out = dev_nan(nf), *d_dout = dev_f(dout, nf);
    float *d_dgu = dev_nan(2 * nf);

    cpu->swiglu_forward(out, gu, N, F);
    gpu->swiglu_forward(d_out, d_gu, N, F);
    check("swiglu_forward out", d_out, out, nf, TOL_ELEM);
    cpu->swiglu_backward(dgu, dout, gu, N, F);
    gpu->swiglu_backward(d_dgu, d_dout, d_gu, N, F);
    check("swiglu_backward dgu (written)", d_dgu, dgu, 2 * nf, TOL_ELEM);

    gpu->free(d_gu);
    gpu->free(d_out);
    gpu->free(d_dout);
    gpu->free(d_dgu);
    sw_free(gu);
    sw_free(out);
    sw_free(dout);
    sw_free(dgu);
}

static void
test_residual(void)
{
    size_t n = (size_t)N * C;
    float *a = hrand(n, 1.0f), *b = hrand(n, 1.0f), *out = xmalloc(n * sizeof(float));
    float *da = hrand(n, 1.0f), *db = hrand(n, 1.0f), *dout = hrand(n, 1.0f);
    float *d_a = dev_f(a, n), *d_b = dev_f(b, n), *d_out = dev_nan(n);
    float *d_da = dev_f(da, n), *d_db = dev_f(db, n), *d_dout = dev_f(dout, n);

    cpu->residual_forward(out, a, b, n);
    gpu->residual_forward(d_out, d_a, d_b, n);
    check("residual_forward out", d_out, out, n, TOL_ELEM);
    cpu->residual_forward(a, a, b, n);
    gpu->residual_forward(d_a, d_a, d_b, n);
    check("residual_forward out aliasing inp1", d_a, a, n, TOL_ELEM);
    cpu->residual_backward(da, db, dout, n);
    gpu->residual_backward(d_da, d_db, d_dout, n);
    check("residual_backward dinp1 (+=)", d_da, da, n, TOL_ELEM);
    check("residual_backward dinp2 (+=)", d_db, db, n, TOL_ELEM);

    gpu->free(d_a);
    gpu->free(d_b);
    gpu->free(d_out);
    gpu->free(d_da);
    gpu->free(d_db);
    gpu->free(d_dout);
    sw_free(a);
    sw_free(b);
    sw_free(out);
    sw_free(da);
    sw_free(db);
    sw_free(dout);
}

static void
test_crossentropy(void)
{
    size_t nv = (size_t)N * V;
    int32_t tgt[N];
    float *logits = hrand(nv, 4.0f), *probs = xmalloc(nv * sizeof(float));
    float *losses = xmalloc(N * sizeof(float)), *dlogits = xmalloc(nv * sizeof(float));
    float *d_logits = dev_f(logits, nv), *d_probs = dev_nan(nv), *d_losses = dev_nan(N);
    float *d_dlogits = dev_nan(nv);
    int32_t *d_tgt;

    for (int n = 0; n < N; n++)
        tgt[n] = (int32_t)(rng_next() % V);
    tgt[0] = 0;
    tgt[1] = V - 1;
    d_tgt = dev_of(tgt, sizeof(tgt));

    cpu->crossentropy_forward(losses, probs, logits, tgt, N, V);
    gpu->crossentropy_forward(d_losses, d_probs, d_logits, d_tgt, N, V);
    check("crossentropy_forward losses", d_losses, losses, N, TOL_ELEM);
    check("crossentropy_forward probs", d_probs, probs, nv, TOL_ELEM);
    gpu->copy_h2d(d_probs, probs, nv * sizeof(float));
    cpu->crossentropy_backward(dlogits, probs, tgt, 1.0f / N, N, V);
    gpu->crossentropy_backward(d_dlogits, d_probs, d_tgt, 1.0f / N, N, V);
    check("crossentropy_backward dlogits (written)", d_dlogits, dlogits, nv, TOL_ELEM);

    gpu->free(d_logits);
    gpu->free(d_probs);
    gpu->free(d_losses);
    gpu->free(d_dlogits);
    gpu->free(d_tgt);
    sw_free(logits);
    sw_free(probs);
    sw_free(losses);
    sw_free(dlogits);
}

static void
test_adamw(void)
{
    enum { M = 10007 };
    float *p = hrand(M, 1.0f), *g = hrand(M, 2.0f), *m = hrand(M, 0.1f), *v = hrand(M, 0.1f);
    float *d_p, *d_g, *d_m, *d_v;

    for (int i = 0; i < M; i++)
        v[i] *= v[i];
    d_p = dev_f(p, M);
    d_g = dev_f(g, M);
    d_m = dev_f(m, M);
    d_v = dev_f(v, M);
    for (int t = 1; t <= 3; t++) {
        cpu->adamw_update(p, g, m, v, M, 3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t);
        gpu->adamw_update(d_p, d_g, d_m, d_v, M, 3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, t);
    }
    check("adamw_update param (3 steps)", d_p, p, M, TOL_ELEM);
    check("adamw_update m", d_m, m, M, TOL_ELEM);
    check("adamw_update v", d_v, v, M, TOL_ELEM);

    gpu->free(d_p);
    gpu->free(d_g);
    gpu->free(d_m);
    gpu->free(d_v);
    sw_free(p);
    sw_free(g);
    sw_free(m);
    sw_free(v);
}

static void
test_sumsq(void)
{
    static const size_t sizes[] = {1, 37, 1000003};

    for (size_t k = 0; k < SW_ARRAY_SIZE(sizes); k++) {
        size_t n = sizes[k];
        float *x = hrand(n, 3.0f), *d_x = dev_f(x, n);
        double want = cpu->sumsq(x, n), got = gpu->sumsq(d_x, n), again = gpu->sumsq(d_x, n);
        double rel = fabs(got - want) / fmax(fabs(want), 1e-300);

        tap_diag("%-44s cpu %.17g cuda %.17g rel %.3e", "sumsq", want, got, rel);
        tap_ok(rel <= 1e-12, "sumsq n=%zu: cuda matches cpu", n);
        tap_ok(memcmp(&got, &again, sizeof(got)) == 0, "sumsq n=%zu is deterministic", n);
        gpu->free(d_x);
        sw_free(x);
    }
    tap_ok(gpu->sumsq(NULL, 0) == 0.0, "sumsq of nothing is 0");
}

static void
test_weighted_average(void)
{
    enum { M = 10007 };
    float *a = hrand(M, 1.0f), *b = hrand(M, 1.0f), *out = xmalloc(M * sizeof(float));
    float *d_a = dev_f(a, M), *d_b = dev_f(b, M), *d_out = dev_nan(M);

    cpu->weighted_average(out, a, 0.3f, b, 1.7f, M);
    gpu->weighted_average(d_out, d_a, 0.3f, d_b, 1.7f, M);
    check("weighted_average out", d_out, out, M, TOL_ELEM);
    cpu->weighted_average(b, a, 2.5f, b, 0.25f, M);
    gpu->weighted_average(d_b, d_a, 2.5f, d_b, 0.25f, M);
    check("weighted_average out aliasing b", d_b, b, M, TOL_ELEM);

    gpu->free(d_a);
    gpu->free(d_b);
    gpu->free(d_out);
    sw_free(a);
    sw_free(b);
    sw_free(out);
}

/* TF32 and bf16 matmuls against the fp32 CPU result */
static void
test_math_modes(void)
{
    tap_ok(gpu->set_math((enum sw_math)7) == -SW_EINVAL, "set_math rejects an unknown mode");
    if (gpu->set_math(SW_MATH_TF32) == 0) {
        matmul_case(N, C, QKV, "tf32", TOL_TF32, check_norm);
        matmul_case(N, F, C, "tf32", TOL_TF32, check_norm);
    } else {
        tap_skip("tf32 needs sm_80");
    }
    if (gpu->set_math(SW_MATH_BF16) == 0) {
        matmul_case(N, C, QKV, "bf16", TOL_BF16, check_norm);
        matmul_case(N, F, C, "bf16", TOL_BF16, check_norm);
        /* a row length that is not a multiple of 4 floats: unaligned operands */
        matmul_case(N, 37, 53, "bf16", TOL_BF16, check_norm);
    } else {
        tap_skip("bf16 needs sm_80");
    }
    tap_ok(gpu->set_math(SW_MATH_FP32) == 0, "set_math back to fp32");
}

/* a failing call is recorded with its name, reported once by last_error,
 * then cleared; both failures here are caught before touching memory, so
 * the context stays usable */
static void
test_errors(void)
{
    int32_t tok = 1;
    int32_t *d_tok = dev_of(&tok, sizeof(tok));
    float h[16] = {0};
    int rc;

    tap_ok(gpu->sync() == 0, "no error pending after the ops");
    sw_log(SW_LOG_INFO, "two error lines are expected next (a NULL copy, a bad launch)");
    rc = gpu->copy_h2d(NULL, h, sizeof(h));
    tap_ok(rc == -SW_ECUDA, "copy to NULL fails (%d)", rc);
    rc = gpu->last_error();
    tap_ok(rc == -SW_ECUDA, "last_error reports it (%s)", sw_strerror(rc));
    tap_ok(gpu->last_error() == 0, "last_error clears it");
    /* C so wide that the grid is invalid: the launch fails, nothing runs */
    gpu->embedding_backward((float *)d_tok, (const float *)d_tok, d_tok, 1, 65536 * 128 + 1);
    rc = gpu->sync();
    tap_ok(rc == -SW_ECUDA, "a failed kernel launch is reported by sync (%s)", sw_strerror(rc));
    tap_ok(gpu->sync() == 0, "the device still works");
    gpu->free(d_tok);
}

int
main(void)
{
    if (sw_kernels_cuda_probe(&gpu) < 0)
        return tap_skip_all("no CUDA device");
    cpu->set_threads(1);

    test_memory();
    test_embedding();
    test_rmsnorm();
    matmul_case(N, C, QKV, "fp32", TOL_SUM, check);   /* qkv projection */
    matmul_case(N, F, C, "fp32", TOL_SUM, check);     /* down projection */
    matmul_case(N, C, V, "fp32", TOL_SUM, check);     /* lm head */
    test_rope();
    test_attention();
    test_swiglu();
    test_residual();
    test_crossentropy();
    test_adamw();
    test_sumsq();
    test_weighted_average();
    test_math_modes();
    test_errors();
    return tap_done();
}
