/*
 * crossentropy.c - softmax + cross-entropy over V classes, fused and stable:
 *   probs[n,:] = exp(logits - max) / sum exp(logits - max)
 *   losses[n]  = log(sum exp(logits - max)) + max - logits[n, target]
 * (computed from the log-sum-exp, not as -log(prob), so that a tiny
 * probability gives a large finite loss instead of inf).  The sum is in
 * double.  Backward: dlogits = dloss * (probs - onehot(target)), written.
 */
#include "sw.h"

#include <math.h>

#include "cpu.h"

void
sw__cpu_crossentropy_forward(float *losses, float *probs, const float *logits,
                             const int32_t *targets, int N, int V)
{
#pragma omp parallel for schedule(static) if (SW_CPU_PAR((size_t)N * V))
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * V;
        float *p = probs + (size_t)n * V;
        float mx = -INFINITY, inv;
        double sum = 0.0;

        for (int i = 0; i < V; i++)
            mx = x[i] > mx ? x[i] : mx;
        for (int i = 0; i < V; i++) {
            p[i] = expf(x[i] - mx);
            sum += p[i];
        }
        inv = (float)(1.0 / sum);
#pragma omp simd
        for (int i = 0; i < V; i++)
            p[i] *= inv;
        losses[n] = (float)(log(sum) + (double)mx - (double)x[targets[n]]);
    }
}

void
sw__cpu_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets,
                              float dloss, int N, int V)
{
#pragma omp parallel for schedule(static) if (SW_CPU_PAR((size_t)N * V))
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;

#pragma omp simd
        for (int i = 0; i < V; i++)
            d[i] = dloss * p[i];
        d[targets[n]] -= dloss;
    }
}
