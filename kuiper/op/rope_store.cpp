#include "kuiper/op/layers.h"

namespace kuiper {

RopeStoreLayer::RopeStoreLayer(std::string name, Tensor cos_sin, int head_dim, int block_size)
    : Layer(LayerType::kRopeStore, std::move(name), 8, 3, {std::move(cos_sin)}),
      head_dim_(head_dim),
      block_size_(block_size) {
  KUIPER_CHECK(head_dim % 2 == 0, this->name(), ": head_dim must be even, got ", head_dim);
  KUIPER_CHECK(block_size > 0, this->name(), ": KV block size must be positive");
  expect_shape(weights_[0], {weights_[0].dim(0), head_dim / 2, 2}, "cos/sin table");
}

void RopeStoreLayer::forward(const Tensor& q, const Tensor& k, const Tensor& v,
                             const BatchIndex& rows, const Tensor& k_cache, const Tensor& v_cache,
                             const DeviceContext& ctx) const {
  Layer::forward({q, k, v, rows.positions, rows.slots, rows.row_seqs, rows.seq_starts,
                  rows.block_tables},
                 {q, k_cache, v_cache}, ctx);
}

kernels::RopeStoreArgs RopeStoreLayer::args(const BatchIndex& rows, const Tensor& k_cache,
                                             const Tensor& v_cache) const {
  return {{rows.positions, rows.slots, rows.row_seqs, rows.seq_starts, rows.block_tables,
           int(weights_[0].dim(0))},
          weights_[0],
          head_dim_,
          {k_cache, v_cache, block_size_}};
}

void RopeStoreLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor &q = in[0], &k = in[1], &v = in[2];
  const kernels::RopeStoreArgs a = args({in[3], in[4], in[5], in[6], in[7]}, out[1], out[2]);
  const kernels::PagedCache& cache = a.cache;
  KUIPER_CHECK(out[0].raw_data() == q.raw_data(), name(), " rotates the queries in place");
  KUIPER_CHECK(q.ndim() == 2 && q.dim(1) % head_dim_ == 0, name(), ": queries ", q.describe(),
               " are not [n, heads * ", head_dim_, "]");
  expect_shape(k, {q.dim(0), cache.k.dim(-1)}, "keys");
  expect_shape(v, k.shape(), "values");
  kernels::registry().paged_rope_store.find(ctx.device(), cache.k.dtype())(
      q, k, v, a.rows, a.cos_sin, a.head_dim, cache, ctx);
}

}  // namespace kuiper
