/*
 * table.c - the CPU backend's table: host memory, threads, and the ops.
 *
 * Memory is plain host memory: alloc is sw_malloc_big (64-byte aligned,
 * zero-filled and therefore pre-faulted), copies are memcpy.  Nothing runs
 * asynchronously, so sync and last_error always return 0.
 */
#include "sw.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <string.h>

#include "kernels.h"
#include "cpu.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void
init_blas(void)
{
    openblas_set_num_threads(1);
}

void
sw__cpu_init(void)
{
    pthread_once(&init_once, init_blas);
}

static void *
cpu_alloc(size_t bytes)
{
    return sw_malloc_big(bytes);
}

static void
cpu_free(void *p)
{
    sw_free_big(p);
}

static int
cpu_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes)
        memcpy(dst, src, bytes);
    return 0;
}

static int
cpu_memset0(void *p, size_t bytes)
{
    if (bytes)
        memset(p, 0, bytes);
    return 0;
}

static int
cpu_ok(void)
{
    return 0;
}

/* n OpenMP threads; OpenBLAS stays at one (see cpu.h: the GEMMs are split
 * over OpenMP threads instead). */
static int
cpu_set_threads(int n)
{
    if (n < 1)
        return -SW_EINVAL;
    sw__cpu_init();
    omp_set_num_threads(n);
    return 0;
}

static int
cpu_set_math(enum sw_math m)
{
    return m == SW_MATH_FP32 ? 0 : -SW_ENOTSUP;
}

const struct sw_kernels sw_kernels_cpu = {
    .name = "cpu",
    .device = SW_DEVICE_CPU,

    .alloc = cpu_alloc,
    .free = cpu_free,
    .alloc_host = cpu_alloc,
    .free_host = cpu_free,
    .copy_h2d = cpu_copy,
    .copy_d2h = cpu_copy,
    .copy_d2d = cpu_copy,
    .memset0 = cpu_memset0,
    .sync = cpu_ok,
    .last_error = cpu_ok,
    .set_threads = cpu_set_threads,
    .set_math = cpu_set_math,

    .embedding_forward = sw__cpu_embedding_forward,
    .embedding_backward = sw__cpu_embedding_backward,
    .rmsnorm_forward = sw__cpu_rmsnorm_forward,
    .rmsnorm_backward = sw__cpu_rmsnorm_backward,
    .matmul_forward = sw__cpu_matmul_forward,
    .matmul_backward = sw__cpu_matmul_backward,
    .rope_forward = sw__cpu_rope_forward,
    .rope_backward = sw__cpu_rope_backward,
    .attention_forward = sw__cpu_attention_forward,
    .attention_backward = sw__cpu_attention_backward,
    .swiglu_forward = sw__cpu_swiglu_forward,
    .swiglu_backward = sw__cpu_swiglu_backward,
    .residual_forward = sw__cpu_residual_forward,
    .residual_backward = sw__cpu_residual_backward,
    .crossentropy_forward = sw__cpu_crossentropy_forward,
    .crossentropy_backward = sw__cpu_crossentropy_backward,

    .adamw_update = sw__cpu_adamw_update,
    .sumsq = sw__cpu_sumsq,
    .weighted_average = sw__cpu_weighted_average,
};
