#include "kuiper/tensor/weight.h"

#include <cstring>
#include <numeric>

namespace kuiper {

std::string Weight::describe() const {
  if (!quantized()) return values.describe();
  return values.describe() + " in groups of " + std::to_string(group()) + " with " +
         std::string(dtype_name(scales.dtype())) + " scales";
}

bool same_storage(const Weight& a, const Weight& b) {
  return a.dtype() == b.dtype() && a.group() == b.group() &&
         (!a.quantized() || a.scales.dtype() == b.scales.dtype());
}

void check_weight(const Weight& w, std::string_view what) {
  KUIPER_CHECK(!w.empty() && w.values.ndim() == 2, what, ": expected a 2-d weight, got ",
               w.empty() ? std::string("nothing") : w.values.describe());
  if (is_ggml_block(w.dtype())) {
    KUIPER_CHECK(!w.quantized(), what, ": ", w.values.describe(),
                 " holds its scales in its blocks, but scales were given too");
    KUIPER_CHECK(w.cols() % block_values(w.dtype()) == 0, what, ": ", w.values.describe(),
                 " has rows of ", w.cols(), " values, not whole blocks of ",
                 block_values(w.dtype()));
    return;
  }
  if (!w.quantized()) {
    KUIPER_CHECK(w.dtype() == DType::kF32 || w.dtype() == DType::kF16 || w.dtype() == DType::kBF16,
                 what, ": ", w.values.describe(),
                 " has no scales, so it must be fp32, fp16, bf16 or one of ggml's block types");
    return;
  }
  const Tensor& s = w.scales;
  KUIPER_CHECK(is_quantized(w.dtype()), what, ": scales given for ", w.values.describe());
  KUIPER_CHECK(s.ndim() == 2 && s.dim(0) == w.rows() && s.dim(1) > 0 &&
                   w.cols() % s.dim(1) == 0 && s.device() == w.values.device(),
               what, ": scales ", s.describe(), " do not fit the values ", w.values.describe(),
               " (expected [rows, cols / group] on the same device)");
  KUIPER_CHECK(s.dtype() == DType::kF32 || s.dtype() == DType::kF16, what, ": scales of ",
               dtype_name(s.dtype()), " (expected fp32 or fp16)");
  // q4 codes are packed in blocks of 32 (llama.cpp's Q4_0 nibble order), which groups must tile.
  KUIPER_CHECK(w.dtype() != DType::kQ4 || w.group() % kQ4Block == 0, what, ": q4 groups of ",
               w.group(), " (expected a multiple of ", kQ4Block, ")");
}

Weight row_slice(const Weight& w, int64_t begin, int64_t end) {
  KUIPER_CHECK(begin >= 0 && begin < end && end <= w.rows(), "rows [", begin, ", ", end, ") of ",
               w.describe());
  return {w.values.rows(begin, end), w.quantized() ? w.scales.rows(begin, end) : Tensor{}};
}

namespace {
// Columns [begin, end) of every row of a CPU tensor, `cols` values a row, as a new tensor.
Tensor copy_columns(const Tensor& t, int64_t cols, int64_t begin, int64_t end) {
  const DType dt = t.dtype();
  const int64_t rows = t.dim(0);
  const size_t row_bytes = storage_bytes(dt, cols), skip = storage_bytes(dt, begin),
               take = storage_bytes(dt, end - begin);
  Tensor out(dt, {rows, end - begin});
  const auto* src = static_cast<const std::byte*>(t.raw_data());
  auto* dst = static_cast<std::byte*>(out.raw_data());
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + size_t(r) * take, src + size_t(r) * row_bytes + skip, take);
  return out;
}
}  // namespace

Weight column_slice(const Weight& w, int64_t begin, int64_t end) {
  KUIPER_CHECK(w.values.device() == Device::kCPU, "column_slice of ", w.describe(),
               ": weights are split on the CPU, before they are placed");
  KUIPER_CHECK(begin >= 0 && begin < end && end <= w.cols(), "columns [", begin, ", ", end,
               ") of ", w.describe());
  if (begin == 0 && end == w.cols()) return w;  // one rank: the whole matrix, not a copy
  // The smallest unit a row splits at: a block of storage, and a group of one scale.
  int64_t unit = block_values(w.dtype());
  if (w.dtype() == DType::kQ4) unit = kQ4Block;
  if (w.quantized()) unit = std::lcm(unit, w.group());
  KUIPER_CHECK(begin % unit == 0 && end % unit == 0, "columns [", begin, ", ", end, ") of ",
               w.describe(), " do not split at whole blocks and groups of ", unit, " values");
  if (!w.quantized()) return copy_columns(w.values, w.cols(), begin, end);
  return {copy_columns(w.values, w.cols(), begin, end),
          copy_columns(w.scales, w.scales.dim(1), begin / w.group(), end / w.group())};
}

}  // namespace kuiper
