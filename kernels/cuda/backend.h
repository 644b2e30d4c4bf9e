/*
 * backend.h - what the CUDA kernel files of kernels/cuda/ share (C++ only;
 * the public contract is kernels/kernels.h).
 *
 * The CUDA backend is the table that sw_kernels_cuda_probe() hands out.  Each
 * op lives in the .cu file named after its CPU twin (rmsnorm.cu, ...): a
 * static `<op>_kernel` behind a launcher `sw__cuda_<op>` with the signature
 * of the table's pointer.  Matmuls go through cuBLAS (matmul.cu), everything
 * else is our own kernels.
 *
 * Execution: everything is queued on the legacy default stream, so ops run
 * in call order and a scratch buffer may be reused by the next op without a
 * sync.  One thread drives the backend at a time (the trainer's); the error
 * slot alone is safe to touch from several threads.
 *
 * Errors: every CUDA and cuBLAS call is checked.  The first failure is
 * recorded with the name of the kernel or call that failed, logged at
 * SW_LOG_ERROR, and returned (as -SW_ECUDA, or -SW_ENOMEM for a failed
 * scratch allocation) by ->last_error(), which clears it.  A failure that
 * surfaces asynchronously (a fault inside a kernel) is reported by the next
 * checked call, naming the last kernel launched before it.
 *
 * Determinism: no floating-point atomics anywhere; every reduction has a fixed
 * order that depends only on the shapes, so two runs on one GPU give the
 * same bits (cuBLAS is deterministic on one stream with one handle).
 */
#ifndef SW_KERNELS_CUDA_BACKEND_H
#define SW_KERNELS_CUDA_BACKEND_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "sw.h"

#include "kernels.h"
}

/* threads per block of the simple elementwise kernels */
#define SW_CUDA_BLOCK 256
/* upper bound on the blocks of a grid-stride elementwise launch */
#define SW_CUDA_MAX_BLOCKS 65536

/* ---- state shared by all files (backend.cu) ---- */

extern cublasHandle_t sw__cuda_blas;  /* created by the probe */
extern enum sw_math sw__cuda_math;    /* current matmul mode */

/* Record a failure (only the first is kept until last_error() clears it) and
 * log it; `what` names the kernel or call; err is a -SW_E* code. */
void sw__cuda_fail(const char *what, int err, const char *detail);
/* Check the result of a CUDA runtime call; false (and recorded) on failure. */
bool sw__cuda_ok(cudaError_t e, const char *what);
/* Check a cuBLAS call. */
bool sw__cuda_blas_ok(cublasStatus_t s, const char *what);
/* Check the launch of a kernel just queued (cudaGetLastError) and remember
 * its name for faults that show up later. */
bool sw__cuda_launched(const char *kernel);

/* Scratch buffers of the backend, one per slot, grown on demand (a grow
 * frees and reallocates, so it synchronizes: it happens in the first steps
 * only).  NULL on failure (recorded).  The contents do not survive the op. */
enum sw__cuda_slot {
    SW_CUDA_SCRATCH_A,      /* bf16 operand copies (matmul), sort keys (embedding) */
    SW_CUDA_SCRATCH_B,
    SW_CUDA_SCRATCH_C,
    SW_CUDA_SCRATCH_REDUCE, /* per-block partial sums */
    SW_CUDA_SCRATCH_COUNT,
};
void *sw__cuda_scratch(enum sw__cuda_slot slot, size_t bytes, const char *who);

/* Blocks for n elements at `threads` per block, capped (grid-stride loops). */
static inline unsigned
sw__cuda_blocks(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    if (b < 1)
        b = 1;
    return (unsigned)(b > SW_CUDA_MAX_BLOCKS ? SW_CUDA_MAX_BLOCKS : b);
}

/* Strided-batched GEMM on fp32 column-major operands in the current math
 * mode (fp32: plain; tf32: tensor cores; bf16: bf16 tensor cores with fp32
 * accumulate, cuBLAS rounding the operands).  Used by the attention. */
void sw__cuda_gemm_strided(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           float alpha, const float *A, int lda, long long sa, const float *B,
                           int ldb, long long sb, float beta, float *C, int ldc, long long sc,
                           int batch, const char *what);

/* ---- the ops, one launcher each (signatures of struct sw_kernels) ---- */

void sw__cuda_embedding_forward(float *out, const int32_t *inp, const float *wte, int N, int C);
void sw__cuda_embedding_backward(float *dwte, const float *dout, const int32_t *inp, int N, int C);
void sw__cuda_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                              int N, int C, float eps);
void sw__cuda_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                               const float *weight, const float *rstd, int N, int C);
void sw__cuda_matmul_forward(float *out, const float *inp, const float *weight, int N, int C,
                             int OC);
void sw__cuda_matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                              const float *weight, int N, int C, int OC);
void sw__cuda_rope_forward(float *qkv, const float *cos, const float *sin, int B, int T, int NH,
                           int NKV, int HS);
void sw__cuda_rope_backward(float *dqkv, const float *cos, const float *sin, int B, int T, int NH,
                            int NKV, int HS);
void sw__cuda_attention_forward(float *out, float *att, const float *qkv, int B, int T, int NH,
                                int NKV, int HS);
void sw__cuda_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                                 const float *att, int B, int T, int NH, int NKV, int HS);
void sw__cuda_swiglu_forward(float *out, const float *gu, int N, int F);
void sw__cuda_swiglu_backward(float *dgu, const float *dout, const float *gu, int N, int F);
void sw__cuda_residual_forward(float *out, const float *inp1, const float *inp2, size_t n);
void sw__cuda_residual_backward(float *dinp1, float *dinp2, const float *dout, size_t n);
void sw__cuda_crossentropy_forward(float *losses, float *probs, const float *logits,
                                   const int32_t *targets, int N, int V);
void sw__cuda_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets,
                                    float dloss, int N, int V);
void sw__cuda_adamw_update(float *param, const float *grad, float *m, float *v, size_t n,
                           float lr, float beta1, float beta2, float eps, float weight_decay,
                           float grad_scale, int t);
double sw__cuda_sumsq(const float *x, size_t n);
void sw__cuda_weighted_average(float *out, const float *a, float wa, const float *b, float wb,
                               size_t n);

/* ---- device helpers ---- */

__device__ __forceinline__ float
sw__warp_sum(float x)
{
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

__device__ __forceinline__ float
sw__warp_max(float x)
{
    for (int o = 16; o > 0; o >>= 1)
        x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

__device__ __forceinline__ double
sw__warp_sum_d(double x)
{
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

/* Block-wide reductions (blockDim.x a multiple of 32, at most 1024); every
 * thread gets the result.  `shared` holds 32 floats; the fixed tree makes the
 * result depend on the block size only. */
__device__ __forceinline__ float
sw__block_sum(float x, float *shared)
{
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;

    x = sw__warp_sum(x);
    __syncthreads(); /* shared may still be read by a previous call */
    if (lane == 0)
        shared[warp] = x;
    __syncthreads();
    x = lane < nwarps ? shared[lane] : 0.0f;
    return sw__warp_sum(x);
}

__device__ __forceinline__ double
sw__block_sum_d(double x, double *shared)
{
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;

    x = sw__warp_sum_d(x);
    __syncthreads();
    if (lane == 0)
        shared[warp] = x;
    __syncthreads();
    x = lane < nwarps ? shared[lane] : 0.0;
    return sw__warp_sum_d(x);
}

__device__ __forceinline__ float
sw__block_max(float x, float *shared)
{
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;

    x = sw__warp_max(x);
    __syncthreads();
    if (lane == 0)
        shared[warp] = x;
    __syncthreads();
    x = lane < nwarps ? shared[lane] : -INFINITY;
    return sw__warp_max(x);
}

#endif
