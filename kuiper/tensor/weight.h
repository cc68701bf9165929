#pragma once
#include <cstdint>

#include "kuiper/tensor/tensor.h"

namespace kuiper {

// Values in a block of q4 codes: 16 bytes, byte j holding value j in its low nibble and value
// j + 16 in its high one (llama.cpp's Q4_0 order), each code u standing for u - 8.
inline constexpr int64_t kQ4Block = 32;

// A weight matrix [rows, cols] as the kernels read it. Float weights (fp32, fp16, bf16) are
// `values` alone. Group-quantized weights hold integer codes in `values` (int8, or q4 packed in
// blocks of kQ4Block, [rows, cols] codes either way) and one scale per `group` consecutive values
// of a row in `scales` ([rows, cols / group], fp32 or fp16): w[r, c] = code(r, c) *
// scales[r, c / group]. Group size and scale type are read off the tensors, so one kernel serves
// every (group, scale dtype) pair. ggml's block types (q8_0, q4_0, q4_k, q6_k: kuiper/base/
// ggml_blocks.h) are `values` alone too, [rows, cols] counting values, each row whole blocks
// that carry their own scales. The registries are keyed by the values' dtype. Converts
// implicitly from a float Tensor.
struct Weight {
  Tensor values;
  Tensor scales;  // empty for float weights

  Weight() = default;
  Weight(Tensor v) : values(std::move(v)) {}  // NOLINT: a float matrix is a Weight
  Weight(Tensor v, Tensor s) : values(std::move(v)), scales(std::move(s)) {}

  bool empty() const { return values.empty(); }
  // Whether the codes come with a separate scales tensor (int8, q4; not ggml's blocks).
  bool quantized() const { return !scales.empty(); }
  DType dtype() const { return values.dtype(); }
  int64_t rows() const { return values.dim(0); }
  int64_t cols() const { return values.dim(1); }
  // Values per scale; 0 for float weights.
  int64_t group() const { return quantized() ? cols() / scales.dim(1) : 0; }
  size_t bytes() const { return values.bytes() + (quantized() ? scales.bytes() : 0); }
  // Bytes of row r's values and its scales (what one row of a GEMV reads).
  size_t row_bytes() const { return bytes() / size_t(rows()); }
  std::string describe() const;
};

// Whether one kernel call can take both: the same dtype and, when quantized, the same group size
// and scale dtype.
bool same_storage(const Weight& a, const Weight& b);

// Rows [begin, end) of w, sharing its memory (a tensor-parallel rank's output rows).
Weight row_slice(const Weight& w, int64_t begin, int64_t end);
// Columns [begin, end) of a CPU weight, copied into memory of their own (a tensor-parallel rank's
// input columns; all of them: w itself). Quantized weights split at whole groups and blocks
// only; throws otherwise.
Weight column_slice(const Weight& w, int64_t begin, int64_t end);

// Throws unless w is 2-d and, when quantized, its scales are [rows, cols / group] of fp32 or fp16
// with a group that divides the rows exactly; rows of ggml blocks must be whole blocks.
void check_weight(const Weight& w, std::string_view what);

}  // namespace kuiper
