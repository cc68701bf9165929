#pragma once
// ggml's block types (kuiper/base/ggml_blocks.h) as weight types of the CUDA kernels. Each reads
// a row one "load" of kPerLoad values at a time, which the GEMV (matmul.cuh) spreads over the
// lanes of a warp as it does 16-byte loads of int8/q4 codes:
//   Load load(row, i)                 the bytes load i needs: codes and the scales they take
//   float dot(load, x, i)             its dot product with the input staged as int8 codes
//                                     (stage_codes, per 32-value block), scales applied
//   float value(row, k)               value k of the row (scalar kernels, dequantization, embedding)
// Q8_0 and Q4_0 take the integer products of our int8 and q4 codes (dot_codes) with the block's
// own scale. Q4_K and Q6_K loads cover 16 values of each of two 32-value sub-blocks, so that a
// load is 16 bytes of 4-bit codes (plus Q6_K's 16 bytes of high bits), like the others.
// Q4_K blocks (144 bytes) keep 16-byte loads aligned in rows of 16-byte aligned matrices; Q8_0,
// Q4_0 and Q6_K blocks (34, 18 and 210 bytes) are 2-byte aligned only, so their codes are read
// as 16-bit words through L1 (each sector then serves the 8 loads of a lane).
#include "kernels/cuda/codes.cuh"
#include "kuiper/base/ggml_blocks.h"

namespace kuiper::kernels::cuda {

__device__ __forceinline__ float half_at(const char* p) {
  return __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short*>(p))));
}
// 16 bytes at a 2-byte aligned address.
__device__ __forceinline__ uint4 load_2aligned16(const char* p) {
  const auto* h = reinterpret_cast<const unsigned short*>(p);
  uint32_t w[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) w[k] = uint32_t(__ldg(h + 2 * k)) | uint32_t(__ldg(h + 2 * k + 1)) << 16;
  return {w[0], w[1], w[2], w[3]};
}

// Q8_0: load i is half a block (16 codes).
struct Q8_0Blocks {
  static constexpr int kBlockValues = 32, kBlockBytes = sizeof(BlockQ8_0), kPerLoad = 16;
  static constexpr int kAlign = 2;
  struct Load {
    uint4 q;
    float d;
  };
  __device__ static Load load(const char* row, int i) {
    const char* b = row + (i >> 1) * kBlockBytes;
    return {load_2aligned16(b + 2 + 16 * (i & 1)), half_at(b)};
  }
  __device__ static float dot(const Load& w, const StagedCodes& x, int i) {
    return float(dot_codes<Int8Codes<float>>(w.q, x, i)) * x.scale[i >> 1] * w.d;
  }
  __device__ static float value(const char* row, int64_t k) {
    const char* b = row + (k >> 5) * kBlockBytes;
    return half_at(b) * float(int8_t(b[2 + (k & 31)]));
  }
};

// Q4_0: load i is a block (32 nibbles).
struct Q4_0Blocks {
  static constexpr int kBlockValues = 32, kBlockBytes = sizeof(BlockQ4_0), kPerLoad = 32;
  static constexpr int kAlign = 2;
  struct Load {
    uint4 q;
    float d;
  };
  __device__ static Load load(const char* row, int i) {
    const char* b = row + int64_t(i) * kBlockBytes;
    return {load_2aligned16(b + 2), half_at(b)};
  }
  __device__ static float dot(const Load& w, const StagedCodes& x, int i) {
    return float(dot_codes<Q4Codes<float>>(w.q, x, i)) * x.scale[i] * w.d;
  }
  __device__ static float value(const char* row, int64_t k) {
    const char* b = row + (k >> 5) * kBlockBytes;
    const auto byte = uint8_t(b[2 + (k & 15)]);
    return half_at(b) * float(int((k & 31) < 16 ? byte & 15 : byte >> 4) - 8);
  }
};

// Byte j (0..3) of a word.
__device__ __forceinline__ int byte_of(uint32_t word, int j) { return int((word >> (8 * j)) & 0xffu); }

// Sum of 4 int8 products per word: w . x over 16 codes.
__device__ __forceinline__ int dot16(const uint32_t (&w)[4], const int4& x) {
  return __dp4a(int(w[0]), x.x, __dp4a(int(w[1]), x.y, __dp4a(int(w[2]), x.z, __dp4a(int(w[3]), x.w, 0))));
}

// Q4_K: 8 loads a super-block; load j = 2p + h is bytes 16h .. 16h + 15 of the 32 code bytes of
// sub-blocks 2p (low nibbles) and 2p + 1 (high nibbles), with the 16-byte head (d, dmin, packed
// scales) that all 8 share.
struct Q4KBlocks {
  static constexpr int kBlockValues = 256, kBlockBytes = sizeof(BlockQ4_K), kPerLoad = 32;
  static constexpr int kAlign = 16;
  struct Load {
    uint4 head, q;
  };
  __device__ static Load load(const char* row, int i) {
    const char* b = row + int64_t(i >> 3) * kBlockBytes;
    return {load_stream16(b), load_stream16(b + 16 + 16 * (i & 7))};
  }
  __device__ static float dot(const Load& w, const StagedCodes& x, int i) {
    const int p = (i & 7) >> 1, h = i & 1;
    const int block = 8 * (i >> 3) + 2 * p;  // the input block of sub-block 2p
    const float2 dm = __half22float2(*reinterpret_cast<const __half2*>(&w.head.x));
    const Q4KScalesMins sm = q4k_scales_mins(w.head.y, w.head.z, w.head.w);
    const uint32_t scales = p < 2 ? sm.scales[0] : sm.scales[1];
    const uint32_t mins = p < 2 ? sm.mins[0] : sm.mins[1];
    const int at = 2 * (p & 1);  // byte of sub-block 2p in those words
    constexpr uint32_t kLow = 0x0f0f0f0fu;
    const uint32_t low[4] = {w.q.x & kLow, w.q.y & kLow, w.q.z & kLow, w.q.w & kLow};
    const uint32_t high[4] = {(w.q.x >> 4) & kLow, (w.q.y >> 4) & kLow, (w.q.z >> 4) & kLow,
                              (w.q.w >> 4) & kLow};
    const int4* xq = reinterpret_cast<const int4*>(x.q);
    const float s0 = x.scale[block], s1 = x.scale[block + 1];
    float r = dm.x * (float(byte_of(scales, at) * dot16(low, xq[2 * block + h])) * s0 +
                      float(byte_of(scales, at + 1) * dot16(high, xq[2 * block + 2 + h])) * s1);
    // The minimums times the sums of whole input blocks, once per pair of sub-blocks.
    if (h == 0)
      r -= dm.y * (float(byte_of(mins, at) * x.sum[block]) * s0 +
                   float(byte_of(mins, at + 1) * x.sum[block + 1]) * s1);
    return r;
  }
  __device__ static float value(const char* row, int64_t k) {
    const auto* b = reinterpret_cast<const uint8_t*>(row + (k >> 8) * kBlockBytes);
    uint32_t words[3];
#pragma unroll
    for (int j = 0; j < 3; ++j)
      words[j] = b[4 + 4 * j] | b[5 + 4 * j] << 8 | b[6 + 4 * j] << 16 | uint32_t(b[7 + 4 * j]) << 24;
    const Q4KScalesMins sm = q4k_scales_mins(words[0], words[1], words[2]);
    const int sub = int(k >> 5) & 7, l = int(k & 31);
    const uint8_t byte = b[16 + 32 * (sub >> 1) + l];
    const int u = sub & 1 ? byte >> 4 : byte & 15;
    return half_at(reinterpret_cast<const char*>(b)) * float(byte_of(sm.scales[sub >> 2], sub & 3) * u) -
           half_at(reinterpret_cast<const char*>(b) + 2) * float(byte_of(sm.mins[sub >> 2], sub & 3));
  }
};

// Q6_K: 8 loads a super-block; load j = 4n + 2t + h takes bytes 16h .. 16h + 15 of the 32 low-bit
// bytes ql[64n + 32t ..] (low nibbles: 32-value block 4n + t, high nibbles: block 4n + t + 2) and
// of the high-bit bytes qh[32n ..] (bits 2t and 2t + 4 for those blocks), with the two blocks'
// sub-scales of that half and d.
struct Q6KBlocks {
  static constexpr int kBlockValues = 256, kBlockBytes = sizeof(BlockQ6_K), kPerLoad = 32;
  static constexpr int kAlign = 2;
  struct Load {
    uint4 low, high;
    int scale0, scale1;
    float d;
  };
  __device__ static Load load(const char* row, int i) {
    const char* b = row + int64_t(i >> 3) * kBlockBytes;
    const int n = (i & 7) >> 2, t = (i >> 1) & 1, h = i & 1;
    const int block = 4 * n + t;
    return {load_2aligned16(b + 64 * n + 32 * t + 16 * h), load_2aligned16(b + 128 + 32 * n + 16 * h),
            int(int8_t(__ldg(b + 192 + 2 * block + h))), int(int8_t(__ldg(b + 196 + 2 * block + h))),
            half_at(b + 208)};
  }
  __device__ static float dot(const Load& w, const StagedCodes& x, int i) {
    const int n = (i & 7) >> 2, t = (i >> 1) & 1, h = i & 1;
    const int block = 8 * (i >> 3) + 4 * n + t;  // input blocks `block` and block + 2
    const uint32_t lows[4] = {w.low.x, w.low.y, w.low.z, w.low.w};
    const uint32_t highs[4] = {w.high.x, w.high.y, w.high.z, w.high.w};
    uint32_t first[4], second[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      constexpr uint32_t kLow = 0x0f0f0f0fu, kTop = 0x03030303u, k32 = 0x20202020u;
      // 6-bit codes less 32, per byte (wrapping: int8 in [-32, 31]).
      first[k] = __vsub4((lows[k] & kLow) | ((highs[k] >> (2 * t)) & kTop) << 4, k32);
      second[k] = __vsub4(((lows[k] >> 4) & kLow) | ((highs[k] >> (2 * t + 4)) & kTop) << 4, k32);
    }
    const int4* xq = reinterpret_cast<const int4*>(x.q);
    return w.d * (float(w.scale0 * dot16(first, xq[2 * block + h])) * x.scale[block] +
                  float(w.scale1 * dot16(second, xq[2 * block + 4 + h])) * x.scale[block + 2]);
  }
  __device__ static float value(const char* row, int64_t k) {
    const auto* b = reinterpret_cast<const uint8_t*>(row + (k >> 8) * kBlockBytes);
    const int v = int(k & 255), n = v >> 7, quarter = (v >> 5) & 3, l = v & 31;
    const uint8_t low = b[64 * n + 32 * (quarter & 1) + l], high = b[128 + 32 * n + l];
    const int q = ((quarter >= 2 ? low >> 4 : low) & 15) | ((high >> (2 * quarter)) & 3) << 4;
    return half_at(reinterpret_cast<const char*>(b) + 208) * float(int8_t(b[192 + (v >> 4)])) *
           float(q - 32);
  }
};

// Runs f(C{}) for quantized weight w: its ggml block type, or (int8, q4) its codes with their
// scale type (with_group_codes).
template <class F>
decltype(auto) with_codes(const Weight& w, F&& f) {
  switch (w.dtype()) {
    case DType::kQ8_0: return f(Q8_0Blocks{});
    case DType::kQ4_0: return f(Q4_0Blocks{});
    case DType::kQ4_K: return f(Q4KBlocks{});
    case DType::kQ6_K: return f(Q6KBlocks{});
    default: return with_group_codes(w, std::forward<F>(f));
  }
}

}  // namespace kuiper::kernels::cuda
