#include "kuiper/op/layers.h"

namespace kuiper {

AttentionLayer::AttentionLayer(std::string name, kernels::AttentionShape shape, int block_size,
                               int max_positions)
    : Layer(LayerType::kAttention, std::move(name), 8, 2, {}, 0, 1),
      shape_(shape),
      block_size_(block_size),
      max_positions_(max_positions) {
  KUIPER_CHECK(shape.n_kv_heads > 0 && shape.n_heads % shape.n_kv_heads == 0, this->name(),
               ": ", shape.n_heads, " query heads cannot share ", shape.n_kv_heads, " kv heads");
  KUIPER_CHECK(block_size > 0 && max_positions > 0, this->name(),
               ": KV block size and positions must be positive");
}

void AttentionLayer::forward(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                             const BatchIndex& rows, const Tensor& out, const DeviceContext& ctx,
                             const Tensor& out_codes) const {
  Layer::forward({q, k_cache, v_cache, rows.positions, rows.slots, rows.row_seqs, rows.seq_starts,
                  rows.block_tables},
                 {out, out_codes}, ctx);
}

void AttentionLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor& q = in[0];
  const kernels::PagedCache cache{in[1], in[2], block_size_};
  const kernels::BatchRows rows{in[3], in[4], in[5], in[6], in[7], max_positions_};
  expect_shape(q, {q.dim(0), int64_t(shape_.n_heads) * shape_.head_dim}, "queries");
  expect_shape(cache.k, {cache.k.dim(0), int64_t(shape_.n_kv_heads) * shape_.head_dim},
               "key cache");
  expect_shape(out[0], q.shape(), "output");
  const Tensor codes = out.size() > 1 ? out[1] : Tensor();
  kernels::registry().paged_attention.find(ctx.device(), cache.k.dtype())(q, cache, rows, shape_,
                                                                          out[0], codes, ctx);
}

}  // namespace kuiper
