#pragma once
// Helpers of the CUDA tests: skip without a GPU, one shared context, tensors between the CPU and
// the GPU, poisoned outputs, and the CPU kernels the CUDA ones are compared with.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "kernels/kernels.h"
#include "kuiper/base/cuda/check.h"
#include "kuiper/base/device_context.h"
#include "test/test_util.h"

// Every CUDA test starts with this: CI builds the tests with nvcc but has no GPU.
#define KUIPER_REQUIRE_CUDA()                                                          \
  do {                                                                                 \
    if (::kuiper::cuda_device_count() == 0)                                            \
      GTEST_SKIP() << "no CUDA device (cuda_device_count() == 0): CUDA test skipped";  \
  } while (0)

namespace kuiper::test {

// One CUDA context for the whole test binary.
inline const DeviceContext& cuda_ctx() {
  static const DeviceContext ctx(Device::kCUDA);
  return ctx;
}

inline const DeviceContext& cpu_ctx() { return DeviceContext::cpu(); }

inline Tensor to_cuda(const Tensor& t) { return t.to(Device::kCUDA, &cuda_ctx()); }
inline Weight to_cuda(const Weight& w) {
  return {to_cuda(w.values), w.quantized() ? to_cuda(w.scales) : Tensor()};
}
inline Tensor to_cpu(const Tensor& t) {
  Tensor host = t.to(Device::kCPU, &cuda_ctx());  // synchronizes the stream
  cuda_ctx().synchronize();                        // and surfaces kernel faults here
  return host;
}

// A CUDA tensor whose every byte is 0xff: NaN in fp32/fp16/bf16 (-1 in int32), so an element a
// kernel forgets to write shows up in the comparison.
inline Tensor poisoned_cuda(DType dtype, Shape shape) {
  Tensor t(dtype, shape, Device::kCUDA);
  KUIPER_CUDA_CHECK(cudaMemsetAsync(t.raw_data(), 0xff, t.bytes(),
                                    static_cast<cudaStream_t>(cuda_ctx().cuda_stream())));
  return t;
}

// A CPU tensor of uniform random values in [lo, hi).
inline Tensor random_cpu(DType dtype, Shape shape, std::mt19937& rng, float lo = -1.f,
                         float hi = 1.f) {
  Tensor t(dtype, shape);
  fill_uniform(t, rng, lo, hi);
  return t;
}

// A CPU int32 tensor of the given values.
inline Tensor ints_cpu(const std::vector<int32_t>& values) {
  Tensor t(DType::kI32, {int64_t(values.size())});
  std::copy(values.begin(), values.end(), t.span<int32_t>().begin());
  return t;
}

// The same elements widened to fp32 (CPU).
inline Tensor widened(const Tensor& t) {
  Tensor out(DType::kF32, t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) out.span<float>()[i] = element(t, i);
  return out;
}

inline const kernels::Registry& kernel_registry() { return kernels::registry(); }

// max_rel_diff(a, b) relative to the larger of |b| and the root mean square of b (at least 1):
// for products whose values near zero carry the rounding of much larger terms.
inline float scaled_diff(const Tensor& a, const Tensor& b) {
  double ss = 0;
  for (int64_t i = 0; i < b.numel(); ++i) ss += double(element(b, i)) * element(b, i);
  const double rms = b.numel() > 0 ? std::sqrt(ss / double(b.numel())) : 0.0;
  return max_rel_diff(a, b, float(std::max(1.0, rms)));
}

// What GEMMs over 16-bit (or dequantized fp16) weights, n > 1, may differ by in scaled_diff: the
// input is rounded to the weights' type (2^-11 or 2^-8 relative, matmul.cu) and tensor cores
// accumulate less exactly than IEEE fp32 (~2e-4 seen).
inline float gemm16_tolerance(DType weights) { return weights == DType::kBF16 ? 1e-2f : 2e-3f; }

using kernels::MatmulInput;
using kernels::MatmulOutput;
// A projection's input as it is (no norm).
inline MatmulInput plain(const Tensor& x) { return {x, Tensor(), 0.f}; }

}  // namespace kuiper::test
