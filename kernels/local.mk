# kernels/: the CPU backend (OpenBLAS + OpenMP) and the backend table.
noinst_LIBRARIES += libswkernels.a
libswkernels_a_SOURCES = kernels/kernels.h kernels/kernels.c
