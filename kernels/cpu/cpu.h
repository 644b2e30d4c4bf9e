/*
 * cpu.h - the CPU backend of kernels.h (OpenBLAS sgemm + OpenMP loops).
 *
 * Internal to kernels/cpu/: the rest of swarm sees only `sw_kernels_cpu`
 * (kernels/cpu/table.c) and calls these ops through it.  Each op lives in
 * its own file (rmsnorm.c, matmul.c, ...) and follows kernels.h exactly:
 * parameter gradients accumulate (+=), activation gradients are written (=),
 * except rmsnorm_backward, which accumulates into dinp.
 *
 * Threading: one runtime, OpenMP.  OpenBLAS is kept single-threaded
 * (sw__cpu_init) and every large GEMM is cut into row or column slices, one
 * per OpenMP thread (sw__cpu_sgemm); small per-head GEMMs run inside an
 * OpenMP loop over heads.  Mixing OpenBLAS's own pthreads with OpenMP's
 * spinning workers on a 2-core machine cost 10-15% in measurements, and
 * calling a threaded BLAS from inside an OpenMP region oversubscribes.
 * The thread count is OpenMP's (omp_set_num_threads via ->set_threads, or
 * OMP_NUM_THREADS).
 *
 * Determinism: for a fixed thread count every op gives bit-identical results
 * on identical inputs: no atomics, reductions are split in a fixed way
 * (embedding_backward and rmsnorm's dweight run over channels, so they do
 * not even depend on the thread count; so does sumsq).
 *
 * Memory: no op allocates; attention's scratch is the caller's att/datt.
 */
#ifndef SW_KERNELS_CPU_H
#define SW_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>

/* Loops over fewer elements than this run on one thread: a fork and a
 * barrier cost microseconds, and far more when the machine is oversubscribed
 * and a spinning worker waits for a descheduled one. */
#define SW_CPU_PAR_MIN 32768
#define SW_CPU_PAR(work) ((size_t)(work) >= SW_CPU_PAR_MIN)

/* Make OpenBLAS single-threaded, once per process (idempotent, thread-safe). */
void sw__cpu_init(void);

/* Row-major C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, with
 * op(X) = X^T when trans_x is nonzero.  Split over the larger of M and N
 * across the OpenMP threads; called from inside a parallel region it runs
 * on the calling thread alone. */
void sw__cpu_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                   int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Part i of [0, n) cut into `parts` contiguous pieces whose inner boundaries
 * are multiples of `align`. */
static inline void
sw__cpu_range(int n, int parts, int i, int align, int *lo, int *hi)
{
    int units = (n + align - 1) / align;

    *lo = (int)((long)units * i / parts) * align;
    *hi = (int)((long)units * (i + 1) / parts) * align;
    if (*lo > n)
        *lo = n;
    if (*hi > n)
        *hi = n;
}

/* exp(x) to within ~1.5 ulp, written so that GCC vectorizes loops calling
 * it (glibc's expf is a scalar call at our flags).  Finite x is clamped to
 * [-87, 88] first, so the result is never 0 or inf (below -87 it is about
 * 1.6e-38); NaN and +-inf give NaN, so that non-finite activations stay
 * visible to the trainer.  The clamp compares bit patterns because float
 * compares keep GCC from if-converting the loop under -ftrapping-math.
 * Range reduction by ln 2 (split in two constants), a degree-5 polynomial
 * (Cephes' expf coefficients), and 2^n built in the exponent bits. */
static inline float
sw__cpu_expf(float x)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: x + magic rounds x to an integer */
    union {
        float f;
        uint32_t u;
        int32_t i;
    } c = {.f = x}, s;
    float x0 = x, t, n, r, p;

    c.u = c.u > 0xC2AE0000u ? 0xC2AE0000u : c.u; /* negative and below -87.0f */
    c.i = c.i > 0x42B00000 ? 0x42B00000 : c.i;   /* above 88.0f */
    x = c.f;
    t = x * 1.44269504088896341f + magic;
    n = t - magic; /* round(x / ln 2) */
    r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    p = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r +
          4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    s.f = t;
    s.i = (s.i - 0x4B400000 + 127) * (1 << 23); /* 2^n */
    return p * s.f + (x0 - x0); /* + 0, or NaN when x is not finite */
}

void sw__cpu_embedding_forward(float *out, const int32_t *inp, const float *wte, int N, int C);
void sw__cpu_embedding_backward(float *dwte, const float *dout, const int32_t *inp, int N, int C);

void sw__cpu_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                             int N, int C, float eps);
void sw__cpu_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                              const float *weight, const float *rstd, int N, int C);

void sw__cpu_matmul_forward(float *out, const float *inp, const float *weight, int N, int C,
                            int OC);
void sw__cpu_matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                             const float *weight, int N, int C, int OC);

void sw__cpu_rope_forward(float *qkv, const float *cos, const float *sin, int B, int T, int NH,
                          int NKV, int HS);
void sw__cpu_rope_backward(float *dqkv, const float *cos, const float *sin, int B, int T, int NH,
                           int NKV, int HS);

void sw__cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int NH,
                               int NKV, int HS);
void sw__cpu_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                                const float *att, int B, int T, int NH, int NKV, int HS);

void sw__cpu_swiglu_forward(float *out, const float *gu, int N, int F);
void sw__cpu_swiglu_backward(float *dgu, const float *dout, const float *gu, int N, int F);

void sw__cpu_residual_forward(float *out, const float *inp1, const float *inp2, size_t n);
void sw__cpu_residual_backward(float *dinp1, float *dinp2, const float *dout, size_t n);

void sw__cpu_crossentropy_forward(float *losses, float *probs, const float *logits,
                                  const int32_t *targets, int N, int V);
void sw__cpu_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets,
                                   float dloss, int N, int V);

void sw__cpu_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                          float beta1, float beta2, float eps, float weight_decay,
                          float grad_scale, int t);
double sw__cpu_sumsq(const float *x, size_t n);
void sw__cpu_weighted_average(float *out, const float *a, float wa, const float *b, float wb,
                              size_t n);

#endif
