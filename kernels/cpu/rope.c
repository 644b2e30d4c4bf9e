/*
 * rope.c - rotary position embedding, Hugging Face's rotate_half form, in
 * place on the NH query and NKV key heads of the packed qkv rows (the NKV
 * value heads are left alone).  With h = HS/2 and t the position in the
 * window:
 *   forward:  y[i] = x[i] cos - x[i+h] sin;   y[i+h] = x[i+h] cos + x[i] sin
 *   backward: the transpose, i.e. the same rotation by -angle.
 */
#include "sw.h"

#include "cpu.h"

/* sign = +1: rotate by +angle; -1: by -angle */
static void
rope_rotate(float *qkv, const float *cos, const float *sin, int B, int T, int NH, int NKV, int HS,
            float sign)
{
    int half = HS / 2, nrot = NH + NKV;
    size_t row = (size_t)(NH + 2 * NKV) * HS;

#pragma omp parallel for schedule(static) if (SW_CPU_PAR((size_t)B * T * nrot * HS))
    for (int bt = 0; bt < B * T; bt++) {
        const float *cs = cos + (size_t)(bt % T) * half;
        const float *sn = sin + (size_t)(bt % T) * half;

        for (int hd = 0; hd < nrot; hd++) {
            float *x1 = qkv + (size_t)bt * row + (size_t)hd * HS, *x2 = x1 + half;

#pragma omp simd
            for (int i = 0; i < half; i++) {
                float a = x1[i], b = x2[i], s = sign * sn[i];

                x1[i] = a * cs[i] - b * s;
                x2[i] = b * cs[i] + a * s;
            }
        }
    }
}

void
sw__cpu_rope_forward(float *qkv, const float *cos, const float *sin, int B, int T, int NH, int NKV,
                     int HS)
{
    rope_rotate(qkv, cos, sin, B, T, NH, NKV, HS, 1.0f);
}

void
sw__cpu_rope_backward(float *dqkv, const float *cos, const float *sin, int B, int T, int NH,
                      int NKV, int HS)
{
    rope_rotate(dqkv, cos, sin, B, T, NH, NKV, HS, -1.0f);
}
