/*
 * weighted_average.cu - CheckFree's blend of the two neighbours' weights:
 *   out = (wa a + wb b) / (wa + wb), evaluated in double and rounded once,
 * as on the CPU.  out may alias a or b: each element is read before it is
 * written, by the same thread.
 */
#include "backend.h"

__global__ static void
weighted_average_kernel(float *out, const float *a, double wa, const float *b, double wb,
                        double s, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = (float)((wa * a[i] + wb * b[i]) / s);
}

void
sw__cuda_weighted_average(float *out, const float *a, float wa, const float *b, float wb,
                          size_t n)
{
    if (n == 0)
        return;
    weighted_average_kernel<<<sw__cuda_blocks(n, SW_CUDA_BLOCK), SW_CUDA_BLOCK>>>(
        out, a, (double)wa, b, (double)wb, (double)wa + (double)wb, n);
    sw__cuda_launched("weighted_average_kernel");
}
