#include "kuiper/op/layers.h"

namespace kuiper {

AttentionLayer::AttentionLayer(std::string name, kernels::AttentionShape shape)
    : Layer(LayerType::kAttention, std::move(name), 4, 1), shape_(shape) {
  KUIPER_CHECK(shape.n_kv_heads > 0 && shape.n_heads % shape.n_kv_heads == 0, this->name(),
               ": ", shape.n_heads, " query heads cannot share ", shape.n_kv_heads, " kv heads");
}

void AttentionLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor &q = in[0], &k_cache = in[1], &v_cache = in[2], &positions = in[3];
  const int64_t n = q.dim(0);
  expect_shape(q, {n, int64_t(shape_.n_heads) * shape_.head_dim}, "queries");
  expect_shape(k_cache, {k_cache.dim(0), int64_t(shape_.n_kv_heads) * shape_.head_dim}, "key cache");
  expect_shape(v_cache, k_cache.shape(), "value cache");
  expect_shape(positions, {n}, "positions");
  expect_shape(out[0], q.shape(), "output");
  kernels::registry().attention.find(ctx.device(), k_cache.dtype())(q, k_cache, v_cache, positions,
                                                                    shape_, out[0], ctx);
}

}  // namespace kuiper
