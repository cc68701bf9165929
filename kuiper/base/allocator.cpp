#include "kuiper/base/allocator.h"

#include <cstdlib>
#include <cstring>

#include "kuiper/base/error.h"
#ifdef KUIPER_WITH_CUDA
#include "kuiper/base/cuda/allocator.h"
#include "kuiper/base/cuda/copy.h"
#endif

namespace kuiper {
namespace {

// 64 bytes: a cache line, and the widest vector load (AVX-512) the CPU kernels issue.
constexpr size_t kCpuAlignment = 64;

class CpuAllocator final : public Allocator {
 public:
  Device device() const noexcept override { return Device::kCPU; }

  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    const size_t rounded = (bytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    void* p = std::aligned_alloc(kCpuAlignment, rounded);
    KUIPER_CHECK(p != nullptr, "out of host memory: cannot allocate ", bytes, " bytes");
    return p;
  }

  void deallocate(void* ptr, size_t) noexcept override { std::free(ptr); }
};

}  // namespace

Allocator& allocator_for(Device device) {
  static CpuAllocator cpu;
  if (device == Device::kCPU) return cpu;
#ifdef KUIPER_WITH_CUDA
  return cuda_allocator();
#else
  require_cuda();
  return cpu;  // unreachable: require_cuda throws in CPU-only builds
#endif
}

void check_memory_available(Device device, size_t bytes, std::string_view what) {
  if (device == Device::kCPU) return;
#ifdef KUIPER_WITH_CUDA
  cuda_allocator().check_available(bytes, what);
#else
  require_cuda();
#endif
}

size_t device_bytes_reserved(Device device) {
#ifdef KUIPER_WITH_CUDA
  if (device == Device::kCUDA) return cuda_allocator().stats().bytes_reserved;
#endif
  return 0;
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
                const DeviceContext* ctx) {
  if (bytes == 0) return;
  if (dst_device == Device::kCPU && src_device == Device::kCPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
#ifdef KUIPER_WITH_CUDA
  cuda_copy_bytes(dst, dst_device, src, src_device, bytes, ctx);
#else
  (void)ctx;
  require_cuda();
#endif
}

}  // namespace kuiper
