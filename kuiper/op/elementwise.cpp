#include "kuiper/op/layers.h"

namespace kuiper {

SwiGluLayer::SwiGluLayer(std::string name) : Layer(LayerType::kSwiGlu, std::move(name), 2, 1) {}

void SwiGluLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  expect_shape(in[1], in[0].shape(), "up projection");
  expect_shape(out[0], in[0].shape(), "output");
  kernels::registry().swiglu.find(ctx.device(), in[0].dtype())(in[0], in[1], out[0], ctx);
}

AddLayer::AddLayer(std::string name) : Layer(LayerType::kAdd, std::move(name), 2, 1) {}

void AddLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  expect_shape(in[1], in[0].shape(), "second operand");
  expect_shape(out[0], in[0].shape(), "output");
  kernels::registry().add.find(ctx.device(), in[0].dtype())(in[0], in[1], out[0], ctx);
}

}  // namespace kuiper
