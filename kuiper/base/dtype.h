#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "kuiper/base/half.h"

namespace kuiper {

// kQ4: 4-bit codes, two a byte (docs/model-format.md, "q4"); a q4 tensor's shape counts codes.
enum class DType : uint8_t { kF32, kF16, kBF16, kI8, kI32, kQ4 };
inline constexpr int kNumDTypes = 6;

constexpr int dtype_bits(DType t) {
  switch (t) {
    case DType::kF32: return 32;
    case DType::kF16: return 16;
    case DType::kBF16: return 16;
    case DType::kI8: return 8;
    case DType::kI32: return 32;
    case DType::kQ4: return 4;
  }
  return 0;
}

// Bytes of `count` elements (a q4 element is half a byte; an odd count rounds up).
constexpr size_t storage_bytes(DType t, int64_t count) {
  return (size_t(count) * size_t(dtype_bits(t)) + 7) / 8;
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
