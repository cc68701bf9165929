#include "kuiper/op/layers.h"

namespace kuiper {

MatmulLayer::MatmulLayer(std::string name, Tensor weight, Tensor bias)
    : Layer(LayerType::kMatmul, std::move(name), 1, 1, {std::move(weight), std::move(bias)}) {
  KUIPER_CHECK(weights_[0].ndim() == 2, this->name(), ": weight must be 2-d, got ",
               weights_[0].describe());
  if (!weights_[1].empty()) expect_shape(weights_[1], {out_features()}, "bias");
}

void MatmulLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor& x = in[0];
  expect_shape(x, {x.dim(0), in_features()}, "input");
  expect_shape(out[0], {x.dim(0), out_features()}, "output");
  kernels::registry().matmul.find(ctx.device(), weights_[0].dtype())(x, weights_[0], weights_[1],
                                                                     out[0], ctx);
}

}  // namespace kuiper
