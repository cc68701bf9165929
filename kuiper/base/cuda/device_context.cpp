// The CUDA build's half of device.h and device_context.h, and the host<->device copies.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <mutex>
#include <utility>
#include <vector>

#include "kuiper/base/cuda/allocator.h"
#include "kuiper/base/cuda/check.h"
#include "kuiper/base/cuda/copy.h"
#include "kuiper/base/device_context.h"

namespace kuiper {

bool cuda_compiled() { return true; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error so later checks start clean
    return 0;
  }
  return n;
}

void require_cuda() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail("no usable CUDA device: ", cudaGetErrorString(err));
  }
  KUIPER_CHECK(n > 0, "no CUDA device found");
}

void bind_thread_to_cuda_device(int index) {
  require_cuda();
  const int n = cuda_device_count();
  KUIPER_CHECK(index >= 0 && index < n, "no CUDA device ", index, " (found ", n, ")");
  KUIPER_CUDA_CHECK(cudaSetDevice(index));
}

struct DeviceContext::CudaState {
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  // cuda_workspace(): the current buffer, and those it outgrew (a captured graph may still
  // use them), all returned when the context dies.
  std::mutex workspace_mu;
  std::vector<std::pair<void*, size_t>> workspaces;
  CudaAllocator* allocator = &cuda_allocator();  // the pool of this context's GPU
  ~CudaState() {
    if (stream) cudaStreamSynchronize(stream);  // queued kernels may still use the workspaces
    for (auto [p, bytes] : workspaces) allocator->deallocate(p, bytes);
    if (cublas) cublasDestroy(cublas);
    if (stream) cudaStreamDestroy(stream);
  }
};

DeviceContext::DeviceContext(Device device) : device_(device) {
  if (device != Device::kCUDA) return;
  require_cuda();
  // The allocator must outlive every context (the workspaces go back to it): constructing it
  // first makes it a static destroyed after any static context.
  (void)cuda_allocator();
  cuda_ = std::make_unique<CudaState>();
  KUIPER_CUDA_CHECK(cudaStreamCreateWithFlags(&cuda_->stream, cudaStreamNonBlocking));
  KUIPER_CUBLAS_CHECK(cublasCreate(&cuda_->cublas));
  KUIPER_CUBLAS_CHECK(cublasSetStream(cuda_->cublas, cuda_->stream));
}

DeviceContext::~DeviceContext() = default;

void* DeviceContext::cuda_stream() const { return cuda_ ? cuda_->stream : nullptr; }
void* DeviceContext::cublas_handle() const { return cuda_ ? cuda_->cublas : nullptr; }

void DeviceContext::synchronize() const {
  if (cuda_) KUIPER_CUDA_CHECK(cudaStreamSynchronize(cuda_->stream));
}

void* DeviceContext::cuda_workspace(size_t bytes) const {
  KUIPER_CHECK(cuda_ != nullptr, "cuda_workspace() of a ", device_name(device_), " context");
  std::lock_guard lock(cuda_->workspace_mu);
  auto& all = cuda_->workspaces;
  if (!all.empty() && all.back().second >= bytes) return all.back().first;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  KUIPER_CUDA_CHECK(cudaStreamIsCapturing(cuda_->stream, &capture));
  KUIPER_CHECK(capture == cudaStreamCaptureStatusNone, "the CUDA workspace must grow to ", bytes,
               " bytes while a graph is being captured: run the same step once before capturing");
  // Grow by at least half, so that a slowly rising size (prefill chunks) grows a few times only.
  const size_t grown = all.empty() ? bytes : std::max(bytes, all.back().second / 2 * 3);
  all.emplace_back(cuda_->allocator->allocate(grown), grown);
  KUIPER_CUDA_CHECK(cudaMemsetAsync(all.back().first, 0, grown, cuda_->stream));
  return all.back().first;
}

const DeviceContext& DeviceContext::cpu() {
  static const DeviceContext ctx(Device::kCPU);
  return ctx;
}

void cuda_copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
                     const DeviceContext* ctx) {
  cudaMemcpyKind kind = cudaMemcpyDeviceToDevice;
  if (src_device == Device::kCPU) kind = cudaMemcpyHostToDevice;
  if (dst_device == Device::kCPU) kind = src_device == Device::kCPU ? cudaMemcpyHostToHost
                                                                    : cudaMemcpyDeviceToHost;
  cudaStream_t stream = ctx ? static_cast<cudaStream_t>(ctx->cuda_stream()) : nullptr;
  if (stream != nullptr) {
    KUIPER_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, stream));
    // The host side of a copy must be complete when we return: pageable memory may be reused.
    if (kind != cudaMemcpyDeviceToDevice) KUIPER_CUDA_CHECK(cudaStreamSynchronize(stream));
  } else {
    KUIPER_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
  }
}

}  // namespace kuiper
