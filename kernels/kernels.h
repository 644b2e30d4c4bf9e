/*
 * kernels.h - the math of a LLaMA stage, one op = a forward/backward pair.
 *
 * A backend (CPU: kernels/cpu/, OpenBLAS + OpenMP; CUDA: kernels/cuda/,
 * cuBLAS + our own kernels) fills one `struct sw_kernels` of function
 * pointers.  The trainer never calls a backend directly: it calls through the
 * table that sw_kernels_pick() returned once at start-up.
 *
 * Conventions (llm.c's):
 *   - fp32 everywhere, row-major, little-endian.  N = B*T rows.
 *   - arguments: outputs first, then inputs and weights, then shape ints.
 *   - every float/int pointer is memory of the backend (host memory for the
 *     CPU backend, device memory for CUDA).  Use ->alloc / ->copy_* to move
 *     data in and out.  Scalars (lr, eps, ...) are host values.
 *   - parameter gradients (dweight, dwte) are ACCUMULATED (+=): the caller
 *     zeroes the gradient slab once per step, so microbatches sum up.
 *   - activation gradients are WRITTEN (=), with one exception:
 *     rmsnorm_backward ACCUMULATES into dinp, so that the gradient of the
 *     residual stream flows through a single buffer (see src/stage.c).
 *   - ops are void; a backend that can fail asynchronously (CUDA) records
 *     the first failure with the failing kernel's name, logs it, and returns
 *     it from ->last_error() (which also clears it).  The trainer checks
 *     ->last_error() after each forward and backward of a microbatch.
 *
 * Packed layouts (so q/k/v and gate/up are each one GEMM):
 *   qkv[N, (NH + 2*NKV) * HS]: per row, NH query heads, then NKV key heads,
 *       then NKV value heads, each HS floats.  This is exactly the output of
 *       one matmul against the row-stacked weight [q_proj; k_proj; v_proj].
 *   gu[N, 2*F]: per row, F gate values then F up values (weight
 *       [gate_proj; up_proj]).
 *   Grouped KV heads follow Hugging Face's repeat_kv: query head h attends
 *       with key/value head h / (NH / NKV).
 *   Shapes: HS is even and NH % NKV == 0 (sw_model_config_check enforces it).
 *   RoPE is Hugging Face's rotate_half over split halves: for i < HS/2,
 *       y[i]      = x[i] * cos[t,i] - x[i + HS/2] * sin[t,i]
 *       y[i+HS/2] = x[i + HS/2] * cos[t,i] + x[i] * sin[t,i]
 *   where t is the position inside the window (0..T-1) and cos/sin[T, HS/2]
 *   are tables the caller computes (sw_rope_tables below) and uploads.
 *
 * Only this header has a CUDA #if: without HAVE_CUDA the CUDA entry points
 * are inline stubs returning -SW_ENODEV.
 */
#ifndef SW_KERNELS_H
#define SW_KERNELS_H

#include <stddef.h>
#include <stdint.h>

enum sw_device {
    SW_DEVICE_AUTO = 0,
    SW_DEVICE_CPU = 1,
    SW_DEVICE_CUDA = 2,
};

/* Math mode of the matmuls.  fp32 is the default and the only CPU mode. */
enum sw_math {
    SW_MATH_FP32 = 0,
    SW_MATH_TF32 = 1, /* CUDA: TF32 tensor cores, fp32 storage */
    SW_MATH_BF16 = 2, /* CUDA: bf16 GEMM inputs, fp32 accumulate and master weights */
};

struct sw_kernels {
    const char *name; /* "cpu" or "cuda" */
    enum sw_device device;

    /* ---- memory of the backend ---- */
    void *(*alloc)(size_t bytes); /* zero-filled; NULL on failure */
    void (*free)(void *p);
    /* host memory for what crosses between a stage and the network (the
     * boundary activations and their gradients): page-locked (cudaMallocHost)
     * on CUDA, so copies run at full PCIe speed; 64-byte aligned and
     * pre-faulted on the CPU.  Zero-filled; NULL on failure. */
    void *(*alloc_host)(size_t bytes);
    void (*free_host)(void *p);
    int (*copy_h2d)(void *dst, const void *src, size_t bytes);
    int (*copy_d2h)(void *dst, const void *src, size_t bytes);
    int (*copy_d2d)(void *dst, const void *src, size_t bytes);
    int (*memset0)(void *p, size_t bytes);
    int (*sync)(void);          /* wait for queued work; returns last_error() */
    int (*last_error)(void);    /* 0 or the first -SW_E* since the last call */
    /* CPU: OpenMP threads; GEMMs are split over them (OpenBLAS itself stays
     * single-threaded, so the two never oversubscribe).  CUDA: no-op. */
    int (*set_threads)(int n);
    int (*set_math)(enum sw_math m); /* -SW_ENOTSUP where the mode is unavailable */

    /* ---- ops ---- */

    /* out[N,C] = wte[inp[n], :];  tokens must be < V (checked by the caller) */
    void (*embedding_forward)(float *out, const int32_t *inp, const float *wte, int N, int C);
    /* dwte[V,C] += scatter of dout[N,C] by inp[N] */
    void (*embedding_backward)(float *dwte, const float *dout, const int32_t *inp, int N, int C);

    /* out = inp * rstd * weight, rstd[n] = 1/sqrt(mean(inp[n]^2) + eps) */
    void (*rmsnorm_forward)(float *out, float *rstd, const float *inp, const float *weight,
                            int N, int C, float eps);
    /* dinp[N,C] += ..., dweight[C] += ... */
    void (*rmsnorm_backward)(float *dinp, float *dweight, const float *dout, const float *inp,
                             const float *weight, const float *rstd, int N, int C);

    /* out[N,OC] = inp[N,C] @ weight[OC,C]^T  (no bias in LLaMA) */
    void (*matmul_forward)(float *out, const float *inp, const float *weight, int N, int C, int OC);
    /* dinp[N,C] = dout @ weight (skipped when dinp is NULL); dweight[OC,C] += dout^T @ inp */
    void (*matmul_backward)(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, int N, int C, int OC);

    /* in place on the q and k heads of qkv[B*T, (NH+2*NKV)*HS]; v untouched */
    void (*rope_forward)(float *qkv, const float *cos, const float *sin, int B, int T, int NH,
                         int NKV, int HS);
    /* in place on dqkv: the transpose of the rotation (rotation by -angle) */
    void (*rope_backward)(float *dqkv, const float *cos, const float *sin, int B, int T, int NH,
                          int NKV, int HS);

    /* causal softmax attention, scale 1/sqrt(HS).
     * out[B*T, NH*HS]; att[B,NH,T,T] receives the softmax probabilities
     * (entries above the diagonal are 0) and is kept for the backward. */
    void (*attention_forward)(float *out, float *att, const float *qkv, int B, int T, int NH,
                              int NKV, int HS);
    /* dqkv[B*T,(NH+2*NKV)*HS] = ...  (written, all three parts);
     * datt[B,NH,T,T] is scratch the backend may overwrite */
    void (*attention_backward)(float *dqkv, float *datt, const float *dout, const float *qkv,
                               const float *att, int B, int T, int NH, int NKV, int HS);

    /* out[N,F] = silu(gu[:, :F]) * gu[:, F:] */
    void (*swiglu_forward)(float *out, const float *gu, int N, int F);
    /* dgu[N,2F] = ... (written) */
    void (*swiglu_backward)(float *dgu, const float *dout, const float *gu, int N, int F);

    /* out[n] = inp1[n] + inp2[n]; out may alias inp1 or inp2 */
    void (*residual_forward)(float *out, const float *inp1, const float *inp2, size_t n);
    /* dinp1 += dout; dinp2 += dout */
    void (*residual_backward)(float *dinp1, float *dinp2, const float *dout, size_t n);

    /* losses[N] = -log softmax(logits[n])[targets[n]]; probs[N,V] = softmax(logits) */
    void (*crossentropy_forward)(float *losses, float *probs, const float *logits,
                                 const int32_t *targets, int N, int V);
    /* dlogits[N,V] = dloss * (probs - onehot(targets))  (written) */
    void (*crossentropy_backward)(float *dlogits, const float *probs, const int32_t *targets,
                                  float dloss, int N, int V);

    /* ---- optimizer and recovery ---- */

    /* AdamW with decoupled weight decay on n floats; grad is multiplied by
     * grad_scale first (global-norm clipping); t >= 1 is the step for bias
     * correction:  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
     * p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p) */
    void (*adamw_update)(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                         float beta1, float beta2, float eps, float weight_decay,
                         float grad_scale, int t);
    /* sum of squares of x[n], accumulated in double, returned to the host */
    double (*sumsq)(const float *x, size_t n);
    /* CheckFree: out[n] = (wa * a[n] + wb * b[n]) / (wa + wb); out may alias a or b */
    void (*weighted_average)(float *out, const float *a, float wa, const float *b, float wb,
                             size_t n);
};

extern const struct sw_kernels sw_kernels_cpu;

/* Pick a backend: AUTO takes CUDA when a device is present, else the CPU.
 * CUDA asked for explicitly and absent is -SW_ENODEV.  Call once at start. */
int sw_kernels_pick(enum sw_device want, const struct sw_kernels **out)
    __attribute__((warn_unused_result));
/* "auto" | "cpu" | "cuda" -> enum; -SW_EINVAL otherwise */
int sw_device_parse(const char *s, enum sw_device *out) __attribute__((warn_unused_result));
/* "fp32" | "tf32" | "bf16" -> enum; -SW_EINVAL otherwise */
int sw_math_parse(const char *s, enum sw_math *out) __attribute__((warn_unused_result));

/* RoPE tables on the host: cos/sin[T, HS/2], angle t * theta^(-2i/HS),
 * computed in double and rounded once, so every backend sees the same table. */
void sw_rope_tables(float *cos_out, float *sin_out, int T, int HS, double theta);

#ifdef HAVE_CUDA
/* 0 when a usable CUDA device exists; fills *out with the CUDA table */
int sw_kernels_cuda_probe(const struct sw_kernels **out);
#else
static inline int
sw_kernels_cuda_probe(const struct sw_kernels **out)
{
    (void)out;
    return -19; /* -SW_ENODEV (ENODEV) */
}
#endif

#endif
