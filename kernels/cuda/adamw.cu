/*
 * adamw.cu - AdamW with decoupled weight decay, elementwise, with the CPU's
 * arithmetic (kernels.h):
 *   g = grad * grad_scale
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr * (m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd * p)
 * The bias corrections are computed once per call on the host, in double.
 */
#include "backend.h"

#include <math.h>

__global__ static void
adamw_kernel(float *param, const float *grad, float *m, float *v, size_t n, float lr,
             float beta1, float beta2, float eps, float weight_decay, float grad_scale, float c1,
             float c2)
{
    float a1 = 1.0f - beta1, a2 = 1.0f - beta2;

    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + a1 * g;
        float vi = beta2 * v[i] + a2 * g * g;
        float p = param[i];

        m[i] = mi;
        v[i] = vi;
        param[i] = p - lr * (mi * c1 / (sqrtf(vi * c2) + eps) + weight_decay * p);
    }
}

void
sw__cuda_adamw_update(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                      int t)
{
    float c1 = (float)(1.0 / (1.0 - pow((double)beta1, (double)t)));
    float c2 = (float)(1.0 / (1.0 - pow((double)beta2, (double)t)));

    if (n == 0)
        return;
    adamw_kernel<<<sw__cuda_blocks(n, SW_CUDA_BLOCK), SW_CUDA_BLOCK>>>(
        param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, c1, c2);
    sw__cuda_launched("adamw_kernel");
}
