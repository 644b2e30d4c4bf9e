/*
 * rope.cu - rotary position embedding, Hugging Face's rotate_half, in place
 * on the NH query and NKV key heads of the packed qkv rows (see kernels.h).
 * One thread per (row, head, i < HS/2) pair; the backward rotates by -angle.
 */
#include "backend.h"

/* rotate every (row, head, i) pair of the q and k heads by +angle (sgn 1.0f)
 * or -angle (sgn -1.0f) */
__device__ static void
rope_rotate(float *qkv, const float *cos, const float *sin, int B, int T, int NH, int NKV, int HS,
            float sgn)
{
    int half = HS / 2, heads = NH + NKV;
    size_t total = (size_t)B * T * heads * half;
    size_t row_len = (size_t)(NH + 2 * NKV) * HS;

    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < total;
         idx += (size_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        int h = (int)(idx / half % heads);
        size_t n = idx / ((size_t)half * heads);
        int t = (int)(n % T);
        float *p = qkv + n * row_len + (size_t)h * HS;
        float c = cos[t * half + i], s = sgn * sin[t * half + i];
        float x1 = p[i], x2 = p[i + half];

        p[i] = x1 * c - x2 * s;
        p[i + half] = x2 * c + x1 * s;
    }
}

__global__ static void
rope_forward_kernel(float *qkv, const float *cos, const float *sin, int B, int T, int NH,
                    int NKV, int HS)
{
    rope_rotate(qkv, cos, sin, B, T, NH, NKV, HS, 1.0f);
}

/* the transpose of a rotation is the rotation by -angle */
__global__ static void
rope_backward_kernel(float *dqkv, const float *cos, const float *sin, int B, int T, int NH,
                     int NKV, int HS)
{
    rope_rotate(dqkv, cos, sin, B, T, NH, NKV, HS, -1.0f);
}

static void
rope_launch(bool backward, float *qkv, const float *cos, const float *sin, int B, int T, int NH,
            int NKV, int HS)
{
    size_t total = (size_t)B * T * (NH + NKV) * (HS / 2);
    unsigned blocks = sw__cuda_blocks(total, SW_CUDA_BLOCK);

    if (total == 0)
        return;
    if (backward) {
        rope_backward_kernel<<<blocks, SW_CUDA_BLOCK>>>(qkv, cos, sin, B, T, NH, NKV, HS);
        sw__cuda_launched("rope_backward_kernel");
    } else {
        rope_forward_kernel<<<blocks, SW_CUDA_BLOCK>>>(qkv, cos, sin, B, T, NH, NKV, HS);
        sw__cuda_launched("rope_forward_kernel");
    }
}

void
sw__cuda_rope_forward(float *qkv, const float *cos, const float *sin, int B, int T, int NH,
                      int NKV, int HS)
{
    rope_launch(false, qkv, cos, sin, B, T, NH, NKV, HS);
}

void
sw__cuda_rope_backward(float *dqkv, const float *cos, const float *sin, int B, int T, int NH,
                       int NKV, int HS)
{
    rope_launch(true, dqkv, cos, sin, B, T, NH, NKV, HS);
}
