/*
 * residual.cu - the residual add and its backward, elementwise.  out may
 * alias inp1 or inp2, and dinp1 may alias dinp2 (each thread reads before it
 * writes, and adds to both in turn).
 */
#include "backend.h"

__global__ static void
residual_forward_kernel(float *out, const float *inp1, const float *inp2, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = inp1[i] + inp2[i];
}

void
sw__cuda_residual_forward(float *out, const float *inp1, const float *inp2, size_t n)
{
    if (n == 0)
        return;
    residual_forward_kernel<<<sw__cuda_blocks(n, SW_CUDA_BLOCK), SW_CUDA_BLOCK>>>(out, inp1, inp2,
                                                                                 n);
    sw__cuda_launched("residual_forward_kernel");
}

__global__ static void
residual_backward_kernel(float *dinp1, float *dinp2, const float *dout, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float d = dout[i];

        dinp1[i] += d;
        dinp2[i] += d;
    }
}

void
sw__cuda_residual_backward(float *dinp1, float *dinp2, const float *dout, size_t n)
{
    if (n == 0)
        return;
    residual_backward_kernel<<<sw__cuda_blocks(n, SW_CUDA_BLOCK), SW_CUDA_BLOCK>>>(dinp1, dinp2,
                                                                                  dout, n);
    sw__cuda_launched("residual_backward_kernel");
}
