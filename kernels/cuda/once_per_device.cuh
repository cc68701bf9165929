#pragma once
#include <cuda_runtime.h>

#include <array>
#include <mutex>
#include <utility>

#include "kuiper/base/cuda/check.h"

namespace kuiper::kernels::cuda {

// Runs a preparation once on each GPU: a kernel's function attributes (its dynamic shared memory
// limit) are set for the current device only, and tensor-parallel ranks launch on several.
class OncePerDevice {
 public:
  template <class F>
  void run(F&& prepare) {
    int device = 0;
    KUIPER_CUDA_CHECK(cudaGetDevice(&device));
    KUIPER_CHECK(device >= 0 && device < kMaxDevices, "CUDA device ", device, " beyond the ",
                 kMaxDevices, " the kernels serve");
    std::call_once(done_[size_t(device)], std::forward<F>(prepare));
  }

 private:
  static constexpr int kMaxDevices = 64;
  std::array<std::once_flag, kMaxDevices> done_;
};

}  // namespace kuiper::kernels::cuda
