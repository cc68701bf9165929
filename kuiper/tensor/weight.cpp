#include "kuiper/tensor/weight.h"

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

}  // namespace kuiper
