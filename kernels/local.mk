# kernels/: the CPU backend (OpenBLAS + OpenMP) and the backend table.
# Built with sw_kernels_cppflags (Makefile.am): base/ and kernels/ only.
noinst_LIBRARIES += libswkernels.a
libswkernels_a_CPPFLAGS = $(sw_kernels_cppflags)
libswkernels_a_SOURCES = kernels/kernels.h kernels/kernels.c \
	kernels/cpu/cpu.h kernels/cpu/table.c kernels/cpu/matmul.c kernels/cpu/embedding.c \
	kernels/cpu/rmsnorm.c kernels/cpu/rope.c kernels/cpu/attention.c kernels/cpu/swiglu.c \
	kernels/cpu/residual.c kernels/cpu/crossentropy.c kernels/cpu/adamw.c kernels/cpu/sumsq.c \
	kernels/cpu/weighted_average.c

check_PROGRAMS += tests/test_kernels
TESTS += tests/test_kernels
tests_test_kernels_SOURCES = tests/test_kernels.c tests/tap.h
# The kernels need only libswbase.a (logging, sw_malloc_big) and BLAS.
tests_test_kernels_LDADD = libswkernels.a libswbase.a $(BLAS_LIBS) $(CUDA_LIBS) -lm -lpthread
