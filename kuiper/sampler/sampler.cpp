#include "kuiper/sampler/sampler.h"

#include <algorithm>
#include <cmath>

#include "kuiper/base/error.h"

namespace kuiper {

Sampler::Sampler(const SamplerOptions& options) : options_(options), rng_(options.seed) {
  KUIPER_CHECK(options.temperature >= 0.f, "temperature must be >= 0, got ", options.temperature);
  KUIPER_CHECK(options.top_p > 0.f && options.top_p <= 1.f, "top-p must be in (0, 1], got ",
               options.top_p);
  KUIPER_CHECK(options.top_k >= 0, "top-k must be >= 0, got ", options.top_k);
}

int32_t Sampler::sample(std::span<const float> logits) {
  KUIPER_CHECK(!logits.empty(), "sampling from no logits");
  if (greedy()) return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());

  candidates_.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) candidates_[i] = {int32_t(i), logits[i]};
  const auto by_logit = [](const Candidate& a, const Candidate& b) { return a.p > b.p; };
  size_t n = candidates_.size();
  if (options_.top_k > 0 && size_t(options_.top_k) < n) {
    n = size_t(options_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + n, candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }

  // Softmax of logit / temperature over the n best, largest first.
  const float max = candidates_[0].p;
  float sum = 0.f;
  for (size_t i = 0; i < n; ++i) {
    candidates_[i].p = std::exp((candidates_[i].p - max) / options_.temperature);
    sum += candidates_[i].p;
  }
  // Nucleus: the smallest prefix whose probability reaches top_p.
  float kept = 0.f;
  size_t keep = 0;
  while (keep < n) {
    kept += candidates_[keep++].p / sum;
    if (kept >= options_.top_p) break;
  }
  float r = std::uniform_real_distribution<float>(0.f, 1.f)(rng_) * kept * sum;
  for (size_t i = 0; i < keep; ++i) {
    r -= candidates_[i].p;
    if (r <= 0.f) return candidates_[i].id;
  }
  return candidates_[keep - 1].id;  // rounding left a sliver
}

}  // namespace kuiper
