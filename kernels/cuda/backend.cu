/*
 * backend.cu - the CUDA backend's table, its probe, memory, math mode, error
 * slot and scratch buffers.  See backend.h for the rules all files follow.
 */
#include "backend.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

cublasHandle_t sw__cuda_blas;
enum sw_math sw__cuda_math = SW_MATH_FP32;

static int cc_major;                  /* compute capability of the device */
static struct sw_kernels cuda_table;  /* filled by the probe */

/* ---- errors ---- */

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static int first_err;                 /* 0 or the first -SW_E* since last_error() */
static const char *last_kernel = "none"; /* last kernel queued (string literal) */

void
sw__cuda_fail(const char *what, int err, const char *detail)
{
    bool first;

    pthread_mutex_lock(&err_lock);
    first = first_err == 0;
    if (first)
        first_err = err;
    pthread_mutex_unlock(&err_lock);
    if (first)
        sw_log(SW_LOG_ERROR, "cuda: '%s' failed: %s (last kernel queued: '%s')", what, detail,
               last_kernel);
}

bool
sw__cuda_ok(cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return true;
    (void)cudaGetLastError(); /* clear a non-sticky error so it is not reported twice */
    sw__cuda_fail(what, -SW_ECUDA, cudaGetErrorString(e));
    return false;
}

bool
sw__cuda_blas_ok(cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS)
        return true;
    sw__cuda_fail(what, -SW_ECUDA, cublasGetStatusString(s));
    return false;
}

bool
sw__cuda_launched(const char *kernel)
{
    last_kernel = kernel;
    return sw__cuda_ok(cudaGetLastError(), kernel);
}

static int
cuda_last_error(void)
{
    int err;

    pthread_mutex_lock(&err_lock);
    err = first_err;
    first_err = 0;
    pthread_mutex_unlock(&err_lock);
    return err;
}

/* ---- scratch ---- */

static void *scratch_ptr[SW_CUDA_SCRATCH_COUNT];
static size_t scratch_len[SW_CUDA_SCRATCH_COUNT];

void *
sw__cuda_scratch(enum sw__cuda_slot slot, size_t bytes, const char *who)
{
    void *p = NULL;
    cudaError_t e;

    if (bytes <= scratch_len[slot])
        return scratch_ptr[slot];
    bytes = (bytes + 4095) & ~(size_t)4095;
    if (scratch_ptr[slot] && !sw__cuda_ok(cudaFree(scratch_ptr[slot]), "cudaFree (scratch)"))
        return NULL;
    scratch_ptr[slot] = NULL;
    scratch_len[slot] = 0;
    e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        char detail[160];

        (void)cudaGetLastError();
        snprintf(detail, sizeof(detail), "cannot allocate %zu bytes of scratch: %s", bytes,
                 cudaGetErrorString(e));
        sw__cuda_fail(who, -SW_ENOMEM, detail);
        return NULL;
    }
    scratch_ptr[slot] = p;
    scratch_len[slot] = bytes;
    return p;
}

/* ---- memory ---- */

static void *
cuda_alloc(size_t bytes)
{
    void *p = NULL;
    cudaError_t e;

    e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        sw_log(SW_LOG_ERROR, "cuda: cannot allocate %zu bytes: %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    if (!sw__cuda_ok(cudaMemset(p, 0, bytes), "cudaMemset (alloc)")) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void
cuda_free(void *p)
{
    if (p)
        sw__cuda_ok(cudaFree(p), "cudaFree");
}

static void *
cuda_alloc_host(size_t bytes)
{
    void *p = NULL;
    cudaError_t e;

    e = cudaMallocHost(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        sw_log(SW_LOG_ERROR, "cuda: cannot allocate %zu bytes of pinned host memory: %s", bytes,
               cudaGetErrorString(e));
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

static void
cuda_free_host(void *p)
{
    if (p)
        sw__cuda_ok(cudaFreeHost(p), "cudaFreeHost");
}

static int
cuda_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, const char *what)
{
    if (bytes == 0)
        return 0;
    return sw__cuda_ok(cudaMemcpy(dst, src, bytes, kind), what) ? 0 : -SW_ECUDA;
}

static int
cuda_copy_h2d(void *dst, const void *src, size_t bytes)
{
    return cuda_copy(dst, src, bytes, cudaMemcpyHostToDevice, "cudaMemcpy (h2d)");
}

static int
cuda_copy_d2h(void *dst, const void *src, size_t bytes)
{
    return cuda_copy(dst, src, bytes, cudaMemcpyDeviceToHost, "cudaMemcpy (d2h)");
}

static int
cuda_copy_d2d(void *dst, const void *src, size_t bytes)
{
    return cuda_copy(dst, src, bytes, cudaMemcpyDeviceToDevice, "cudaMemcpy (d2d)");
}

static int
cuda_memset0(void *p, size_t bytes)
{
    if (bytes == 0)
        return 0;
    return sw__cuda_ok(cudaMemset(p, 0, bytes), "cudaMemset") ? 0 : -SW_ECUDA;
}

static int
cuda_sync(void)
{
    sw__cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    return cuda_last_error();
}

static int
cuda_set_threads(int n)
{
    (void)n;
    return 0;
}

/* ---- math mode ---- */

static int
cuda_set_math(enum sw_math m)
{
    switch (m) {
    case SW_MATH_FP32:
        break;
    case SW_MATH_TF32:
    case SW_MATH_BF16:
        if (cc_major < 8)
            return -SW_ENOTSUP; /* tensor-core tf32/bf16 need sm_80 */
        break;
    default:
        return -SW_EINVAL;
    }
    sw__cuda_math = m;
    return 0;
}

void
sw__cuda_gemm_strided(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                      float alpha, const float *A, int lda, long long sa, const float *B, int ldb,
                      long long sb, float beta, float *C, int ldc, long long sc, int batch,
                      const char *what)
{
    cublasStatus_t s;
    cublasComputeType_t ct;

    if (sw__cuda_math == SW_MATH_FP32) {
        s = cublasSgemmStridedBatched(sw__cuda_blas, ta, tb, m, n, k, &alpha, A, lda, sa, B, ldb,
                                      sb, &beta, C, ldc, sc, batch);
    } else {
        ct = sw__cuda_math == SW_MATH_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                           : CUBLAS_COMPUTE_32F_FAST_16BF;
        s = cublasGemmStridedBatchedEx(sw__cuda_blas, ta, tb, m, n, k, &alpha, A, CUDA_R_32F,
                                       lda, sa, B, CUDA_R_32F, ldb, sb, &beta, C, CUDA_R_32F, ldc,
                                       sc, batch, ct, CUBLAS_GEMM_DEFAULT);
    }
    sw__cuda_blas_ok(s, what);
}

/* ---- the table and the probe ---- */

static void
fill_table(struct sw_kernels *k)
{
    k->name = "cuda";
    k->device = SW_DEVICE_CUDA;
    k->alloc = cuda_alloc;
    k->free = cuda_free;
    k->alloc_host = cuda_alloc_host;
    k->free_host = cuda_free_host;
    k->copy_h2d = cuda_copy_h2d;
    k->copy_d2h = cuda_copy_d2h;
    k->copy_d2d = cuda_copy_d2d;
    k->memset0 = cuda_memset0;
    k->sync = cuda_sync;
    k->last_error = cuda_last_error;
    k->set_threads = cuda_set_threads;
    k->set_math = cuda_set_math;
    k->embedding_forward = sw__cuda_embedding_forward;
    k->embedding_backward = sw__cuda_embedding_backward;
    k->rmsnorm_forward = sw__cuda_rmsnorm_forward;
    k->rmsnorm_backward = sw__cuda_rmsnorm_backward;
    k->matmul_forward = sw__cuda_matmul_forward;
    k->matmul_backward = sw__cuda_matmul_backward;
    k->rope_forward = sw__cuda_rope_forward;
    k->rope_backward = sw__cuda_rope_backward;
    k->attention_forward = sw__cuda_attention_forward;
    k->attention_backward = sw__cuda_attention_backward;
    k->swiglu_forward = sw__cuda_swiglu_forward;
    k->swiglu_backward = sw__cuda_swiglu_backward;
    k->residual_forward = sw__cuda_residual_forward;
    k->residual_backward = sw__cuda_residual_backward;
    k->crossentropy_forward = sw__cuda_crossentropy_forward;
    k->crossentropy_backward = sw__cuda_crossentropy_backward;
    k->adamw_update = sw__cuda_adamw_update;
    k->sumsq = sw__cuda_sumsq;
    k->weighted_average = sw__cuda_weighted_average;
}

static int
probe_once(void)
{
    struct cudaDeviceProp prop;
    cublasStatus_t s;
    cudaError_t e;
    int n = 0, dev = 0;

    e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        (void)cudaGetLastError();
        sw_log(SW_LOG_DEBUG, "cuda: no device: %s",
               e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        return -SW_ENODEV;
    }
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        sw_log(SW_LOG_WARN, "cuda: cannot query device %d", dev);
        return -SW_ENODEV;
    }
    s = cublasCreate(&sw__cuda_blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        (void)cudaGetLastError();
        sw_log(SW_LOG_WARN, "cuda: cannot create a cuBLAS handle: %s", cublasGetStatusString(s));
        return -SW_ENODEV;
    }
    /* fp32 means fp32: no silent TF32 (the tf32/bf16 modes ask per call) */
    s = cublasSetMathMode(sw__cuda_blas, CUBLAS_DEFAULT_MATH);
    if (s != CUBLAS_STATUS_SUCCESS) {
        sw_log(SW_LOG_WARN, "cuda: cannot set the cuBLAS math mode: %s", cublasGetStatusString(s));
        cublasDestroy(sw__cuda_blas);
        return -SW_ENODEV;
    }
    cc_major = prop.major;
    fill_table(&cuda_table);
    sw_log(SW_LOG_INFO, "cuda: device %d '%s' (sm_%d%d, %d SMs, %.1f GiB)", dev, prop.name,
           prop.major, prop.minor, prop.multiProcessorCount,
           (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return 0;
}

extern "C" int
sw_kernels_cuda_probe(const struct sw_kernels **out)
{
    static int state = 1; /* 1: not probed yet; else the probe's result */

    if (state == 1)
        state = probe_once();
    if (state < 0)
        return state;
    *out = &cuda_table;
    return 0;
}
