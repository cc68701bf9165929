#pragma once
#include <cstddef>
#include <memory>

#include "kuiper/base/device.h"

namespace kuiper {

// Where kernels run: for CUDA one stream and one cuBLAS handle, owned here (one per model);
// for the CPU nothing but the device tag. Passed to every kernel.
class DeviceContext {
 public:
  explicit DeviceContext(Device device);
  ~DeviceContext();
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;

  Device device() const { return device_; }
  // cudaStream_t and cublasHandle_t, type-erased so that CPU-only code needs no CUDA headers.
  void* cuda_stream() const;
  void* cublas_handle() const;
  // Waits for all queued work; throws kuiper::Error if a kernel failed.
  void synchronize() const;
  // CUDA only: scratch device memory of at least `bytes` for kernels queued on this stream (work
  // on one stream never overlaps, so all kernels share it); zeroed when first handed out. Grows
  // on demand, but never while the stream is capturing a graph; memory once handed out stays
  // valid until the context dies, so graphs that captured a kernel using it stay valid.
  void* cuda_workspace(size_t bytes) const;

  // The context of the CPU, for callers that have no model at hand (tests, tools).
  static const DeviceContext& cpu();

 private:
  struct CudaState;
  Device device_;
  std::unique_ptr<CudaState> cuda_;
};

}  // namespace kuiper
