/*
 * residual.c - the residual add and its backward.  out may alias inp1 or
 * inp2 (kernels.h); the backward accumulates into both inputs' gradients.
 */
#include "sw.h"

#include "cpu.h"

void
sw__cpu_residual_forward(float *out, const float *inp1, const float *inp2, size_t n)
{
#pragma omp parallel for simd schedule(static) if (SW_CPU_PAR(n))
    for (size_t i = 0; i < n; i++)
        out[i] = inp1[i] + inp2[i];
}

void
sw__cpu_residual_backward(float *dinp1, float *dinp2, const float *dout, size_t n)
{
#pragma omp parallel for simd schedule(static) if (SW_CPU_PAR(n))
    for (size_t i = 0; i < n; i++) {
        float d = dout[i];

        dinp1[i] += d;
        dinp2[i] += d;
    }
}
