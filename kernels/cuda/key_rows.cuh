#pragma once
// Where the attention kernels find a query row's keys: the contiguous cache (key t of every row at
// cache row t) or the paged cache (key t at the cache row that the row's sequence's block table
// names). The kernels are templates over these, so one kernel body serves both caches. All of it
// is read on the device, so that a CUDA graph replays with new positions and block tables.
#include <cstdint>

namespace kuiper::kernels::cuda {

// Keys 0..p of a row at position p, read in place: key t is cache row t.
struct ContiguousRow {
  __device__ __forceinline__ int64_t operator()(int t) const { return t; }
};
struct ContiguousKeys {
  const int32_t* positions;
  int max_seq;  // cache rows

  // Keys the row attends to: 0 for a position outside the cache (the row's output is NaN).
  __device__ __forceinline__ int length(int row) const {
    const int32_t pos = positions[row];
    return pos >= 0 && pos < max_seq ? pos + 1 : 0;
  }
  __device__ __forceinline__ ContiguousRow rows_of(int) const { return {}; }
};

// Key t of one sequence: block table[t / block_size], offset t % block_size; -1 where the table
// names a block outside the cache (the loaders read NaN there, so the row's output is NaN).
// block_shift: log2(block_size) where that is a power of two (shifts instead of divisions, in
// loops that locate a key a copy), else -1.
struct PagedRow {
  const int32_t* table;
  int block_size, num_blocks;
  int block_shift = -1;
  __device__ __forceinline__ int64_t operator()(int t) const {
    const int j = block_shift >= 0 ? t >> block_shift : t / block_size;
    const int offset = block_shift >= 0 ? t & (block_size - 1) : t - j * block_size;
    const int32_t b = table[j];
    return b >= 0 && b < num_blocks ? int64_t(b) * block_size + offset : -1;
  }
};
struct PagedKeys {
  const int32_t* positions;
  const int32_t* row_seqs;
  const int32_t* seq_starts;
  const int32_t* block_tables;
  int n_rows, n_seqs, max_blocks, block_size, num_blocks;
  // Sequences with at least this many rows in the batch are prefill chunks, another kernel's
  // (the tensor-core prefill); 0: every row is this kernel's.
  int chunk_rows;

  // Rows of sequence s in the batch, or -1 where its range is not within the batch's rows.
  __device__ __forceinline__ int seq_rows(int s) const {
    const int start = seq_starts[s], rows = seq_starts[s + 1] - start;
    return rows >= 0 && start >= 0 && start <= n_rows - rows ? rows : -1;
  }
  // Whether sequence s is a prefill chunk: chunk_rows rows or more, all of them in the batch.
  __device__ __forceinline__ bool is_chunk(int s) const {
    return chunk_rows > 0 && seq_rows(s) >= chunk_rows;
  }
  // Whether sequence s is not a chunk: 1 to chunk_rows - 1 rows (any number where chunk_rows is
  // 0), all of them in the batch (the tensor-core kernel's short rows).
  __device__ __forceinline__ bool is_short(int s) const {
    const int rows = seq_rows(s);
    return rows >= 1 && (chunk_rows <= 0 || rows < chunk_rows);
  }
  // As ContiguousKeys::length, 0 also for a row of no sequence or past its block table; -1 for a
  // row of a prefill chunk (another kernel's).
  __device__ __forceinline__ int length(int row) const {
    const int32_t s = row_seqs[row];
    if (s < 0 || s >= n_seqs) return 0;
    if (is_chunk(s)) return -1;
    const int32_t pos = positions[row];
    return pos >= 0 && pos < max_blocks * block_size ? pos + 1 : 0;
  }
  // Only for a row whose length() is positive.
  __device__ __forceinline__ PagedRow rows_of(int row) const {
    const int shift = (block_size & (block_size - 1)) == 0 ? __ffs(block_size) - 1 : -1;
    return {block_tables + int64_t(row_seqs[row]) * max_blocks, block_size, num_blocks, shift};
  }
};

}  // namespace kuiper::kernels::cuda
