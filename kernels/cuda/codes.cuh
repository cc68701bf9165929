#pragma once
// Weight storage types of the CUDA kernels: element widths, row addresses, and the quantized
// codes (int8, q4) with their scale types, shared by the GEMV/GEMMs (matmul.cuh) and embedding.
#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace kuiper::kernels::cuda {

// The storage of quantized weights as the kernels' weight type: int8 codes (Int8Codes) or q4
// codes in blocks of 32 (Q4Codes, kuiper/tensor/weight.h), with group scales of type S (float or
// __half). The GEMV's dot products (matmul.cuh) are integer ones (dp4a) with the input quantized to int8 per
// block of 32 in shared memory (stage_codes), as llama.cpp's mmvq kernels do: widening codes to
// fp32 in registers made the int8 GEMV instruction-bound at ~1.2 TB/s on an H200.
template <class S>
struct Int8Codes {
  using Scale = S;
  using Code = int8_t;
  static constexpr int kBits = 8;
};
template <class S>
struct Q4Codes {
  using Scale = S;
  using Code = uint8_t;
  static constexpr int kBits = 4;
};
template <class T>
inline constexpr bool kIsQuantized = false;
template <class S>
inline constexpr bool kIsQuantized<Int8Codes<S>> = true;
template <class S>
inline constexpr bool kIsQuantized<Q4Codes<S>> = true;
template <class T>
constexpr int weight_bits() {
  if constexpr (kIsQuantized<T>) return T::kBits;
  else return int(8 * sizeof(T));
}
// Weights per 16-byte load.
template <class T>
inline constexpr int kPer16 = 128 / weight_bits<T>();

template <class T>
__host__ __device__ __forceinline__ const char* weight_row(const void* w, int64_t row, int in) {
  return static_cast<const char*>(w) + row * (int64_t(in) * weight_bits<T>() / 8);
}

template <>
struct DeviceTypeOf<Int8Codes<f16>> {
  using type = Int8Codes<__half>;
};
template <>
struct DeviceTypeOf<Q4Codes<f16>> {
  using type = Q4Codes<__half>;
};

// Runs f(C<S>{}) for quantized weight w: C is Int8Codes or Q4Codes by its dtype, S its scales'
// type (float or f16).
template <class F>
decltype(auto) with_codes(const Weight& w, F&& f) {
  const bool half = w.scales.dtype() == DType::kF16;
  if (w.dtype() == DType::kQ4) return half ? f(Q4Codes<f16>{}) : f(Q4Codes<float>{});
  KUIPER_CHECK(w.dtype() == DType::kI8, "cuda: no kernel for quantized ", dtype_name(w.dtype()));
  return half ? f(Int8Codes<f16>{}) : f(Int8Codes<float>{});
}

}  // namespace kuiper::kernels::cuda
