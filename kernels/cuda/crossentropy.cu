/*
 * crossentropy.cu - softmax + cross-entropy over V classes, one block per
 * row, as the CPU computes it:
 *   probs[n,:] = exp(logits - max) / sum exp(logits - max)   (sum in double)
 *   losses[n]  = log(sum) + max - logits[n, target]
 * Backward: dlogits = dloss * (probs - onehot(target)), written.
 */
#include "backend.h"

#define CE_THREADS 256

__global__ static void
crossentropy_forward_kernel(float *losses, float *probs, const float *logits,
                            const int32_t *targets, int V)
{
    __shared__ float sh[32];
    __shared__ double shd[32];
    int n = blockIdx.x;
    const float *x = logits + (size_t)n * V;
    float *p = probs + (size_t)n * V;
    float mx = -INFINITY, inv;
    double sum = 0.0;

    for (int i = threadIdx.x; i < V; i += blockDim.x)
        mx = fmaxf(mx, x[i]);
    mx = sw__block_max(mx, sh);
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        sum += (double)expf(x[i] - mx);
    sum = sw__block_sum_d(sum, shd);
    inv = (float)(1.0 / sum);
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        p[i] = expf(x[i] - mx) * inv;
    if (threadIdx.x == 0)
        losses[n] = (float)(log(sum) + (double)mx - (double)x[targets[n]]);
}

void
sw__cuda_crossentropy_forward(float *losses, float *probs, const float *logits,
                              const int32_t *targets, int N, int V)
{
    if (N <= 0)
        return;
    crossentropy_forward_kernel<<<N, CE_THREADS>>>(losses, probs, logits, targets, V);
    sw__cuda_launched("crossentropy_forward_kernel");
}

__global__ static void
crossentropy_backward_kernel(float *dlogits, const float *probs, const int32_t *targets,
                             float dloss, int N, int V)
{
    size_t total = (size_t)N * V;

    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / V;
        float d = dloss * probs[i];

        if ((size_t)targets[n] == i % V)
            d -= dloss;
        dlogits[i] = d;
    }
}

void
sw__cuda_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets,
                               float dloss, int N, int V)
{
    size_t total = (size_t)N * V;

    if (total == 0)
        return;
    crossentropy_backward_kernel<<<sw__cuda_blocks(total, SW_CUDA_BLOCK), SW_CUDA_BLOCK>>>(
        dlogits, probs, targets, dloss, N, V);
    sw__cuda_launched("crossentropy_backward_kernel");
}
