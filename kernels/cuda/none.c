/*
 * none.c - the CUDA probe of a program that never computes on a GPU, linked
 * in a CUDA build in place of the backend (kernels/cuda/backend.cu).
 *
 * swarmctl computes nothing on a GPU (its checkpoint commands read and write
 * files on the CPU), but it links the model's code, which picks a backend
 * (kernels.c calls sw_kernels_cuda_probe), and so would pull in the CUDA
 * backend and, through it, cuBLAS.  Loading libcublasLt costs about 0.5 s of
 * CPU at every start (its initialisers and relocations), more than the rest
 * of a `swarmctl status`.  With this definition first on its link line and
 * -Wl,--as-needed, no object references CUDA and the libraries are not
 * loaded at all (Makefile.am).  Only built when configure enables CUDA: in a
 * CPU build kernels.h has the same stub inline.
 */
#include "sw.h"

#include "kernels.h"

int
sw_kernels_cuda_probe(const struct sw_kernels **out)
{
    (void)out;
    return -SW_ENODEV;
}
