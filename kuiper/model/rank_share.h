#pragma once
#include <cstdint>

#include "kuiper/model/config.h"

namespace kuiper {

// The part of a model that rank `rank` of `ranks` holds under Megatron-style tensor parallelism:
// whole query heads with the KV heads they attend to (q, k, v and wo's input columns), a slice of
// the feed-forward's hidden units (w1, w3 rows and w2's columns), and a slice of the vocabulary
// (the classifier's rows). One rank holds everything.
struct RankShare {
  int rank = 0;
  int ranks = 1;
  int first_head = 0, heads = 0;        // query heads
  int first_kv_head = 0, kv_heads = 0;  // the KV heads those query heads read
  int64_t first_hidden = 0, hidden = 0;
  int64_t first_vocab = 0, vocab = 0;

  // Throws kuiper::Error naming the numbers unless the model splits evenly over `ranks`: the
  // query heads, the hidden size and the vocabulary must divide by it, and the KV heads must
  // either divide by it (each rank holds whole KV head groups) or divide it (fewer KV heads than
  // ranks: each KV head is replicated on ranks / kv_heads ranks, which split its query heads).
  static RankShare of(const ModelConfig& c, int rank, int ranks);

  // Rows of wq (first, count) and of wk, wv; columns of wo are the q rows.
  int64_t q_row(const ModelConfig& c) const { return int64_t(first_head) * c.head_dim; }
  int64_t q_rows(const ModelConfig& c) const { return int64_t(heads) * c.head_dim; }
  int64_t kv_row(const ModelConfig& c) const { return int64_t(first_kv_head) * c.head_dim; }
  int64_t kv_rows(const ModelConfig& c) const { return int64_t(kv_heads) * c.head_dim; }
};

}  // namespace kuiper
