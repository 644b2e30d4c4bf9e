/*
 * weighted_average.c - CheckFree's blend of the two neighbours' weights:
 *   out = (wa a + wb b) / (wa + wb), evaluated in double and rounded once.
 * out may alias a or b: each element is read before it is written.
 */
#include "sw.h"

#include "cpu.h"

void
sw__cpu_weighted_average(float *out, const float *a, float wa, const float *b, float wb,
                         size_t n)
{
    double da = wa, db = wb, s = (double)wa + (double)wb;

#pragma omp parallel for simd schedule(static) if (SW_CPU_PAR(n))
    for (size_t i = 0; i < n; i++)
        out[i] = (float)((da * a[i] + db * b[i]) / s);
}
