#include "kuiper/op/layers.h"

namespace kuiper {

RopeStoreLayer::RopeStoreLayer(std::string name, Tensor cos_sin, int head_dim)
    : Layer(LayerType::kRopeStore, std::move(name), 4, 3, {std::move(cos_sin)}),
      head_dim_(head_dim) {
  KUIPER_CHECK(head_dim % 2 == 0, this->name(), ": head_dim must be even, got ", head_dim);
  expect_shape(weights_[0], {weights_[0].dim(0), head_dim / 2, 2}, "cos/sin table");
}

void RopeStoreLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor &q = in[0], &k = in[1], &v = in[2], &positions = in[3];
  const Tensor &k_cache = out[1], &v_cache = out[2];
  const int64_t n = q.dim(0);
  KUIPER_CHECK(out[0].raw_data() == q.raw_data(), name(), " rotates the queries in place");
  KUIPER_CHECK(q.ndim() == 2 && q.dim(1) % head_dim_ == 0, name(), ": queries ", q.describe(),
               " are not [n, heads * ", head_dim_, "]");
  KUIPER_CHECK(k_cache.ndim() == 2 && k_cache.dim(1) % head_dim_ == 0, name(), ": key cache ",
               k_cache.describe(), " is not [max_seq, kv_heads * ", head_dim_, "]");
  expect_shape(k, {n, k_cache.dim(1)}, "keys");
  expect_shape(v, k.shape(), "values");
  expect_shape(v_cache, k_cache.shape(), "value cache");
  expect_shape(positions, {n}, "positions");
  kernels::registry().rope_store.find(ctx.device(), k_cache.dtype())(
      q, k, v, positions, weights_[0], head_dim_, k_cache, v_cache, ctx);
}

}  // namespace kuiper
