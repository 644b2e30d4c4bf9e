/*
 * attention.c - causal multi-head attention with grouped KV heads over the
 * packed qkv layout (kernels.h), scale 1/sqrt(HS).
 *
 * Per (b, head) the scores, softmax and P @ V are done in blocks of RB query
 * rows: block [r0, r1) only needs keys [0, r1), so the GEMMs skip most of the
 * masked upper triangle.  Every GEMM is a single-threaded OpenBLAS call made
 * inside an OpenMP loop over heads (the one level of parallelism here).
 *
 * Forward, for query head h and its KV head kv = h / (NH / NKV):
 *   att[b,h,t,:] = softmax_{j<=t}(q_t . k_j / sqrt(HS)), 0 above the diagonal
 *   out[b,t,h,:] = sum_j att[b,h,t,j] v_j
 * Backward, with datt as scratch for dP and then dS:
 *   dP = dout_h V^T;  dV += P^T dout_h;  dS = P * (dP - rowsum(P * dP))
 *   dQ_h = scale dS K;  dK += scale dS^T Q_h
 * The loop runs over (b, kv): each KV head's dK and dV are zeroed, then
 * accumulate the query heads of its group in order, so no two threads share
 * an output and the sum order is fixed.
 */
#include "sw.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "cpu.h"

enum { RB = 64 }; /* query rows per block */

static void
gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
     const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

/* softmax over p[0..len-1] in place; p[len..T-1] = 0 */
static void
softmax_causal_row(float *p, int len, int T)
{
    float mx = -INFINITY, sum = 0.0f, inv;

#pragma omp simd reduction(max : mx)
    for (int j = 0; j < len; j++)
        mx = p[j] > mx ? p[j] : mx;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < len; j++) {
        float e = sw__cpu_expf(p[j] - mx);

        p[j] = e;
        sum += e;
    }
    inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < len; j++)
        p[j] *= inv;
    for (int j = len; j < T; j++)
        p[j] = 0.0f;
}

void
sw__cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int NH, int NKV,
                          int HS)
{
    int QKV = (NH + 2 * NKV) * HS, OUT = NH * HS, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)HS);

    sw__cpu_init();
#pragma omp parallel for schedule(static) if (SW_CPU_PAR((size_t)B * NH * T * T * HS))
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH, kv = h / group;
        const float *base = qkv + (size_t)b * T * QKV;
        const float *q = base + (size_t)h * HS;
        const float *k = base + (size_t)(NH + kv) * HS;
        const float *v = base + (size_t)(NH + NKV + kv) * HS;
        float *p = att + (size_t)bh * T * T;
        float *o = out + (size_t)b * T * OUT + (size_t)h * HS;

        for (int r0 = 0; r0 < T; r0 += RB) {
            int r1 = SW_MIN(T, r0 + RB), m = r1 - r0;

            /* S[r0:r1, 0:r1] = scale Q[r0:r1] K[0:r1]^T */
            gemm(0, 1, m, r1, HS, scale, q + (size_t)r0 * QKV, QKV, k, QKV, 0.0f,
                 p + (size_t)r0 * T, T);
            for (int t = r0; t < r1; t++)
                softmax_causal_row(p + (size_t)t * T, t + 1, T);
            /* O[r0:r1] = P[r0:r1, 0:r1] V[0:r1] */
            gemm(0, 0, m, HS, r1, 1.0f, p + (size_t)r0 * T, T, v, QKV, 0.0f,
                 o + (size_t)r0 * OUT, OUT);
        }
    }
}

void
sw__cpu_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                           const float *att, int B, int T, int NH, int NKV, int HS)
{
    int QKV = (NH + 2 * NKV) * HS, OUT = NH * HS, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)HS);

    sw__cpu_init();
#pragma omp parallel for schedule(static) if (SW_CPU_PAR((size_t)B * NH * T * T * HS))
    for (int bk = 0; bk < B * NKV; bk++) {
        int b = bk / NKV, kv = bk % NKV;
        const float *base = qkv + (size_t)b * T * QKV;
        const float *k = base + (size_t)(NH + kv) * HS;
        const float *v = base + (size_t)(NH + NKV + kv) * HS;
        float *dbase = dqkv + (size_t)b * T * QKV;
        float *dk = dbase + (size_t)(NH + kv) * HS;
        float *dv = dbase + (size_t)(NH + NKV + kv) * HS;

        for (int t = 0; t < T; t++) {
            memset(dk + (size_t)t * QKV, 0, (size_t)HS * sizeof(float));
            memset(dv + (size_t)t * QKV, 0, (size_t)HS * sizeof(float));
        }
        for (int h = kv * group; h < (kv + 1) * group; h++) {
            const float *q = base + (size_t)h * HS;
            const float *p = att + ((size_t)b * NH + h) * T * T;
            const float *dO = dout + (size_t)b * T * OUT + (size_t)h * HS;
            float *dp = datt + ((size_t)b * NH + h) * T * T;
            float *dq = dbase + (size_t)h * HS;

            for (int r0 = 0; r0 < T; r0 += RB) {
                int r1 = SW_MIN(T, r0 + RB), m = r1 - r0;
                const float *pb = p + (size_t)r0 * T, *dOb = dO + (size_t)r0 * OUT;
                float *dpb = dp + (size_t)r0 * T;

                /* dP[r0:r1, 0:r1] = dO[r0:r1] V[0:r1]^T */
                gemm(0, 1, m, r1, HS, 1.0f, dOb, OUT, v, QKV, 0.0f, dpb, T);
                /* dV[0:r1] += P[r0:r1, 0:r1]^T dO[r0:r1] */
                gemm(1, 0, r1, HS, m, 1.0f, pb, T, dOb, OUT, 1.0f, dv, QKV);
                /* dS = P (dP - sum_j P dP), zero above the diagonal */
                for (int t = r0; t < r1; t++) {
                    const float *pt = p + (size_t)t * T;
                    float *dpt = dp + (size_t)t * T;
                    float dot = 0.0f;

#pragma omp simd reduction(+ : dot)
                    for (int j = 0; j <= t; j++)
                        dot += pt[j] * dpt[j];
#pragma omp simd
                    for (int j = 0; j <= t; j++)
                        dpt[j] = pt[j] * (dpt[j] - dot);
                    for (int j = t + 1; j < r1; j++)
                        dpt[j] = 0.0f;
                }
                /* dQ[r0:r1] = scale dS[r0:r1, 0:r1] K[0:r1] */
                gemm(0, 0, m, HS, r1, scale, dpb, T, k, QKV, 0.0f, dq + (size_t)r0 * QKV, QKV);
                /* dK[0:r1] += scale dS[r0:r1, 0:r1]^T Q[r0:r1] */
                gemm(1, 0, r1, HS, m, scale, dpb, T, q + (size_t)r0 * QKV, QKV, 1.0f, dk, QKV);
            }
        }
    }
}
