// Which heads, hidden units and vocabulary rows each tensor-parallel rank holds, and the splits
// that are refused.
#include "kuiper/model/rank_share.h"

#include <gtest/gtest.h>

#include "kuiper/base/error.h"

namespace kuiper {
namespace {

ModelConfig shaped(int heads, int kv_heads, int hidden = 256, int vocab = 512) {
  ModelConfig c;
  c.dim = 128;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = 128 / heads;
  c.hidden_dim = hidden;
  c.vocab_size = vocab;
  return c;
}

std::string refusal(const ModelConfig& c, int ranks) {
  try {
    RankShare::of(c, 0, ranks);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RankShare, OneRankHoldsEverything) {
  const ModelConfig c = shaped(8, 2);
  const RankShare s = RankShare::of(c, 0, 1);
  EXPECT_EQ(s.heads, 8);
  EXPECT_EQ(s.kv_heads, 2);
  EXPECT_EQ(s.hidden, 256);
  EXPECT_EQ(s.vocab, 512);
  EXPECT_EQ(s.q_rows(c), c.q_dim());
  EXPECT_EQ(s.kv_rows(c), c.kv_dim());
}

TEST(RankShare, WholeKvHeadGroupsPerRank) {
  const ModelConfig c = shaped(8, 4);
  for (int r = 0; r < 2; ++r) {
    const RankShare s = RankShare::of(c, r, 2);
    EXPECT_EQ(s.first_head, 4 * r);
    EXPECT_EQ(s.heads, 4);
    EXPECT_EQ(s.first_kv_head, 2 * r);
    EXPECT_EQ(s.kv_heads, 2);
    EXPECT_EQ(s.first_hidden, 128 * r);
    EXPECT_EQ(s.first_vocab, 256 * r);
    EXPECT_EQ(s.q_row(c), 4 * r * c.head_dim);
    EXPECT_EQ(s.kv_row(c), 2 * r * c.head_dim);
  }
}

TEST(RankShare, FewerKvHeadsThanRanksReplicatesThem) {
  const ModelConfig c = shaped(8, 2);
  // Four ranks: KV head 0 on ranks 0 and 1, KV head 1 on ranks 2 and 3; two query heads each.
  for (int r = 0; r < 4; ++r) {
    const RankShare s = RankShare::of(c, r, 4);
    EXPECT_EQ(s.first_head, 2 * r);
    EXPECT_EQ(s.heads, 2);
    EXPECT_EQ(s.first_kv_head, r / 2) << "rank " << r;
    EXPECT_EQ(s.kv_heads, 1);
  }
  const RankShare one_kv = RankShare::of(shaped(2, 1), 1, 2);  // qwen2-kjv and llama3-kjv
  EXPECT_EQ(one_kv.first_head, 1);
  EXPECT_EQ(one_kv.first_kv_head, 0);
}

TEST(RankShare, BadSplitsAreRefusedNamingTheNumbers) {
  EXPECT_NE(refusal(shaped(6, 2), 4).find("its 6 query heads do not divide by 4"),
            std::string::npos)
      << refusal(shaped(6, 2), 4);
  EXPECT_NE(refusal(shaped(6, 2), 3).find("2 KV heads neither divide by 3"), std::string::npos)
      << refusal(shaped(6, 2), 3);
  EXPECT_NE(refusal(shaped(8, 2, 250), 4).find("its 250 hidden units do not divide by 4"),
            std::string::npos)
      << refusal(shaped(8, 2, 250), 4);
  EXPECT_NE(refusal(shaped(8, 2, 256, 510), 4).find("510 vocabulary entries do not divide by 4"),
            std::string::npos)
      << refusal(shaped(8, 2, 256, 510), 4);
  EXPECT_NE(refusal(shaped(8, 2), 0).find("rank 0 of 0"), std::string::npos);
}

}  // namespace
}  // namespace kuiper
