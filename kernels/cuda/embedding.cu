/*
 * embedding.cu - token embedding lookup and its gradient.
 *
 * The backward is deterministic without float atomics: the token ids are
 * sorted (cub's stable radix sort, positions as values), then one block per
 * run of equal tokens adds the rows of dout, in increasing position order,
 * to that token's row of dwte.  Every row of dwte has one writer, and the
 * additions happen in the CPU backend's order, so the two agree bit for bit.
 */
#include "backend.h"

#include <cub/device/device_radix_sort.cuh>

#define EMB_THREADS 128

__global__ static void
embedding_forward_kernel(float *out, const int32_t *inp, const float *wte, int N, int C)
{
    size_t total = (size_t)N * C;

    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t n = i / C, c = i % C;
        out[i] = wte[(size_t)inp[n] * C + c];
    }
}

void
sw__cuda_embedding_forward(float *out, const int32_t *inp, const float *wte, int N, int C)
{
    size_t total = (size_t)N * C;

    if (total == 0)
        return;
    embedding_forward_kernel<<<sw__cuda_blocks(total, SW_CUDA_BLOCK), SW_CUDA_BLOCK>>>(out, inp,
                                                                                      wte, N, C);
    sw__cuda_launched("embedding_forward_kernel");
}

__global__ static void
embedding_iota_kernel(int32_t *idx, int N)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;

    if (i < N)
        idx[i] = i;
}

/* grid (N, channel blocks): block x = one position of the sorted tokens; only
 * the first position of each run of equal tokens works */
__global__ static void
embedding_backward_kernel(float *dwte, const float *dout, const int32_t *tok_sorted,
                          const int32_t *pos_sorted, int N, int C)
{
    int i = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    int32_t tok = tok_sorted[i];
    float acc;

    if (c >= C || (i > 0 && tok_sorted[i - 1] == tok))
        return;
    acc = dwte[(size_t)tok * C + c];
    for (int j = i; j < N && tok_sorted[j] == tok; j++)
        acc += dout[(size_t)pos_sorted[j] * C + c];
    dwte[(size_t)tok * C + c] = acc;
}

void
sw__cuda_embedding_backward(float *dwte, const float *dout, const int32_t *inp, int N, int C)
{
    size_t tmp_bytes = 0, off_pos, off_tok, off_tmp;
    int32_t *idx, *tok_sorted, *pos_sorted;
    char *buf;
    dim3 grid;

    if (N <= 0 || C <= 0)
        return;
    if (!sw__cuda_ok(cub::DeviceRadixSort::SortPairs(NULL, tmp_bytes, (const uint32_t *)inp,
                                                      (uint32_t *)NULL, (const int32_t *)NULL,
                                                      (int32_t *)NULL, N),
                     "cub::DeviceRadixSort::SortPairs (size)"))
        return;
    /* one scratch buffer: [iota | sorted tokens | sorted positions | cub's temp] */
    off_tok = ((size_t)N * 4 + 255) & ~(size_t)255;
    off_pos = off_tok * 2;
    off_tmp = off_tok * 3;
    buf = (char *)sw__cuda_scratch(SW_CUDA_SCRATCH_A, off_tmp + tmp_bytes, "embedding_backward");
    if (!buf)
        return;
    idx = (int32_t *)buf;
    tok_sorted = (int32_t *)(buf + off_tok);
    pos_sorted = (int32_t *)(buf + off_pos);

    embedding_iota_kernel<<<(N + 255) / 256, 256>>>(idx, N);
    if (!sw__cuda_launched("embedding_iota_kernel"))
        return;
    if (!sw__cuda_ok(cub::DeviceRadixSort::SortPairs(buf + off_tmp, tmp_bytes,
                                                      (const uint32_t *)inp,
                                                      (uint32_t *)tok_sorted, idx, pos_sorted, N),
                     "cub::DeviceRadixSort::SortPairs"))
        return;
    sw__cuda_launched("cub::DeviceRadixSort::SortPairs");
    grid = dim3((unsigned)N, (unsigned)((C + EMB_THREADS - 1) / EMB_THREADS));
    embedding_backward_kernel<<<grid, EMB_THREADS>>>(dwte, dout, tok_sorted, pos_sorted, N, C);
    sw__cuda_launched("embedding_backward_kernel");
}
