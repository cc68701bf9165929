#pragma once
// The sizes of a ragged batch over a paged KV cache (kernels.h: PagedCache, BatchRows), checked
// against each other once for both backends. Only shapes, dtypes and devices: the values may live
// on a device, where each backend deals with bad ones its own way.
#include <cstdint>

#include "kernels/kernels.h"

namespace kuiper::kernels {

struct PagedBatchShape {
  int64_t n = 0;           // rows
  int64_t n_seqs = 0;      // sequences (rows of block_tables)
  int64_t max_blocks = 0;  // entries of a block table
  int64_t cache_rows = 0;  // num_blocks * block_size
  int64_t kv_width = 0;    // n_kv_heads * head_dim
};

// Throws kuiper::Error naming `op` unless rows and cache fit each other and `device`: int32 row
// tensors of one length n, seq_starts of n_seqs + 1, block_tables [n_seqs, max_blocks], k and v
// caches of one float dtype and shape [num_blocks * block_size, kv_width].
PagedBatchShape check_paged_batch(const char* op, const BatchRows& rows, const PagedCache& cache,
                                  int64_t kv_width, Device device);

}  // namespace kuiper::kernels
