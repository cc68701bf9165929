#include "kernels/cpu/cpu_kernels.h"

namespace kuiper::kernels {

void register_cpu_kernels(Registry& r) {
  using namespace cpu;
  single_threaded_blas();
  constexpr Device kCPU = Device::kCPU;
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kI8, DType::kQ4}) {
    r.embedding.add(kCPU, t, embedding);
    r.matmul.add(kCPU, t, matmul);
    r.gated_matmul.add(kCPU, t, gated_matmul);
  }
  r.paged_rope_store.add(kCPU, DType::kF32, paged_rope_store<float>);
  r.paged_rope_store.add(kCPU, DType::kF16, paged_rope_store<f16>);
  r.paged_rope_store.add(kCPU, DType::kBF16, paged_rope_store<bf16>);
  r.paged_attention.add(kCPU, DType::kF32, paged_attention<float>);
  r.paged_attention.add(kCPU, DType::kF16, paged_attention<f16>);
  r.paged_attention.add(kCPU, DType::kBF16, paged_attention<bf16>);
  r.rmsnorm.add(kCPU, DType::kF32, rmsnorm);
  r.rope_store.add(kCPU, DType::kF32, rope_store);
  r.attention.add(kCPU, DType::kF32, attention);
  r.swiglu.add(kCPU, DType::kF32, swiglu);
  r.add.add(kCPU, DType::kF32, add);
  r.softmax.add(kCPU, DType::kF32, softmax);
  r.argmax.add(kCPU, DType::kF32, argmax);
}

}  // namespace kuiper::kernels
