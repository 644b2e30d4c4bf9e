/*
 * bench.h - what the benchmarks share (header only): the median they report.
 * The machines are noisy; every figure a benchmark prints is a median of
 * repetitions (or of same-run paired ratios), never a single run.
 */
#ifndef SW_BENCH_H
#define SW_BENCH_H

#include <stdlib.h>

static inline int
bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of v[0..n-1], n >= 1; sorts v in place. */
static inline double
bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
