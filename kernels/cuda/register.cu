// The CUDA backend's table: which kernel serves which (op, dtype).
#include "kernels/cuda/cuda_kernels.h"

namespace kuiper::kernels {
namespace {

// The ops keyed by a storage type: embedding tables and weights, and KV caches (16-bit caches
// halve the cache's memory; keys and values are rounded when stored).
template <class T>
void register_typed(Registry& r) {
  constexpr Device kCUDA = Device::kCUDA;
  constexpr DType t = dtype_of<T>();
  r.embedding.add(kCUDA, t, cuda::embedding<T>);
  r.matmul.add(kCUDA, t, cuda::matmul<T>);
  r.gated_matmul.add(kCUDA, t, cuda::gated_matmul<T>);
  r.matmul_rope_store.add(kCUDA, t, cuda::matmul_rope_store);
  r.rope_store.add(kCUDA, t, cuda::rope_store<T>);
  r.attention.add(kCUDA, t, cuda::attention<T>);
  r.paged_rope_store.add(kCUDA, t, cuda::paged_rope_store<T>);
  r.paged_attention.add(kCUDA, t, cuda::paged_attention<T>);
}

}  // namespace

void register_cuda_kernels(Registry& r) {
  register_typed<float>(r);
  register_typed<f16>(r);
  register_typed<bf16>(r);
  // group-quantized codes, and ggml's blocks
  for (DType t : {DType::kI8, DType::kQ4, DType::kQ8_0, DType::kQ4_0, DType::kQ4_K, DType::kQ6_K}) {
    r.embedding.add(Device::kCUDA, t, cuda::embedding_quantized);
    r.matmul.add(Device::kCUDA, t, cuda::matmul_quantized);
    r.gated_matmul.add(Device::kCUDA, t, cuda::gated_matmul_quantized);
    r.matmul_rope_store.add(Device::kCUDA, t, cuda::matmul_rope_store);
  }
  // fp32 activations only.
  constexpr Device kCUDA = Device::kCUDA;
  r.rmsnorm.add(kCUDA, DType::kF32, cuda::rmsnorm);
  r.swiglu.add(kCUDA, DType::kF32, cuda::swiglu);
  r.add.add(kCUDA, DType::kF32, cuda::add);
  r.softmax.add(kCUDA, DType::kF32, cuda::softmax);
  r.argmax.add(kCUDA, DType::kF32, cuda::argmax);
  r.decode_step.add(kCUDA, DType::kF32, cuda::decode_step);
}

}  // namespace kuiper::kernels
