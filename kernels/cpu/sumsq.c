/*
 * sumsq.c - sum of squares in double (the gradient norm for clipping and
 * for CheckFree's weights).
 *
 * The input is cut into chunks whose size depends on n alone; chunks are
 * summed in parallel (8 double lanes each) and the partial sums added in
 * chunk order, so the result is the same for any thread count.
 */
#include "sw.h"

#include "cpu.h"

enum {
    MAX_CHUNKS = 1024,
    MIN_CHUNK = 1 << 16,
};

static double
sumsq_chunk(const float *x, size_t n)
{
    double acc[8] = {0};
    size_t i = 0;

    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += (double)x[i + j] * (double)x[i + j];
    for (; i < n; i++)
        acc[0] += (double)x[i] * (double)x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

double
sw__cpu_sumsq(const float *x, size_t n)
{
    double part[MAX_CHUNKS], s = 0.0;
    size_t chunk = (n + MAX_CHUNKS - 1) / MAX_CHUNKS;
    long nchunks;

    if (chunk < MIN_CHUNK)
        chunk = MIN_CHUNK;
    nchunks = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (nchunks > 1)
    for (long c = 0; c < nchunks; c++) {
        size_t lo = (size_t)c * chunk, len = SW_MIN(chunk, n - lo);

        part[c] = sumsq_chunk(x + lo, len);
    }
    for (long c = 0; c < nchunks; c++)
        s += part[c];
    return s;
}
