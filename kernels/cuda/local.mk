# kernels/cuda/: the CUDA backend (cuBLAS + our kernels), built when configure
# finds nvcc (HAVE_CUDA).  The sources are listed in EXTRA_DIST too, so that
# `make dist` ships them from a build without CUDA.
cuda_sources = kernels/cuda/backend.cu kernels/cuda/embedding.cu kernels/cuda/rmsnorm.cu \
	kernels/cuda/matmul.cu kernels/cuda/rope.cu kernels/cuda/attention.cu \
	kernels/cuda/swiglu.cu kernels/cuda/residual.cu kernels/cuda/crossentropy.cu \
	kernels/cuda/adamw.cu kernels/cuda/sumsq.cu kernels/cuda/weighted_average.cu
EXTRA_DIST += $(cuda_sources) kernels/cuda/backend.h

if HAVE_CUDA
libswkernels_a_SOURCES += $(cuda_sources)
# nvcc objects get no automatic dependency tracking: name the headers here
$(cuda_sources:.cu=.$(OBJEXT)): $(top_srcdir)/kernels/cuda/backend.h \
	$(top_srcdir)/kernels/kernels.h $(top_srcdir)/base/sw.h config.h
endif

# CPU/CUDA parity of every op; without HAVE_CUDA the probe is the inline stub
# and the test reports itself skipped.
check_PROGRAMS += tests/test_cuda_parity
TESTS += tests/test_cuda_parity
tests_test_cuda_parity_SOURCES = tests/test_cuda_parity.c tests/tap.h
tests_test_cuda_parity_LDADD = $(sw_core_ldadd)

# A whole stage and a few training steps on both backends (skips without a GPU).
check_PROGRAMS += tests/test_stage_parity
TESTS += tests/test_stage_parity
tests_test_stage_parity_SOURCES = tests/test_stage_parity.c tests/tap.h
tests_test_stage_parity_LDADD = $(sw_core_ldadd)
