/*
 * matmul.c - out = inp @ weight^T (weights stored [out, in], as in Hugging
 * Face) and its backward, all through OpenBLAS sgemm.
 *
 * sw__cpu_sgemm cuts one GEMM into slices along the larger output dimension,
 * one per OpenMP thread, each a single-threaded sgemm over the full K: every
 * output element is computed by one call, so the result depends only on the
 * thread count.  Slice boundaries are kept at multiples of 16 so that the
 * BLAS micro-kernels see whole tiles.
 */
#include "sw.h"

#include <cblas.h>
#include <omp.h>

#include "cpu.h"

static void
sgemm1(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
       const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

void
sw__cpu_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    int nt;

    sw__cpu_init();
    nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    /* below ~1 MFLOP per thread the fork costs more than it saves */
    if (nt > 1 && (double)M * N * K < 5e5 * nt)
        nt = 1;
    if (nt <= 1) {
        sgemm1(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int lo, hi;
        int parts = omp_get_num_threads(), me = omp_get_thread_num();

        if (M >= N) {
            /* rows of C: rows of op(A) */
            sw__cpu_range(M, parts, me, 16, &lo, &hi);
            sgemm1(trans_a, trans_b, hi - lo, N, K, alpha,
                   trans_a ? A + lo : A + (size_t)lo * lda, lda, B, ldb, beta,
                   C + (size_t)lo * ldc, ldc);
        } else {
            /* columns of C: columns of op(B) */
            sw__cpu_range(N, parts, me, 16, &lo, &hi);
            sgemm1(trans_a, trans_b, M, hi - lo, K, alpha, A, lda,
                   trans_b ? B + (size_t)lo * ldb : B + lo, ldb, beta, C + lo, ldc);
        }
    }
}

void
sw__cpu_matmul_forward(float *out, const float *inp, const float *weight, int N, int C, int OC)
{
    /* out[N,OC] = inp[N,C] @ weight[OC,C]^T */
    sw__cpu_sgemm(0, 1, N, OC, C, 1.0f, inp, C, weight, C, 0.0f, out, OC);
}

void
sw__cpu_matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                        const float *weight, int N, int C, int OC)
{
    /* dinp[N,C] = dout[N,OC] @ weight[OC,C] */
    if (dinp)
        sw__cpu_sgemm(0, 0, N, C, OC, 1.0f, dout, OC, weight, C, 0.0f, dinp, C);
    /* dweight[OC,C] += dout^T @ inp */
    sw__cpu_sgemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
}
