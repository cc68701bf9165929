#include "kuiper/model/rank_share.h"

#include "kuiper/base/error.h"

namespace kuiper {

RankShare RankShare::of(const ModelConfig& c, int rank, int ranks) {
  KUIPER_CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "rank ", rank, " of ", ranks,
               " tensor-parallel ranks");
  const auto refuse = [&](const char* what, int64_t n) {
    fail("the model does not split over ", ranks, " tensor-parallel ranks: its ", n, " ", what,
         " do not divide by ", ranks, " (heads ", c.n_heads, ", KV heads ", c.n_kv_heads,
         ", hidden ", c.hidden_dim, ", vocabulary ", c.vocab_size, ")");
  };
  if (c.n_heads % ranks != 0) refuse("query heads", c.n_heads);
  if (c.n_kv_heads % ranks != 0 && ranks % c.n_kv_heads != 0)
    fail("the model does not split over ", ranks, " tensor-parallel ranks: its ", c.n_kv_heads,
         " KV heads neither divide by ", ranks, " (whole KV heads per rank) nor divide ", ranks,
         " (each KV head replicated on the same number of ranks)");
  if (c.hidden_dim % ranks != 0) refuse("hidden units", c.hidden_dim);
  if (c.vocab_size % ranks != 0) refuse("vocabulary entries", c.vocab_size);

  RankShare s;
  s.rank = rank;
  s.ranks = ranks;
  s.heads = c.n_heads / ranks;
  s.first_head = rank * s.heads;
  // Query heads are grouped by KV head (head h reads KV head h / group), so a rank's heads read
  // whole groups, or lie inside one group when KV heads are replicated.
  const int group = c.n_heads / c.n_kv_heads;
  s.first_kv_head = s.first_head / group;
  s.kv_heads = c.n_kv_heads >= ranks ? c.n_kv_heads / ranks : 1;
  s.hidden = c.hidden_dim / ranks;
  s.first_hidden = rank * s.hidden;
  s.vocab = c.vocab_size / ranks;
  s.first_vocab = rank * s.vocab;
  return s;
}

}  // namespace kuiper
