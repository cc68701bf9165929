#include "kuiper/model/rope_table.h"

#include <cmath>
#include <numbers>
#include <vector>

namespace kuiper {
namespace {

// Llama 3 keeps high frequencies, divides low ones by `factor`, and blends in between
// (transformers' _compute_llama3_parameters).
double scaled_frequency(double freq, const RopeScaling& s) {
  const double wavelen = 2 * std::numbers::pi / freq;
  const double low_wavelen = s.original_max_position / s.low_freq_factor;
  const double high_wavelen = s.original_max_position / s.high_freq_factor;
  if (wavelen < high_wavelen) return freq;
  if (wavelen > low_wavelen) return freq / s.factor;
  const double smooth = (s.original_max_position / wavelen - s.low_freq_factor) /
                        (s.high_freq_factor - s.low_freq_factor);
  return (1 - smooth) * freq / s.factor + smooth * freq;
}

}  // namespace

Tensor make_rope_table(const ModelConfig& config, int max_seq_len) {
  const int half = config.head_dim / 2;
  std::vector<double> freqs(half);
  for (int j = 0; j < half; ++j) {
    // Computed in fp32 as the reference implementations do, so angles match theirs bit for bit.
    const float f = 1.0f / std::pow(config.rope_theta, float(2 * j) / float(config.head_dim));
    const RopeScaling& s = config.rope_scaling;
    freqs[j] = !s.freq_factors.empty() ? f / s.freq_factors[size_t(j)]
               : s.enabled             ? scaled_frequency(f, s)
                                       : f;
  }
  Tensor table(DType::kF32, {max_seq_len, half, 2});
  float* t = table.data<float>();
  for (int pos = 0; pos < max_seq_len; ++pos) {
    for (int j = 0; j < half; ++j) {
      const float angle = float(pos) * float(freqs[j]);
      t[(int64_t(pos) * half + j) * 2] = std::cos(angle);
      t[(int64_t(pos) * half + j) * 2 + 1] = std::sin(angle);
    }
  }
  return table;
}

}  // namespace kuiper
