# kernels/cuda/: the CUDA backend (cuBLAS + our kernels), built when configure finds nvcc.
