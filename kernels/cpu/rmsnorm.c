/*
 * rmsnorm.c - RMSNorm (LLaMA's, no mean subtraction, no bias).
 *
 *   rstd[n] = 1 / sqrt(mean_c(inp[n,c]^2) + eps)
 *   out[n,c] = inp[n,c] * rstd[n] * weight[c]
 *
 * Backward (dinp ACCUMULATES, see kernels.h), with r = rstd[n]:
 *   dinp[n,c]  += r * (weight[c] dout[n,c] - inp[n,c] r^2 mean_j(dout w x)[n])
 *   dweight[c] += sum_n dout[n,c] inp[n,c] r[n]
 * The dinp part runs over rows, the dweight part over channel blocks (each
 * channel summed in row order by one thread: deterministic and free of
 * races).  Sums of squares use float lanes in a fixed order.
 */
#include "sw.h"

#include <math.h>

#include "cpu.h"

void
sw__cpu_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N,
                        int C, float eps)
{
#pragma omp parallel for schedule(static) if (SW_CPU_PAR((size_t)N * C))
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float *y = out + (size_t)n * C;
        float ss = 0.0f, r;

#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++)
            ss += x[c] * x[c];
        r = 1.0f / sqrtf(ss / (float)C + eps);
        rstd[n] = r;
#pragma omp simd
        for (int c = 0; c < C; c++)
            y[c] = x[c] * r * weight[c];
    }
}

void
sw__cpu_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                         const float *weight, const float *rstd, int N, int C)
{
    enum { CB = 64 };
    int nblocks = (C + CB - 1) / CB;

#pragma omp parallel if (SW_CPU_PAR((size_t)N * C))
    {
#pragma omp for schedule(static) nowait
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
            float *dx = dinp + (size_t)n * C;
            float r = rstd[n], dot = 0.0f, k;

#pragma omp simd reduction(+ : dot)
            for (int c = 0; c < C; c++)
                dot += dy[c] * weight[c] * x[c];
            k = r * r * dot / (float)C;
#pragma omp simd
            for (int c = 0; c < C; c++)
                dx[c] += r * (weight[c] * dy[c] - x[c] * k);
        }
#pragma omp for schedule(static)
        for (int blk = 0; blk < nblocks; blk++) {
            int c0 = blk * CB, c1 = SW_MIN(C, c0 + CB);

            for (int n = 0; n < N; n++) {
                const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
                float r = rstd[n];

#pragma omp simd
                for (int c = c0; c < c1; c++)
                    dweight[c] += dy[c] * x[c] * r;
            }
        }
    }
}
