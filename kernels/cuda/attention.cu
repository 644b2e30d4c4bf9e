/*
 * attention.cu - causal softmax attention with grouped KV heads on the packed
 * qkv rows (layout in kernels.h).
 *
 * The products go through cuBLAS, strided-batched over B, one call per query
 * head (query head h reads KV head h / (NH / NKV)); the softmax and its
 * gradient are our kernels, one warp per row of att.  The full T x T scores
 * are computed and the softmax then writes P (zeros above the diagonal), so
 * the P @ V and backward products need no masking.  dK and dV of a KV head
 * sum over its query heads: the first product writes (beta 0), the next ones
 * add (beta 1), in head order, so the result is deterministic.
 *
 * Column-major view: a row-major [T, X] block with row stride L is a
 * column-major X x T matrix with leading dimension L.
 *
 * Math modes: tf32 and bf16 ask cuBLAS for CUBLAS_COMPUTE_32F_FAST_TF32 /
 * _FAST_16BF on the fp32 operands in place (no copies: the operands are
 * strided views of qkv).  "FAST" permits, not forces: cuBLAS keeps fp32
 * kernels for tiny heads, and on an H100 it gave bf16 mode the same results
 * (and speed) as tf32 here.
 */
#include "backend.h"

#define ATT_WARPS 8 /* rows of att per block of the softmax kernels */

/* att rows (b, h, t): P[t2] = softmax over t2 <= t of the scaled scores; 0 above */
__global__ static void
attention_softmax_forward_kernel(float *att, int rows, int T)
{
    int lane = threadIdx.x % 32, r = blockIdx.x * ATT_WARPS + threadIdx.x / 32;
    float *p;
    float mx = -INFINITY, sum = 0.0f, inv;
    int t;

    if (r >= rows)
        return;
    t = r % T;
    p = att + (size_t)r * T;
    for (int j = lane; j <= t; j += 32)
        mx = fmaxf(mx, p[j]);
    mx = sw__warp_max(mx);
    for (int j = lane; j <= t; j += 32)
        sum += expf(p[j] - mx);
    inv = 1.0f / sw__warp_sum(sum);
    for (int j = lane; j < T; j += 32)
        p[j] = j <= t ? expf(p[j] - mx) * inv : 0.0f;
}

/* in place on datt (holding dP): dS = scale * P * (dP - sum(P * dP)); 0 above */
__global__ static void
attention_softmax_backward_kernel(float *datt, const float *att, int rows, int T, float scale)
{
    int lane = threadIdx.x % 32, r = blockIdx.x * ATT_WARPS + threadIdx.x / 32;
    const float *p;
    float *dp;
    float dot = 0.0f;
    int t;

    if (r >= rows)
        return;
    t = r % T;
    p = att + (size_t)r * T;
    dp = datt + (size_t)r * T;
    for (int j = lane; j <= t; j += 32)
        dot += p[j] * dp[j];
    dot = sw__warp_sum(dot);
    for (int j = lane; j < T; j += 32)
        dp[j] = j <= t ? scale * p[j] * (dp[j] - dot) : 0.0f;
}

void
sw__cuda_attention_forward(float *out, float *att, const float *qkv, int B, int T, int NH,
                           int NKV, int HS)
{
    int L = (NH + 2 * NKV) * HS, OL = NH * HS, rep = NH / NKV;
    long long s_qkv = (long long)T * L, s_att = (long long)NH * T * T, s_out = (long long)T * OL;
    float scale = 1.0f / sqrtf((float)HS);
    int rows = B * NH * T;

    if (rows == 0)
        return;
    /* S[t,t2] = scale q_t . k_t2: row-major S is column-major S^T (T x T),
     * S^T = K (T x HS) @ Q^T (HS x T), K read transposed from its HS x T view */
    for (int h = 0; h < NH; h++) {
        const float *q = qkv + (size_t)h * HS, *k = qkv + (size_t)(NH + h / rep) * HS;
        sw__cuda_gemm_strided(CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, scale, k, L, s_qkv, q, L, s_qkv,
                              0.0f, att + (size_t)h * T * T, T, s_att, B,
                              "cublas attention_forward (scores)");
    }
    attention_softmax_forward_kernel<<<(rows + ATT_WARPS - 1) / ATT_WARPS, 32 * ATT_WARPS>>>(
        att, rows, T);
    if (!sw__cuda_launched("attention_softmax_forward_kernel"))
        return;
    /* out[t, h] = sum_t2 P[t,t2] v_t2:  out^T (HS x T) = V^T (HS x T) @ P^T (T x T) */
    for (int h = 0; h < NH; h++) {
        const float *v = qkv + (size_t)(NH + NKV + h / rep) * HS;
        sw__cuda_gemm_strided(CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.0f, v, L, s_qkv,
                              att + (size_t)h * T * T, T, s_att, 0.0f, out + (size_t)h * HS, OL,
                              s_out, B, "cublas attention_forward (values)");
    }
}

void
sw__cuda_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                            const float *att, int B, int T, int NH, int NKV, int HS)
{
    int L = (NH + 2 * NKV) * HS, OL = NH * HS, rep = NH / NKV;
    long long s_qkv = (long long)T * L, s_att = (long long)NH * T * T, s_out = (long long)T * OL;
    float scale = 1.0f / sqrtf((float)HS);
    int rows = B * NH * T;

    if (rows == 0)
        return;
    /* dP[t,t2] = dout_t . v_t2 (same shape as the scores) */
    for (int h = 0; h < NH; h++) {
        const float *v = qkv + (size_t)(NH + NKV + h / rep) * HS;
        sw__cuda_gemm_strided(CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, 1.0f, v, L, s_qkv,
                              dout + (size_t)h * HS, OL, s_out, 0.0f, datt + (size_t)h * T * T, T,
                              s_att, B, "cublas attention_backward (dP)");
    }
    attention_softmax_backward_kernel<<<(rows + ATT_WARPS - 1) / ATT_WARPS, 32 * ATT_WARPS>>>(
        datt, att, rows, T, scale);
    if (!sw__cuda_launched("attention_softmax_backward_kernel"))
        return;
    for (int h = 0; h < NH; h++) {
        int g = h / rep;
        float beta = h % rep == 0 ? 0.0f : 1.0f;
        const float *q = qkv + (size_t)h * HS, *k = qkv + (size_t)(NH + g) * HS;
        const float *ds = datt + (size_t)h * T * T, *p = att + (size_t)h * T * T;

        /* dq_t = sum_t2 dS[t,t2] k_t2:  dQ^T (HS x T) = K^T (HS x T) @ dS^T */
        sw__cuda_gemm_strided(CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.0f, k, L, s_qkv, ds, T, s_att,
                              0.0f, dqkv + (size_t)h * HS, L, s_qkv, B,
                              "cublas attention_backward (dq)");
        /* dk_t2 += sum_t dS[t,t2] q_t:  dK^T (HS x T) = Q^T (HS x T) @ dS */
        sw__cuda_gemm_strided(CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.0f, q, L, s_qkv, ds, T, s_att,
                              beta, dqkv + (size_t)(NH + g) * HS, L, s_qkv, B,
                              "cublas attention_backward (dk)");
        /* dv_t2 += sum_t P[t,t2] dout_t:  dV^T (HS x T) = dout^T (HS x T) @ P */
        sw__cuda_gemm_strided(CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.0f, dout + (size_t)h * HS, OL,
                              s_out, p, T, s_att, beta, dqkv + (size_t)(NH + NKV + g) * HS, L,
                              s_qkv, B, "cublas attention_backward (dv)");
    }
}
