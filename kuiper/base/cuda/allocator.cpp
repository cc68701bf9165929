// Placeholder: plain cudaMalloc/cudaFree with counters. The caching pool replaces it (issue 3).
#include "kuiper/base/cuda/allocator.h"

#include <algorithm>
#include <mutex>

#include "kuiper/base/cuda/check.h"

namespace kuiper {
namespace {

class PlainCudaAllocator final : public CudaAllocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();
      fail("CUDA out of memory: cannot allocate ", bytes, " bytes (", cudaGetErrorString(err), ")");
    }
    std::lock_guard lock(mu_);
    stats_.bytes_in_use += bytes;
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    return p;
  }
  void deallocate(void* ptr, size_t bytes) noexcept override {
    if (ptr == nullptr) return;
    cudaFree(ptr);
    std::lock_guard lock(mu_);
    stats_.bytes_in_use -= bytes;
  }
  CudaMemoryStats stats() const override {
    std::lock_guard lock(mu_);
    return stats_;
  }
  void release_cached() override {}

 private:
  mutable std::mutex mu_;
  CudaMemoryStats stats_;
};

}  // namespace

CudaAllocator& cuda_allocator() {
  static PlainCudaAllocator allocator;
  return allocator;
}

}  // namespace kuiper
