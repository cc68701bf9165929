#pragma once
#include <cstddef>
#include <string_view>

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

// Throws kuiper::Error naming the sizes unless `bytes` more can be allocated on `device` now, so
// that a model too large for the GPU fails before uploading anything. `what` names the bytes
// ("the weights of m.bin"). The CPU is not checked: its memory is mapped or paged lazily.
void check_memory_available(Device device, size_t bytes, std::string_view what);

// Bytes this process holds on `device` through its allocator: for CUDA what the caching pool has
// reserved from the driver (in use or cached); 0 for the CPU, whose heap is not tracked.
size_t device_bytes_reserved(Device device);

// Copies bytes between any two devices. With a CUDA context the copy is queued on its stream
// (asynchronous for device-to-device); without one it completes before returning.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
                const DeviceContext* ctx = nullptr);

}  // namespace kuiper
