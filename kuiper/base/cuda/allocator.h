#pragma once
// The CUDA caching allocator: a pool in front of cudaMalloc (see cuda_allocator.cpp for policy).
#include <cstddef>

#include "kuiper/base/allocator.h"

namespace kuiper {

struct CudaMemoryStats {
  size_t bytes_in_use = 0;  // handed out and not yet returned
  size_t bytes_cached = 0;  // held from cudaMalloc, idle in the pools
  size_t peak_bytes_in_use = 0;
};

class CudaAllocator : public Allocator {
 public:
  Device device() const noexcept override { return Device::kCUDA; }
  virtual CudaMemoryStats stats() const = 0;
  // Returns every idle cached block to the driver.
  virtual void release_cached() = 0;
};

CudaAllocator& cuda_allocator();

}  // namespace kuiper
