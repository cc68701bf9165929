#pragma once
#include <cstddef>

#include "kuiper/base/device.h"

namespace kuiper {

class DeviceContext;

// Hands out raw device memory. Allocation failures throw kuiper::Error naming the size.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual Device device() const noexcept = 0;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) noexcept = 0;
};

// CPU: 64-byte aligned heap memory. CUDA: the caching pool (kuiper/base/cuda_allocator.h).
Allocator& allocator_for(Device device);

// Copies bytes between any two devices. With a CUDA context the copy is queued on its stream
// (asynchronous for device-to-device); without one it completes before returning.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
                const DeviceContext* ctx = nullptr);

}  // namespace kuiper
