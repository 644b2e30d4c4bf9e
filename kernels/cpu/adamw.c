/*
 * adamw.c - AdamW with decoupled weight decay, elementwise (kernels.h):
 *   g = grad * grad_scale
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr * (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd * p)
 * The bias corrections are computed once per call in double.
 */
#include "sw.h"

#include <math.h>

#include "cpu.h"

void
sw__cpu_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                     int t)
{
    float c1 = (float)(1.0 / (1.0 - pow((double)beta1, (double)t)));
    float c2 = (float)(1.0 / (1.0 - pow((double)beta2, (double)t)));
    float a1 = 1.0f - beta1, a2 = 1.0f - beta2;

#pragma omp parallel for simd schedule(static) if (SW_CPU_PAR(n))
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + a1 * g;
        float vi = beta2 * v[i] + a2 * g * g;

        m[i] = mi;
        v[i] = vi;
        param[i] -= lr * (mi * c1 / (sqrtf(vi * c2) + eps) + weight_decay * param[i]);
    }
}
