/*
 * swiglu.c - LLaMA's gated MLP activation over the packed gu[N, 2F] rows
 * (F gate values, then F up values):
 *   out = silu(g) * u,  silu(g) = g sigmoid(g)
 *   dg = dout u sigmoid(g) (1 + g (1 - sigmoid(g))),  du = dout silu(g)
 * exp is sw__cpu_expf (vectorizable), so forward and backward agree.
 */
#include "sw.h"

#include "cpu.h"

void
sw__cpu_swiglu_forward(float *out, const float *gu, int N, int F)
{
#pragma omp parallel for schedule(static) if (SW_CPU_PAR((size_t)N * F))
    for (int n = 0; n < N; n++) {
        const float *g = gu + (size_t)n * 2 * F, *u = g + F;
        float *o = out + (size_t)n * F;

#pragma omp simd
        for (int i = 0; i < F; i++)
            o[i] = g[i] / (1.0f + sw__cpu_expf(-g[i])) * u[i];
    }
}

void
sw__cpu_swiglu_backward(float *dgu, const float *dout, const float *gu, int N, int F)
{
#pragma omp parallel for schedule(static) if (SW_CPU_PAR((size_t)N * F))
    for (int n = 0; n < N; n++) {
        const float *g = gu + (size_t)n * 2 * F, *u = g + F, *dy = dout + (size_t)n * F;
        float *dg = dgu + (size_t)n * 2 * F, *du = dg + F;

#pragma omp simd
        for (int i = 0; i < F; i++) {
            float sig = 1.0f / (1.0f + sw__cpu_expf(-g[i]));
            float silu = g[i] * sig;

            dg[i] = dy[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
            du[i] = dy[i] * silu;
        }
    }
}
