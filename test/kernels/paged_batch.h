#pragma once
// Random ragged batches over a paged KV cache for the paged kernels' tests (CPU and CUDA): each
// sequence has `context` positions cached before the batch and contributes `rows` rows at the
// positions after them (1: a decode row, more: a prefill chunk). Blocks are handed out in a
// shuffled order, unused block-table entries are -1, and every cache row that no sequence owns
// (free blocks, the tails of last blocks) is NaN, so a kernel that reads a wrong row fails.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/kernels.h"
#include "test/test_util.h"

namespace kuiper::test {

struct SeqSpec {
  int context;  // positions cached before this batch
  int rows;     // rows in the batch, at positions context .. context + rows - 1
};

// A batch's host tensors; the cache holds every row's key and value already.
struct PagedBatch {
  kernels::PagedCache cache;
  kernels::BatchRows rows;
  Tensor q;

  PagedBatch(const std::vector<SeqSpec>& seqs, const kernels::AttentionShape& shape,
             int block_size, DType cache_type, std::mt19937& rng) {
    const int64_t n_seqs = int64_t(seqs.size());
    int64_t n = 0, max_blocks = 0, used = 0;
    for (const SeqSpec& s : seqs) {
      const int64_t blocks = (s.context + s.rows + block_size - 1) / block_size;
      n += s.rows;
      used += blocks;
      max_blocks = std::max(max_blocks, blocks);
    }
    max_blocks += 1;                      // a spare entry, left at -1
    const int64_t num_blocks = used + 3;  // and a few free blocks
    const int64_t kv_width = int64_t(shape.n_kv_heads) * shape.head_dim;
    cache.block_size = block_size;
    cache.k = Tensor(cache_type, {num_blocks * block_size, kv_width});
    cache.v = Tensor(cache_type, {num_blocks * block_size, kv_width});
    poison(cache.k);
    poison(cache.v);

    std::vector<int32_t> order(static_cast<size_t>(num_blocks));
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    rows.positions = Tensor(DType::kI32, {n});
    rows.slots = Tensor(DType::kI32, {n});
    rows.row_seqs = Tensor(DType::kI32, {n});
    rows.seq_starts = Tensor(DType::kI32, {n_seqs + 1});
    rows.block_tables = Tensor(DType::kI32, {n_seqs, max_blocks});
    std::fill_n(rows.block_tables.data<int32_t>(), n_seqs * max_blocks, -1);
    int64_t next_block = 0, row = 0;
    for (int64_t s = 0; s < n_seqs; ++s) {
      const SeqSpec& spec = seqs[size_t(s)];
      const int end = spec.context + spec.rows;
      int32_t* table = rows.block_tables.data<int32_t>() + s * max_blocks;
      for (int64_t j = 0; j * block_size < end; ++j) table[j] = order[size_t(next_block++)];
      for (int t = 0; t < end; ++t) {  // this sequence's keys and values, random
        const int64_t cache_row = int64_t(table[t / block_size]) * block_size + t % block_size;
        fill_uniform(cache.k.rows(cache_row, cache_row + 1), rng);
        fill_uniform(cache.v.rows(cache_row, cache_row + 1), rng);
      }
      rows.seq_starts.data<int32_t>()[s] = int32_t(row);
      for (int t = spec.context; t < end; ++t, ++row) {
        rows.positions.data<int32_t>()[row] = t;
        rows.slots.data<int32_t>()[row] = table[t / block_size] * block_size + t % block_size;
        rows.row_seqs.data<int32_t>()[row] = int32_t(s);
        rows.max_positions = std::max(rows.max_positions, t + 1);
      }
    }
    rows.seq_starts.data<int32_t>()[n_seqs] = int32_t(row);
    q = Tensor(DType::kF32, {n, int64_t(shape.n_heads) * shape.head_dim});
    fill_uniform(q, rng, -2.f, 2.f);
  }

  // Cache row of position t of sequence s.
  int64_t cache_row(int64_t s, int64_t t) const {
    const int32_t* table = rows.block_tables.data<int32_t>() + s * rows.block_tables.dim(1);
    return int64_t(table[t / cache.block_size]) * cache.block_size + t % cache.block_size;
  }

 private:
  static void poison(const Tensor& t) {
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (t.dtype() == DType::kF32) t.data<float>()[i] = NAN;
      else if (t.dtype() == DType::kF16) t.data<f16>()[i] = f16{0x7e00};
      else t.data<bf16>()[i] = bf16{0x7fc0};
    }
  }
};

// Mixed batches the tests run: decode rows at lengths around block edges and long contexts, and
// prefill chunks from the start and after cached positions, in one batch.
inline std::vector<SeqSpec> mixed_batch(int block_size) {
  return {{0, 1},   {block_size - 1, 1}, {block_size, 1}, {3 * block_size + 5, 1}, {0, 37},
          {200, 1}, {50, 20},            {700, 1},        {block_size, 16},        {1, 1}};
}

}  // namespace kuiper::test
