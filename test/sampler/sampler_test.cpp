#include "kuiper/sampler/sampler.h"

#include <map>

#include "kuiper/base/error.h"
#include "test/test_util.h"

namespace kuiper::test {
namespace {

std::map<int32_t, int> histogram(Sampler& s, std::span<const float> logits, int draws) {
  std::map<int32_t, int> counts;
  for (int i = 0; i < draws; ++i) ++counts[s.sample(logits)];
  return counts;
}

TEST(Sampler, TemperatureZeroIsArgmax) {
  Sampler s({.temperature = 0.f});
  const std::vector<float> logits = {0.1f, 3.f, -2.f, 2.9f};
  EXPECT_TRUE(s.greedy());
  EXPECT_EQ(s.sample(logits), 1);
}

TEST(Sampler, TopKKeepsOnlyTheKBest) {
  Sampler s({.temperature = 1.f, .top_p = 1.f, .top_k = 2, .seed = 1});
  const std::vector<float> logits = {1.f, 0.f, 1.1f, 0.9f};
  for (const auto& [id, n] : histogram(s, logits, 2000)) EXPECT_TRUE(id == 0 || id == 2) << id;
}

TEST(Sampler, TopPKeepsTheNucleus) {
  // Probabilities 0.5, 0.3, 0.2 (as logits of their logs): top-p 0.7 keeps the first two.
  Sampler s({.temperature = 1.f, .top_p = 0.7f, .top_k = 0, .seed = 2});
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  const auto counts = histogram(s, logits, 5000);
  EXPECT_FALSE(counts.contains(2));
  EXPECT_NEAR(counts.at(0) / 5000.0, 0.625, 0.03);
}

TEST(Sampler, DrawsFollowTheDistributionAndTheSeed) {
  const std::vector<float> logits = {std::log(0.1f), std::log(0.6f), std::log(0.3f)};
  Sampler a({.temperature = 1.f, .top_p = 1.f, .top_k = 0, .seed = 3});
  const auto counts = histogram(a, logits, 10000);
  EXPECT_NEAR(counts.at(1) / 10000.0, 0.6, 0.02);
  Sampler b({.temperature = 1.f, .top_p = 1.f, .top_k = 0, .seed = 3});
  Sampler c({.temperature = 1.f, .top_p = 1.f, .top_k = 0, .seed = 3});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(b.sample(logits), c.sample(logits));
}

TEST(Sampler, RejectsBadSettings) {
  EXPECT_THROW(Sampler({.temperature = -1.f}), Error);
  EXPECT_THROW(Sampler({.temperature = 1.f, .top_p = 0.f}), Error);
  EXPECT_THROW(Sampler({.temperature = 1.f, .top_p = 1.f, .top_k = -3}), Error);
}

}  // namespace
}  // namespace kuiper::test
