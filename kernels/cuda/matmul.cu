/*
 * matmul.cu - out = inp @ weight^T and its gradients, through cuBLAS.
 *
 * cuBLAS is column-major, and a row-major [R, K] matrix is a column-major
 * [K, R] one: out[N,OC] = inp[N,C] @ W[OC,C]^T is, column-major,
 * out^T (OC x N) = W^T (OC x C) @ inp^T (C x N), that is
 * Sgemm(T, N, OC, N, C, W, lda C, inp, ldb C, out, ldc OC).
 *
 * Math modes: fp32 calls cublasSgemm on a handle in CUBLAS_DEFAULT_MATH (no
 * TF32); tf32 calls cublasGemmEx with CUBLAS_COMPUTE_32F_FAST_TF32; bf16
 * rounds both operands to bf16 into scratch buffers reused from call to call
 * (the fp32 master weights are never touched) and calls cublasGemmEx with
 * bf16 inputs, fp32 accumulation and fp32 output.
 */
#include "backend.h"

#include <cuda_bf16.h>

/* dst[n] = bf16(src[n]), round to nearest even; float4 loads when src is
 * 16-byte aligned (a tensor inside a slab may not be) */
__global__ static void
matmul_to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n)
{
    size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    size_t n4 = ((uintptr_t)src & 15) == 0 ? n / 4 : 0;

    for (size_t i = tid; i < n4; i += stride) {
        float4 v = reinterpret_cast<const float4 *>(src)[i];
        reinterpret_cast<__nv_bfloat162 *>(dst)[2 * i] = __floats2bfloat162_rn(v.x, v.y);
        reinterpret_cast<__nv_bfloat162 *>(dst)[2 * i + 1] = __floats2bfloat162_rn(v.z, v.w);
    }
    for (size_t i = n4 * 4 + tid; i < n; i += stride)
        dst[i] = __float2bfloat16_rn(src[i]);
}

/* bf16 copy of src[n] in scratch `slot`; NULL on failure (recorded) */
static const __nv_bfloat16 *
to_bf16(enum sw__cuda_slot slot, const float *src, size_t n)
{
    __nv_bfloat16 *dst;

    dst = (__nv_bfloat16 *)sw__cuda_scratch(slot, n * sizeof(__nv_bfloat16), "matmul (bf16)");
    if (!dst)
        return NULL;
    matmul_to_bf16_kernel<<<sw__cuda_blocks(n / 4 + 1, SW_CUDA_BLOCK), SW_CUDA_BLOCK>>>(dst, src,
                                                                                      n);
    return sw__cuda_launched("matmul_to_bf16_kernel") ? dst : NULL;
}

/* C (m x n, ldc) = op(A) op(B) + beta C, column-major.  A and B are fp32
 * (fp32, tf32 modes) or bf16 copies (bf16 mode). */
static void
gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *A, int lda,
     const void *B, int ldb, float beta, float *C, int ldc, const char *what)
{
    const float alpha = 1.0f;
    cublasStatus_t s;

    switch (sw__cuda_math) {
    case SW_MATH_TF32:
        s = cublasGemmEx(sw__cuda_blas, ta, tb, m, n, k, &alpha, A, CUDA_R_32F, lda, B,
                         CUDA_R_32F, ldb, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_TF32,
                         CUBLAS_GEMM_DEFAULT);
        break;
    case SW_MATH_BF16:
        s = cublasGemmEx(sw__cuda_blas, ta, tb, m, n, k, &alpha, A, CUDA_R_16BF, lda, B,
                         CUDA_R_16BF, ldb, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT);
        break;
    default:
        s = cublasSgemm(sw__cuda_blas, ta, tb, m, n, k, &alpha, (const float *)A, lda,
                        (const float *)B, ldb, &beta, C, ldc);
        break;
    }
    sw__cuda_blas_ok(s, what);
}

/* The operand as the GEMM reads it: itself, or its bf16 copy in bf16 mode. */
static const void *
operand(enum sw__cuda_slot slot, const float *x, size_t n)
{
    return sw__cuda_math == SW_MATH_BF16 ? (const void *)to_bf16(slot, x, n) : (const void *)x;
}

void
sw__cuda_matmul_forward(float *out, const float *inp, const float *weight, int N, int C, int OC)
{
    const void *w, *x;

    if (N <= 0 || OC <= 0)
        return;
    if (!(w = operand(SW_CUDA_SCRATCH_A, weight, (size_t)OC * C)) ||
        !(x = operand(SW_CUDA_SCRATCH_B, inp, (size_t)N * C)))
        return;
    /* out^T (OC x N) = W (C x OC)^T @ inp^T (C x N) */
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, w, C, x, C, 0.0f, out, OC, "cublas matmul_forward");
}

void
sw__cuda_matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                         const float *weight, int N, int C, int OC)
{
    const void *w, *x, *dy;

    if (N <= 0 || OC <= 0 || C <= 0)
        return;
    if (!(dy = operand(SW_CUDA_SCRATCH_B, dout, (size_t)N * OC)))
        return;
    if (dinp) {
        if (!(w = operand(SW_CUDA_SCRATCH_A, weight, (size_t)OC * C)))
            return;
        /* dinp^T (C x N) = W^T (C x OC) @ dout^T (OC x N) */
        gemm(CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, w, C, dy, OC, 0.0f, dinp, C,
             "cublas matmul_backward (dinp)");
    }
    if (!(x = operand(SW_CUDA_SCRATCH_C, inp, (size_t)N * C)))
        return;
    /* dweight^T (C x OC) += inp^T (C x N) @ dout (N x OC) */
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, x, C, dy, OC, 1.0f, dweight, C,
         "cublas matmul_backward (dweight)");
}
