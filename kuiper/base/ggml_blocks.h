#pragma once
// ggml's self-contained quantized blocks as GGUF files store them (the layouts of
// ggml/src/ggml-common.h): a row of such a weight is whole blocks, each block carrying its own
// scales. Plain structs of bytes (2-byte aligned), so a file's tensor can be read in place.
#include <cstdint>

#include "kuiper/base/dtype.h"
#include "kuiper/base/half.h"

namespace kuiper {

// 32 values: d * qs[j].
struct BlockQ8_0 {
  f16 d;
  int8_t qs[32];
};

// 32 values: d * (u - 8), byte j holding value j in its low nibble and value j + 16 in its high one.
struct BlockQ4_0 {
  f16 d;
  uint8_t qs[16];
};

// 256 values in 8 sub-blocks of 32: value l of sub-block j is d * scale_j * u - dmin * min_j, with
// u the low nibble of qs[32 (j / 2) + l] for even j and the high one for odd j; the 6-bit
// scales and minimums are packed in `scales` (q4k_scales_mins).
struct BlockQ4_K {
  f16 d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};

// 256 values: value v is d * scales[v / 16] * (q - 32) with q 6 bits: in half h = v / 128 and
// quarter t = v % 128 / 32, at l = v % 32, the low 4 bits are ql[64 h + 32 (t % 2) + l] (low
// nibble for t < 2, high for t >= 2) and the high 2 bits are bits 2t, 2t + 1 of qh[32 h + l].
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  f16 d;
};

static_assert(sizeof(BlockQ8_0) == block_bytes(DType::kQ8_0));
static_assert(sizeof(BlockQ4_0) == block_bytes(DType::kQ4_0));
static_assert(sizeof(BlockQ4_K) == block_bytes(DType::kQ4_K));
static_assert(sizeof(BlockQ6_K) == block_bytes(DType::kQ6_K));

// The 8 6-bit scales and the 8 minimums of a Q4_K block, a byte each, from its 12 packed bytes
// read as three little-endian words w[0..2]: sub-blocks 0-3 keep the low 6 bits of bytes 0-3
// (scales) and 4-7 (minimums); sub-blocks 4-7 take their low 4 bits from the nibbles of bytes
// 8-11 and their top 2 from the spare bits 6-7 of bytes 0-3 (scales) and 4-7 (minimums).
// Whole words at a time, so CPU and GPU code alike decode all 16 in a few operations.
struct Q4KScalesMins {
  uint32_t scales[2], mins[2];  // bytes: sub-blocks 0-3, then 4-7
};
constexpr Q4KScalesMins q4k_scales_mins(uint32_t w0, uint32_t w1, uint32_t w2) {
  constexpr uint32_t kLow6 = 0x3f3f3f3fu, kLow4 = 0x0f0f0f0fu, kTop2 = 0x03030303u;
  return {{w0 & kLow6, (w2 & kLow4) | (((w0 >> 6) & kTop2) << 4)},
          {w1 & kLow6, ((w2 >> 4) & kLow4) | (((w1 >> 6) & kTop2) << 4)}};
}

}  // namespace kuiper
