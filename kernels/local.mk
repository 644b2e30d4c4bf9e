# kernels/: the CPU backend (OpenBLAS + OpenMP) and the backend table.
# cblas.h may live in a BLAS-specific folder (pkg-config's openblas cflags).
AM_CPPFLAGS += $(BLAS_CFLAGS)

noinst_LIBRARIES += libswkernels.a
libswkernels_a_SOURCES = kernels/kernels.h kernels/kernels.c \
	kernels/cpu/cpu.h kernels/cpu/table.c kernels/cpu/matmul.c kernels/cpu/embedding.c \
	kernels/cpu/rmsnorm.c kernels/cpu/rope.c kernels/cpu/attention.c kernels/cpu/swiglu.c \
	kernels/cpu/residual.c kernels/cpu/crossentropy.c kernels/cpu/adamw.c kernels/cpu/sumsq.c \
	kernels/cpu/weighted_average.c

check_PROGRAMS += tests/test_kernels
TESTS += tests/test_kernels
tests_test_kernels_SOURCES = tests/test_kernels.c tests/tap.h
# libswkernels.a needs libswcore.a (logging, sw_malloc_big): list it first too,
# so the link works whatever order sw_core_libs gives.
tests_test_kernels_LDADD = libswkernels.a $(sw_core_ldadd)
