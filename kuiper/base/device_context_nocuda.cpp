// The CPU-only build's half of device.h and device_context.h; device_context_cuda.cpp replaces
// it when the CUDA backend is compiled in.
#include "kuiper/base/device_context.h"
#include "kuiper/base/error.h"

namespace kuiper {

bool cuda_compiled() { return false; }
int cuda_device_count() { return 0; }
void require_cuda() {
  fail("this build of kuiper has no CUDA backend (configure with -DKUIPER_CUDA=ON on a machine "
       "with the CUDA toolkit)");
}

void bind_thread_to_cuda_device(int) { require_cuda(); }

struct DeviceContext::CudaState {};

DeviceContext::DeviceContext(Device device) : device_(device) {
  if (device == Device::kCUDA) require_cuda();
}
DeviceContext::~DeviceContext() = default;
void* DeviceContext::cuda_stream() const { return nullptr; }
void* DeviceContext::cublas_handle() const { return nullptr; }
void DeviceContext::synchronize() const {}

const DeviceContext& DeviceContext::cpu() {
  static const DeviceContext ctx(Device::kCPU);
  return ctx;
}

}  // namespace kuiper
