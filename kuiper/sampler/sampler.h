#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace kuiper {

struct SamplerOptions {
  float temperature = 0.8f;  // 0: greedy
  float top_p = 0.95f;       // 1: off
  int top_k = 40;            // 0: off
  uint64_t seed = 0;
};

// Picks the next token from logits: top-k, then temperature, then top-p (nucleus), then a draw
// from what is left. Temperature 0 means the most likely token.
class Sampler {
 public:
  explicit Sampler(const SamplerOptions& options);
  bool greedy() const { return options_.temperature <= 0.f; }
  int32_t sample(std::span<const float> logits);

 private:
  struct Candidate {
    int32_t id;
    float p;
  };
  SamplerOptions options_;
  std::mt19937_64 rng_;
  std::vector<Candidate> candidates_;
};

}  // namespace kuiper
