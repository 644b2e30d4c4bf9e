/*
 * kernels.c - choosing a backend, and the host-side helpers every backend
 * shares (RoPE tables).
 */
#include "sw.h"

#include <math.h>
#include <string.h>

#include "kernels.h"

int
sw_device_parse(const char *s, enum sw_device *out)
{
    if (strcmp(s, "auto") == 0)
        *out = SW_DEVICE_AUTO;
    else if (strcmp(s, "cpu") == 0)
        *out = SW_DEVICE_CPU;
    else if (strcmp(s, "cuda") == 0)
        *out = SW_DEVICE_CUDA;
    else
        return -SW_EINVAL;
    return 0;
}

int
sw_math_parse(const char *s, enum sw_math *out)
{
    if (strcmp(s, "fp32") == 0)
        *out = SW_MATH_FP32;
    else if (strcmp(s, "tf32") == 0)
        *out = SW_MATH_TF32;
    else if (strcmp(s, "bf16") == 0)
        *out = SW_MATH_BF16;
    else
        return -SW_EINVAL;
    return 0;
}

int
sw_kernels_pick(enum sw_device want, const struct sw_kernels **out)
{
    int err;

    if (want == SW_DEVICE_CPU) {
        *out = &sw_kernels_cpu;
        return 0;
    }
    err = sw_kernels_cuda_probe(out);
    if (err == 0)
        return 0;
    if (want == SW_DEVICE_CUDA) {
        sw_log(SW_LOG_ERROR, "--device cuda: no usable CUDA device (%s)", sw_strerror(err));
        return err;
    }
    *out = &sw_kernels_cpu;
    return 0;
}

void
sw_rope_tables(float *cos_out, float *sin_out, int T, int HS, double theta)
{
    int half = HS / 2;

    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            double inv_freq = pow(theta, -(2.0 * i) / (double)HS);
            double ang = (double)t * inv_freq;
            cos_out[t * half + i] = (float)cos(ang);
            sin_out[t * half + i] = (float)sin(ang);
        }
    }
}
