#pragma once
// The CUDA caching allocator: a pool in front of cudaMalloc (see allocator.cpp for the policy).
//
// Blocks carry no stream: a freed block may be handed out again at once, before kernels that
// were queued on it have run. That is safe while all work that touches device memory is
// ordered on one stream (one DeviceContext per model, as kuiper does), or synchronized by the
// caller before memory moves to another stream.
#include <cstddef>
#include <memory>
#include <string_view>

#include "kuiper/base/allocator.h"

namespace kuiper {

struct CudaMemoryStats {
  size_t bytes_in_use = 0;       // handed out and not yet returned (sizes rounded up to 512 B)
  size_t bytes_cached = 0;       // held from cudaMalloc, idle in the pools
  size_t peak_bytes_in_use = 0;
  size_t bytes_reserved = 0;     // everything held from cudaMalloc: in use + cached
  size_t small_bytes_cached = 0; // the part of bytes_cached in the small-block pool
  size_t driver_allocs = 0;      // cudaMalloc calls that succeeded, since the start
  size_t driver_frees = 0;       // cudaFree calls, since the start
  size_t retries = 0;            // cudaMalloc failures answered by releasing the cache
};

class CudaAllocator : public Allocator {
 public:
  Device device() const noexcept override { return Device::kCUDA; }
  virtual CudaMemoryStats stats() const = 0;
  // Returns every idle cached block (whole idle segments) to the driver.
  virtual void release_cached() = 0;
  // Caps the bytes held from cudaMalloc; a request that would go over it behaves as if
  // cudaMalloc had failed (cache released, then one retry, then the out-of-memory error).
  // 0 (the default) means no cap beyond the card's memory. For tests and for sharing a card.
  virtual void set_reserved_limit(size_t bytes) = 0;
  virtual void reset_peak() = 0;
  // Throws kuiper::Error, naming the sizes, unless `bytes` more could be allocated now: from the
  // idle cache, the device's free memory and what the reserved limit leaves. `what` says what
  // the bytes are for.
  virtual void check_available(size_t bytes, std::string_view what) const = 0;
};

// The process's allocator, which every CUDA Buffer uses. KUIPER_CUDA_MEMORY_LIMIT (bytes, or
// with a K, M or G suffix: KiB, MiB, GiB) caps it from the start, e.g. to provoke out-of-memory
// errors in tests or to share a card.
CudaAllocator& cuda_allocator();
// A separate allocator with pools and counters of its own (for tests).
std::unique_ptr<CudaAllocator> make_cuda_caching_allocator();

}  // namespace kuiper
