/*
 * rmsnorm.cu - RMSNorm forward and backward (one warp per row).
 *
 * dweight is a sum over all N rows: each block sums a chunk of RMS_CHUNK rows
 * for 256 channels into a partial row, and a second kernel adds the partials
 * in chunk order.  No atomics, so the result is the same on every run.
 */
#include "backend.h"

#define RMS_ROWS_PER_BLOCK 8 /* warps per block of the row kernels */
#define RMS_CHUNK 64         /* rows per partial sum of dweight */

__global__ static void
rmsnorm_forward_kernel(float *out, float *rstd, const float *inp, const float *weight, int N,
                       int C, float eps)
{
    int lane = threadIdx.x % 32;
    int row = blockIdx.x * RMS_ROWS_PER_BLOCK + threadIdx.x / 32;
    const float *x;
    float *y;
    float ss = 0.0f, r;

    if (row >= N)
        return;
    x = inp + (size_t)row * C;
    y = out + (size_t)row * C;
    for (int c = lane; c < C; c += 32)
        ss += x[c] * x[c];
    ss = sw__warp_sum(ss);
    r = 1.0f / sqrtf(ss / (float)C + eps);
    if (lane == 0 && rstd)
        rstd[row] = r;
    for (int c = lane; c < C; c += 32)
        y[c] = x[c] * r * weight[c];
}

void
sw__cuda_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N,
                         int C, float eps)
{
    if (N <= 0)
        return;
    rmsnorm_forward_kernel<<<(N + RMS_ROWS_PER_BLOCK - 1) / RMS_ROWS_PER_BLOCK,
                             32 * RMS_ROWS_PER_BLOCK>>>(out, rstd, inp, weight, N, C, eps);
    sw__cuda_launched("rmsnorm_forward_kernel");
}

/* dinp[n,i] += r (w_i dy_i - x_i k),  k = r^2 mean_j(dy_j w_j x_j) (the CPU's
 * arithmetic; only the order of the row sum differs) */
__global__ static void
rmsnorm_backward_dinp_kernel(float *dinp, const float *dout, const float *inp,
                             const float *weight, const float *rstd, int N, int C)
{
    int lane = threadIdx.x % 32;
    int row = blockIdx.x * RMS_ROWS_PER_BLOCK + threadIdx.x / 32;
    const float *x, *dy;
    float *dx;
    float dot = 0.0f, r, k;

    if (row >= N)
        return;
    x = inp + (size_t)row * C;
    dy = dout + (size_t)row * C;
    dx = dinp + (size_t)row * C;
    r = rstd[row];
    for (int c = lane; c < C; c += 32)
        dot += dy[c] * weight[c] * x[c];
    k = r * r * sw__warp_sum(dot) / (float)C;
    for (int c = lane; c < C; c += 32)
        dx[c] += r * (weight[c] * dy[c] - x[c] * k);
}

/* grid (channel blocks, row chunks): partial[chunk, c] = sum over the chunk */
__global__ static void
rmsnorm_backward_dweight_kernel(float *partial, const float *dout, const float *inp,
                                const float *rstd, int N, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int n0 = blockIdx.y * RMS_CHUNK, n1 = min(n0 + RMS_CHUNK, N);
    float acc = 0.0f;

    if (c >= C)
        return;
    for (int n = n0; n < n1; n++)
        acc += dout[(size_t)n * C + c] * inp[(size_t)n * C + c] * rstd[n];
    partial[(size_t)blockIdx.y * C + c] = acc;
}

__global__ static void
rmsnorm_backward_dweight_sum_kernel(float *dweight, const float *partial, int nchunks, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    float acc = 0.0f;

    if (c >= C)
        return;
    for (int k = 0; k < nchunks; k++)
        acc += partial[(size_t)k * C + c];
    dweight[c] += acc;
}

void
sw__cuda_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, const float *rstd, int N, int C)
{
    int nchunks = (N + RMS_CHUNK - 1) / RMS_CHUNK;
    unsigned cblocks = (unsigned)((C + SW_CUDA_BLOCK - 1) / SW_CUDA_BLOCK);
    float *partial;

    if (N <= 0 || C <= 0)
        return;
    rmsnorm_backward_dinp_kernel<<<(N + RMS_ROWS_PER_BLOCK - 1) / RMS_ROWS_PER_BLOCK,
                                   32 * RMS_ROWS_PER_BLOCK>>>(dinp, dout, inp, weight, rstd, N,
                                                              C);
    if (!sw__cuda_launched("rmsnorm_backward_dinp_kernel"))
        return;
    partial = (float *)sw__cuda_scratch(SW_CUDA_SCRATCH_REDUCE,
                                        (size_t)nchunks * C * sizeof(float), "rmsnorm_backward");
    if (!partial)
        return;
    rmsnorm_backward_dweight_kernel<<<dim3(cblocks, (unsigned)nchunks), SW_CUDA_BLOCK>>>(
        partial, dout, inp, rstd, N, C);
    if (!sw__cuda_launched("rmsnorm_backward_dweight_kernel"))
        return;
    rmsnorm_backward_dweight_sum_kernel<<<cblocks, SW_CUDA_BLOCK>>>(dweight, partial, nchunks, C);
    sw__cuda_launched("rmsnorm_backward_dweight_sum_kernel");
}
