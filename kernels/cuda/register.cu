// The CUDA backend's table: which kernel serves which (op, dtype).
#include "kernels/cuda/cuda_kernels.h"

namespace kuiper::kernels {

void register_cuda_kernels(Registry& r) {
  using namespace cuda;
  constexpr Device kCUDA = Device::kCUDA;
  r.embedding.add(kCUDA, DType::kF32, embedding<float>);
  r.embedding.add(kCUDA, DType::kF16, embedding<f16>);
  r.embedding.add(kCUDA, DType::kBF16, embedding<bf16>);
  r.matmul.add(kCUDA, DType::kF32, matmul<float>);
  r.matmul.add(kCUDA, DType::kF16, matmul<f16>);
  r.matmul.add(kCUDA, DType::kBF16, matmul<bf16>);
  // KV caches: fp32, and 16-bit caches for half the memory (keys/values rounded on store).
  r.scatter_rows.add(kCUDA, DType::kF32, scatter_rows<float>);
  r.scatter_rows.add(kCUDA, DType::kF16, scatter_rows<f16>);
  r.scatter_rows.add(kCUDA, DType::kBF16, scatter_rows<bf16>);
  r.attention.add(kCUDA, DType::kF32, attention<float>);
  r.attention.add(kCUDA, DType::kF16, attention<f16>);
  r.attention.add(kCUDA, DType::kBF16, attention<bf16>);
  r.rmsnorm.add(kCUDA, DType::kF32, rmsnorm);
  r.rope.add(kCUDA, DType::kF32, rope);
  r.swiglu.add(kCUDA, DType::kF32, swiglu);
  r.add.add(kCUDA, DType::kF32, add);
  r.softmax.add(kCUDA, DType::kF32, softmax);
  r.argmax.add(kCUDA, DType::kF32, argmax);
}

}  // namespace kuiper::kernels
