#pragma once
// Weight storage types of the CUDA kernels: element widths, row addresses, the quantized codes
// (int8, q4) with their scale types, and the input staged as int8 codes that their integer dot
// products take, shared by the GEMV/GEMMs (matmul.cuh) and embedding. ggml's block types
// (ggml_blocks.cuh) build on these.
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
// ggml's self-contained blocks (ggml_blocks.cuh): types with kBlockValues values in kBlockBytes
// bytes, scales inside, read a load (kPerLoad values) at a time through their own load/dot/value.
template <class T>
inline constexpr bool kIsBlocks = requires { T::kBlockBytes; };
template <class T>
inline constexpr bool kIsQuantized = kIsBlocks<T>;
template <class S>
inline constexpr bool kIsQuantized<Int8Codes<S>> = true;
template <class S>
inline constexpr bool kIsQuantized<Q4Codes<S>> = true;
template <class T>
constexpr int weight_bits() {
  if constexpr (kIsQuantized<T>) return T::kBits;
  else return int(8 * sizeof(T));
}
// Weights per 16-byte load (ggml blocks: per load of the type's own, kPerLoad).
template <class T>
constexpr int values_per_load() {
  if constexpr (kIsBlocks<T>) return T::kPerLoad;
  else return 128 / weight_bits<T>();
}
template <class T>
inline constexpr int kPer16 = values_per_load<T>();

// What one load of a row brings: 16 bytes, or a ggml block type's Load.
template <class T, bool = kIsBlocks<T>>
struct LoadOf {
  using type = uint4;
};
template <class T>
struct LoadOf<T, true> {
  using type = typename T::Load;
};

template <class T>
__host__ __device__ __forceinline__ int64_t row_bytes(int in) {
  if constexpr (kIsBlocks<T>) return int64_t(in) / T::kBlockValues * T::kBlockBytes;
  else return int64_t(in) * weight_bits<T>() / 8;
}
template <class T>
__host__ __device__ __forceinline__ const char* weight_row(const void* w, int64_t row, int in) {
  return static_cast<const char*>(w) + row * row_bytes<T>(in);
}
// A row's scales (one per `group` values) for codes with group scales; null for other types.
template <class T>
__host__ __device__ __forceinline__ const void* scale_row_of(const void* scales, int64_t row,
                                                             int in, int group) {
  if constexpr (kIsQuantized<T> && !kIsBlocks<T>)
    return static_cast<const typename T::Scale*>(scales) + row * (in / group);
  else return nullptr;
}

// Weight k of a row (quantized: its code times its group's scale, or a ggml block's value), for
// the scalar kernels, dequantization and embedding.
template <class T>
__device__ __forceinline__ float weight_value(const char* row, const void* scale_row, int64_t k,
                                              int group) {
  if constexpr (kIsBlocks<T>) {
    return T::value(row, k);
  } else if constexpr (kIsQuantized<T>) {
    return dequantized(reinterpret_cast<const typename T::Code*>(row),
                       static_cast<const typename T::Scale*>(scale_row), k, group);
  } else {
    return to_f32(reinterpret_cast<const T*>(row)[k]);
  }
}

template <>
struct DeviceTypeOf<Int8Codes<f16>> {
  using type = Int8Codes<__half>;
};
template <>
struct DeviceTypeOf<Q4Codes<f16>> {
  using type = Q4Codes<__half>;
};

// Runs f(C<S>{}) for weight w with group scales: C is Int8Codes or Q4Codes by its dtype, S its
// scales' type (float or f16). (ggml_blocks.cuh's with_codes takes every quantized storage.)
template <class F>
decltype(auto) with_group_codes(const Weight& w, F&& f) {
  const bool half = w.scales.dtype() == DType::kF16;
  if (w.dtype() == DType::kQ4) return half ? f(Q4Codes<f16>{}) : f(Q4Codes<float>{});
  KUIPER_CHECK(w.dtype() == DType::kI8, "cuda: no kernel for quantized ", dtype_name(w.dtype()));
  return half ? f(Int8Codes<f16>{}) : f(Int8Codes<float>{});
}

// The input of quantized weights in shared memory (stage_codes): per block of 32 values, their
// int8 codes q, the scale (max|x| / 127) and the sum of the codes.
struct StagedCodes {
  const int8_t* q;
  const float* scale;
  const int* sum;
};
__host__ __device__ constexpr size_t staged_codes_bytes(int in) {
  return size_t(in) + size_t(in / 32) * (sizeof(float) + sizeof(int));
}
__device__ __forceinline__ StagedCodes staged_codes(const void* staged, int in) {
  const auto* q = static_cast<const int8_t*>(staged);
  const auto* scale = reinterpret_cast<const float*>(q + in);
  return {q, scale, reinterpret_cast<const int*>(scale + in / 32)};
}

// The integer dot product of 16-byte load i of a row of codes with the staged input: 16 int8
// codes (half an input block), or 32 q4 codes (a whole block, less 8 times the block's sum).
template <class T>
__device__ __forceinline__ int dot_codes(const uint4& w, const StagedCodes& x, int i) {
  const int4* xq = reinterpret_cast<const int4*>(x.q);
  if constexpr (T::kBits == 8) {
    const int4 v = xq[i];
    return __dp4a(int(w.x), v.x, __dp4a(int(w.y), v.y, __dp4a(int(w.z), v.z, __dp4a(int(w.w), v.w, 0))));
  } else {
    const int4 a = xq[2 * i], b = xq[2 * i + 1];
    constexpr uint32_t kLow = 0x0f0f0f0fu;
    int d = __dp4a(int(w.x & kLow), a.x, -8 * x.sum[i]);
    d = __dp4a(int(w.y & kLow), a.y, d);
    d = __dp4a(int(w.z & kLow), a.z, d);
    d = __dp4a(int(w.w & kLow), a.w, d);
    d = __dp4a(int((w.x >> 4) & kLow), b.x, d);
    d = __dp4a(int((w.y >> 4) & kLow), b.y, d);
    d = __dp4a(int((w.z >> 4) & kLow), b.z, d);
    return __dp4a(int((w.w >> 4) & kLow), b.w, d);
  }
}

}  // namespace kuiper::kernels::cuda
