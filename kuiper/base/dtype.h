#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "kuiper/base/half.h"

namespace kuiper {

// kQ4: 4-bit codes, two a byte (docs/model-format.md, "q4"); a q4 tensor's shape counts codes.
// kQ8_0 .. kQ6_K: ggml's self-contained blocks as GGUF files store them (scales inside each
// block, ggml/src/ggml-common.h); a tensor's shape counts values, a row holds whole blocks.
enum class DType : uint8_t { kF32, kF16, kBF16, kI8, kI32, kQ4, kQ8_0, kQ4_0, kQ4_K, kQ6_K };
inline constexpr int kNumDTypes = 10;

// Storage comes in blocks: `block_values(t)` values in `block_bytes(t)` bytes (one value for the
// plain types, two q4 codes a byte, 32 or 256 values for the ggml blocks).
constexpr int block_values(DType t) {
  switch (t) {
    case DType::kQ4: return 2;
    case DType::kQ8_0:
    case DType::kQ4_0: return 32;
    case DType::kQ4_K:
    case DType::kQ6_K: return 256;
    default: return 1;
  }
}
constexpr int block_bytes(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI8: return 1;
    case DType::kI32: return 4;
    case DType::kQ4: return 1;
    case DType::kQ8_0: return 2 + 32;            // fp16 d, int8 qs[32]
    case DType::kQ4_0: return 2 + 16;            // fp16 d, nibbles qs[16]
    case DType::kQ4_K: return 2 + 2 + 12 + 128;  // fp16 d, dmin, 6-bit scales[12], qs[128]
    case DType::kQ6_K: return 128 + 64 + 16 + 2; // ql[128], qh[64], int8 scales[16], fp16 d
  }
  return 0;
}

// Bits a value takes on average, scales included for the ggml blocks (e.g. 8.5 for kQ8_0).
constexpr double dtype_bits(DType t) { return 8.0 * block_bytes(t) / block_values(t); }

// Bytes of `count` values (a partial block takes a whole one; for q4, an odd count rounds up).
constexpr size_t storage_bytes(DType t, int64_t count) {
  const auto per_block = size_t(block_values(t));
  return (size_t(count) + per_block - 1) / per_block * size_t(block_bytes(t));
}

// ggml's self-contained block types, whose scales are inside the blocks.
constexpr bool is_ggml_block(DType t) {
  return t == DType::kQ8_0 || t == DType::kQ4_0 || t == DType::kQ4_K || t == DType::kQ6_K;
}

// Whether t holds group-quantized codes (int8, q4), which a weight pairs with group scales.
constexpr bool is_quantized(DType t) { return t == DType::kI8 || t == DType::kQ4; }

// Names as the model file and the command line spell them.
constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "fp32";
    case DType::kF16: return "fp16";
    case DType::kBF16: return "bf16";
    case DType::kI8: return "int8";
    case DType::kI32: return "int32";
    case DType::kQ4: return "q4";
    case DType::kQ8_0: return "q8_0";
    case DType::kQ4_0: return "q4_0";
    case DType::kQ4_K: return "q4_k";
    case DType::kQ6_K: return "q6_k";
  }
  return "?";
}

std::optional<DType> dtype_from_name(std::string_view name);

template <class T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::kF32; }
template <> constexpr DType dtype_of<f16>() { return DType::kF16; }
template <> constexpr DType dtype_of<bf16>() { return DType::kBF16; }
template <> constexpr DType dtype_of<int8_t>() { return DType::kI8; }
template <> constexpr DType dtype_of<int32_t>() { return DType::kI32; }

}  // namespace kuiper
