#pragma once
// Every CUDA runtime and cuBLAS call goes through these checks, so a failure becomes a
// kuiper::Error that names the call, the error and where it happened.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kuiper/base/error.h"

#define KUIPER_CUDA_CHECK(expr)                                                          \
  do {                                                                                   \
    const cudaError_t kuiper_err_ = (expr);                                              \
    if (kuiper_err_ != cudaSuccess)                                                      \
      ::kuiper::fail("CUDA error: ", cudaGetErrorString(kuiper_err_), " (", #expr, " at ", \
                     __FILE__, ":", __LINE__, ")");                                      \
  } while (0)

#define KUIPER_CUBLAS_CHECK(expr)                                                          \
  do {                                                                                     \
    const cublasStatus_t kuiper_st_ = (expr);                                              \
    if (kuiper_st_ != CUBLAS_STATUS_SUCCESS)                                               \
      ::kuiper::fail("cuBLAS error: ", cublasGetStatusString(kuiper_st_), " (", #expr, " at ", \
                     __FILE__, ":", __LINE__, ")");                                        \
  } while (0)

// After a kernel launch: catches bad launch configurations at once; faults inside the kernel
// surface at the next synchronizing call.
#define KUIPER_CUDA_CHECK_LAUNCH() KUIPER_CUDA_CHECK(cudaGetLastError())
