/*
 * sumsq.cu - sum of squares in double (the gradient norm for clipping and
 * for CheckFree's weights), returned to the host.
 *
 * A fixed grid of SUMSQ_BLOCKS blocks walks x with a grid stride; each block
 * reduces its threads' double sums in a fixed tree into one partial, and one
 * block adds the partials the same way.  The order depends on n alone, so
 * the result is the same on every run (it differs from the CPU's order in
 * the last bits only).
 */
#include "backend.h"

#include <math.h>

#define SUMSQ_BLOCKS 512
#define SUMSQ_THREADS 256

__device__ static double
sumsq_block_reduce(double x, double *shared)
{
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

    x = sw__warp_sum_d(x);
    if (lane == 0)
        shared[warp] = x;
    __syncthreads();
    x = lane < SUMSQ_THREADS / 32 ? shared[lane] : 0.0;
    return sw__warp_sum_d(x);
}

__global__ static void
sumsq_kernel(double *partial, const float *x, size_t n)
{
    __shared__ double sh[32];
    double acc = 0.0;

    for (size_t i = blockIdx.x * (size_t)SUMSQ_THREADS + threadIdx.x; i < n;
         i += (size_t)SUMSQ_BLOCKS * SUMSQ_THREADS)
        acc += (double)x[i] * (double)x[i];
    acc = sumsq_block_reduce(acc, sh);
    if (threadIdx.x == 0)
        partial[blockIdx.x] = acc;
}

__global__ static void
sumsq_final_kernel(double *result, const double *partial)
{
    __shared__ double sh[32];
    double acc = 0.0;

    for (int i = threadIdx.x; i < SUMSQ_BLOCKS; i += SUMSQ_THREADS)
        acc += partial[i];
    acc = sumsq_block_reduce(acc, sh);
    if (threadIdx.x == 0)
        *result = acc;
}

double
sw__cuda_sumsq(const float *x, size_t n)
{
    double *partial, s = 0.0;

    if (n == 0)
        return 0.0;
    partial = (double *)sw__cuda_scratch(SW_CUDA_SCRATCH_REDUCE,
                                         (SUMSQ_BLOCKS + 1) * sizeof(double), "sumsq");
    if (!partial)
        return NAN;
    sumsq_kernel<<<SUMSQ_BLOCKS, SUMSQ_THREADS>>>(partial, x, n);
    if (!sw__cuda_launched("sumsq_kernel"))
        return NAN;
    sumsq_final_kernel<<<1, SUMSQ_THREADS>>>(partial + SUMSQ_BLOCKS, partial);
    if (!sw__cuda_launched("sumsq_final_kernel"))
        return NAN;
    if (!sw__cuda_ok(cudaMemcpy(&s, partial + SUMSQ_BLOCKS, sizeof(s), cudaMemcpyDeviceToHost),
                     "cudaMemcpy (sumsq result)"))
        return NAN;
    return s;
}
