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

// The input quantized once by the kernel that wrote it (MatmulInput::codes, kernels.h): int8
// codes in blocks of kInputCodeBlock (8) values, one fp32 scale a block, then each block's sum
// of x^2 (input_code_sums: the reader's rms norm adds them up), read from global
// memory (L1) by each lane for its own loads: no staging, no barrier. XCodes<T> is what one
// 16-byte load of T's codes pairs with: 16 codes and 2 scales (int8), 32 codes and 4 (q4).
template <class T>
struct XCodes {
  static constexpr int kBlocks = kPer16<T> / 8;
  int4 q[kBlocks / 2];
  float s[kBlocks];
};
__host__ __device__ inline const float* input_code_scales(const int8_t* codes, int in) {
  return reinterpret_cast<const float*>(codes + in);
}
__host__ __device__ inline float* input_code_scales(int8_t* codes, int in) {
  return reinterpret_cast<float*>(codes + in);
}
template <class C>
__host__ __device__ inline auto input_code_sums(C* codes, int in) {
  return input_code_scales(codes, in) + in / kInputCodeBlock;
}
// Lane t of a warp quantizes `value` times `norm` (the reader's norm weight, or 1), row `row`
// of an output, into the codes of that output (MatmulInput::codes) where `valid`: lanes
// 8b..8b+7 hold one block of 8 consecutive rows, the first a multiple of 8. The codes are those
// of stage_codes (nearest of v * (127 / max|v|)); the block's sum of value^2 goes beside them.
// Every lane of the warp takes part (shuffles).
__device__ __forceinline__ void write_input_code(float value, float norm, int row, bool valid,
                                                 int in, int8_t* codes) {
  const float v = valid ? value * norm : 0.f;
  float max = fabsf(v), ss = valid ? value * value : 0.f;
#pragma unroll
  for (int d = 1; d < kInputCodeBlock; d *= 2) {
    max = fmaxf(max, __shfl_xor_sync(0xffffffffu, max, d));
    ss += __shfl_xor_sync(0xffffffffu, ss, d);
  }
  if (!valid) return;
  const float inverse = max > 0.f ? 127.f / max : 0.f;
  codes[row] = int8_t(__float2int_rn(v * inverse));
  if (row % kInputCodeBlock == 0) {
    input_code_scales(codes, in)[row / kInputCodeBlock] = max / 127.f;
    input_code_sums(codes, in)[row / kInputCodeBlock] = ss;
  }
}

// y's codes (MatmulInput::codes) written after the kernel that wrote y, where that kernel could
// not (the scalar GEMV, chunks of rows that are not whole blocks of 8, attention's split
// kernel). n % 8 == 0.
template <int = 0>
__global__ void input_codes_kernel(const float* __restrict__ y, const float* __restrict__ norm,
                                   int n, int8_t* __restrict__ codes) {
  grid_dependency_wait();
  allow_dependent_launch();
  const int base = int(blockIdx.x) * int(blockDim.x), i = base + int(threadIdx.x);
  if (base >= n) return;  // whole warps: n % 32 need not hold, the warp's lanes past n are idle
  write_input_code(i < n ? y[i] : 0.f, i < n && norm != nullptr ? norm[i] : 1.f, i, i < n, n,
                   codes);
}

// y's codes after the kernel that wrote y (input_codes_kernel), on `stream`.
inline void launch_input_codes(const float* y, const float* norm, int n, int8_t* codes,
                               cudaStream_t stream) {
  constexpr int kThreads = 256;
  launch(input_codes_kernel<>, blocks_for(n, kThreads), kThreads, 0, stream, y, norm, n, codes);
}

// Checks the int8 codes of an input of `in` values (MatmulInput::codes); defined in matmul.cu.
void check_input_codes(const char* op, const char* what, const Tensor& codes, int64_t in);

template <class T>
__device__ __forceinline__ XCodes<T> load_x_codes(const int8_t* codes, const float* scales, int i) {
  XCodes<T> x;
  const int4* q = reinterpret_cast<const int4*>(codes);
  if constexpr (XCodes<T>::kBlocks == 2) {
    x.q[0] = __ldg(q + i);
    const float2 s = __ldg(reinterpret_cast<const float2*>(scales) + i);
    x.s[0] = s.x;
    x.s[1] = s.y;
  } else {
    x.q[0] = __ldg(q + 2 * i);
    x.q[1] = __ldg(q + 2 * i + 1);
    const float4 s = __ldg(reinterpret_cast<const float4*>(scales) + i);
    x.s[0] = s.x;
    x.s[1] = s.y;
    x.s[2] = s.z;
    x.s[3] = s.w;
  }
  return x;
}

// The dot product of load i of a row of codes with those input codes, in units of the weights'
// group scale: each block of 8 an integer dot product times its scale. q4's codes are offset by
// 8 (code - 8 is the weight): the block's sum of input codes, times -8, starts its dot product.
template <class T>
__device__ __forceinline__ float dot_x_codes(const uint4& w, const XCodes<T>& x) {
  if constexpr (T::kBits == 8) {
    const int d0 = __dp4a(int(w.x), x.q[0].x, __dp4a(int(w.y), x.q[0].y, 0));
    const int d1 = __dp4a(int(w.z), x.q[0].z, __dp4a(int(w.w), x.q[0].w, 0));
    return fmaf(float(d0), x.s[0], float(d1) * x.s[1]);
  } else {
    constexpr uint32_t kLow = 0x0f0f0f0fu;
    constexpr int kMinus8 = int(0xf8f8f8f8u);  // -8 in every byte
    // Values 0-15 of the block are the low nibbles (x.q[0]), 16-31 the high ones (x.q[1]).
    auto block = [&](uint32_t w0, uint32_t w1, int a0, int a1) {
      const int offset = __dp4a(a0, kMinus8, __dp4a(a1, kMinus8, 0));
      return float(__dp4a(int(w0), a0, __dp4a(int(w1), a1, offset)));
    };
    float d = block(w.x & kLow, w.y & kLow, x.q[0].x, x.q[0].y) * x.s[0];
    d = fmaf(block(w.z & kLow, w.w & kLow, x.q[0].z, x.q[0].w), x.s[1], d);
    d = fmaf(block((w.x >> 4) & kLow, (w.y >> 4) & kLow, x.q[1].x, x.q[1].y), x.s[2], d);
    return fmaf(block((w.z >> 4) & kLow, (w.w >> 4) & kLow, x.q[1].z, x.q[1].w), x.s[3], d);
  }
}

}  // namespace kuiper::kernels::cuda
