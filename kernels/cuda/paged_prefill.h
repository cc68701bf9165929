#pragma once
// The tensor-core kernel of paged attention (kernels/cuda/paged_prefill.cu) for the prefill
// chunks of 16-bit caches (and, in a batch of many rows, for the other rows too);
// kernels/cuda/attention.cu's paged_attention launches it beside the CUDA-core kernels, which
// then leave those rows alone (PagedKeys::chunk_rows).
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/key_rows.cuh"

namespace kuiper::kernels::cuda {

// Sequences with at least this many rows in a batch are prefill chunks, for the tensor cores.
constexpr int kPrefillChunkRows = 8;

// Whether the kernel serves this shape (head_dim 48, 64, 96 or 128).
bool prefill_supported(const AttentionShape& shape);

// Queues the kernel over every sequence of keys with at least keys.chunk_rows rows (set), for a
// batch of n rows. CT: __half or __nv_bfloat16.
template <class CT>
void launch_paged_prefill(const float* q, const CT* k_cache, const CT* v_cache,
                          const PagedKeys& keys, const AttentionShape& shape, int64_t n, float* out,
                          const DeviceContext& ctx);
// The same kernel over every other sequence (fewer rows than keys.chunk_rows: decode rows,
// short chunks), for a batch of many rows.
template <class CT>
void launch_paged_short_rows(const float* q, const CT* k_cache, const CT* v_cache,
                             const PagedKeys& keys, const AttentionShape& shape, int64_t n,
                             float* out, const DeviceContext& ctx);

}  // namespace kuiper::kernels::cuda
