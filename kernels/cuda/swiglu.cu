/*
 * swiglu.cu - LLaMA's gated MLP activation over the packed gu[N, 2F] rows
 * (F gate values, then F up values), elementwise:
 *   out = silu(g) * u,  silu(g) = g sigmoid(g)
 *   dg = dout u sigmoid(g) (1 + g (1 - sigmoid(g))),  du = dout silu(g)
 */
#include "backend.h"

__global__ static void
swiglu_forward_kernel(float *out, const float *gu, int N, int F)
{
    size_t total = (size_t)N * F;

    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / F, f = i % F;
        float g = gu[n * 2 * F + f], u = gu[n * 2 * F + F + f];

        out[i] = g / (1.0f + expf(-g)) * u;
    }
}

void
sw__cuda_swiglu_forward(float *out, const float *gu, int N, int F)
{
    size_t total = (size_t)N * F;

    if (total == 0)
        return;
    swiglu_forward_kernel<<<sw__cuda_blocks(total, SW_CUDA_BLOCK), SW_CUDA_BLOCK>>>(out, gu, N, F);
    sw__cuda_launched("swiglu_forward_kernel");
}

__global__ static void
swiglu_backward_kernel(float *dgu, const float *dout, const float *gu, int N, int F)
{
    size_t total = (size_t)N * F;

    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / F, f = i % F, gi = n * 2 * F + f;
        float g = gu[gi], u = gu[gi + F], dy = dout[i];
        float sig = 1.0f / (1.0f + expf(-g));

        dgu[gi] = dy * u * sig * (1.0f + g * (1.0f - sig));
        dgu[gi + F] = dy * (g * sig);
    }
}

void
sw__cuda_swiglu_backward(float *dgu, const float *dout, const float *gu, int N, int F)
{
    size_t total = (size_t)N * F;

    if (total == 0)
        return;
    swiglu_backward_kernel<<<sw__cuda_blocks(total, SW_CUDA_BLOCK), SW_CUDA_BLOCK>>>(dgu, dout,
                                                                                    gu, N, F);
    sw__cuda_launched("swiglu_backward_kernel");
}
