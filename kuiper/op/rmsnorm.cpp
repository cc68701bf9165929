#include "kuiper/op/layers.h"

namespace kuiper {

RmsNormLayer::RmsNormLayer(std::string name, Tensor weight, float eps)
    : Layer(LayerType::kRmsNorm, std::move(name), 1, 1, {std::move(weight)}), eps_(eps) {}

void RmsNormLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor& x = in[0];
  const int64_t dim = weights_[0].numel();
  expect_shape(x, {x.dim(0), dim}, "input");
  expect_shape(out[0], x.shape(), "output");
  kernels::registry().rmsnorm.find(ctx.device(), x.dtype())(x, weights_[0], eps_, out[0], ctx);
}

}  // namespace kuiper
