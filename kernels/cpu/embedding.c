/*
 * embedding.c - token embedding lookup and its scatter-add backward.
 *
 * The backward runs in parallel over channel blocks, each thread walking all
 * N tokens in order for its own channels: no two threads ever touch the same
 * dwte element and every element sums in token order, so the result does
 * not depend on the thread count (repeated tokens are the common case).
 */
#include "sw.h"

#include <string.h>

#include "cpu.h"

void
sw__cpu_embedding_forward(float *out, const int32_t *inp, const float *wte, int N, int C)
{
#pragma omp parallel for schedule(static) if (SW_CPU_PAR((size_t)N * C))
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, wte + (size_t)inp[n] * C, (size_t)C * sizeof(float));
}

void
sw__cpu_embedding_backward(float *dwte, const float *dout, const int32_t *inp, int N, int C)
{
    enum { CB = 64 }; /* channels per block: a few cache lines per row */
    int nblocks = (C + CB - 1) / CB;

#pragma omp parallel for schedule(static) if (SW_CPU_PAR((size_t)N * C))
    for (int blk = 0; blk < nblocks; blk++) {
        int c0 = blk * CB, c1 = SW_MIN(C, c0 + CB);

        for (int n = 0; n < N; n++) {
            float *dst = dwte + (size_t)inp[n] * C;
            const float *src = dout + (size_t)n * C;
#pragma omp simd
            for (int c = c0; c < c1; c++)
                dst[c] += src[c];
        }
    }
}
