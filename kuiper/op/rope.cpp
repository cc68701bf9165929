#include "kuiper/op/layers.h"

namespace kuiper {

RopeLayer::RopeLayer(std::string name, Tensor cos_sin, int head_dim)
    : Layer(LayerType::kRope, std::move(name), 2, 1, {std::move(cos_sin)}), head_dim_(head_dim) {
  KUIPER_CHECK(head_dim % 2 == 0, this->name(), ": head_dim must be even, got ", head_dim);
  expect_shape(weights_[0], {weights_[0].dim(0), head_dim / 2, 2}, "cos/sin table");
}

void RopeLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor &x = in[0], &positions = in[1];
  KUIPER_CHECK(x.ndim() == 2 && x.dim(1) % head_dim_ == 0, name(), ": input ", x.describe(),
               " is not [n, heads * ", head_dim_, "]");
  KUIPER_CHECK(out[0].raw_data() == x.raw_data(), name(), " rotates in place");
  expect_shape(positions, {x.dim(0)}, "positions");
  kernels::registry().rope.find(ctx.device(), x.dtype())(x, positions, weights_[0], head_dim_, ctx);
}

}  // namespace kuiper
