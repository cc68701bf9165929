#include <vector>

#include "kuiper/op/layers.h"

namespace kuiper {
namespace {

std::vector<Tensor> weights_biases_norm(std::vector<Tensor> weights, std::vector<Tensor> biases,
                                        const Tensor& norm) {
  biases.resize(weights.size());
  weights.insert(weights.end(), biases.begin(), biases.end());
  weights.push_back(norm);
  return weights;
}

}  // namespace

MatmulLayer::MatmulLayer(std::string name, std::vector<Tensor> weights, std::vector<Tensor> biases,
                         ProjectionOptions options)
    : Layer(LayerType::kMatmul, std::move(name), 1, int(weights.size()),
            weights_biases_norm(weights, biases, options.norm)),
      n_projections_(weights.size()),
      options_(std::move(options)) {
  KUIPER_CHECK(n_projections_ > 0 && biases.size() <= n_projections_, this->name(),
               ": needs at least one weight and at most one bias per weight");
  const int64_t in = weights_[0].dim(1);
  for (size_t i = 0; i < n_projections_; ++i) {
    const Tensor &w = weights_[i], &b = weights_[n_projections_ + i];
    KUIPER_CHECK(w.ndim() == 2 && w.dim(1) == in && w.dtype() == weights_[0].dtype(), this->name(),
                 ": weight ", w.describe(), " does not share the first weight's input size and dtype");
    if (!b.empty()) expect_shape(b, {w.dim(0)}, "bias");
  }
  if (!options_.norm.empty()) expect_shape(options_.norm, {in}, "norm weight");
}

void MatmulLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor& x = in[0];
  const int64_t n = x.dim(0);
  expect_shape(x, {n, weights_[0].dim(1)}, "input");
  std::vector<kernels::MatmulOutput> outs;
  outs.reserve(n_projections_);
  for (size_t i = 0; i < n_projections_; ++i) {
    expect_shape(out[i], {n, weights_[i].dim(0)}, "output");
    KUIPER_CHECK(out[i].raw_data() != x.raw_data(), name(), ": output may not alias the input");
    outs.push_back({weights_[i], weights_[n_projections_ + i], out[i]});
  }
  kernels::registry().matmul.find(ctx.device(), weights_[0].dtype())(
      {x, options_.norm, options_.eps}, outs, options_.residual, ctx);
}

GatedMatmulLayer::GatedMatmulLayer(std::string name, Tensor w_gate, Tensor w_up,
                                   ProjectionOptions options)
    : Layer(LayerType::kGatedMatmul, std::move(name), 1, 1,
            {std::move(w_gate), std::move(w_up), options.norm}),
      options_(std::move(options)) {
  expect_shape(weights_[1], weights_[0].shape(), "up projection");
  KUIPER_CHECK(weights_[0].ndim() == 2 && weights_[1].dtype() == weights_[0].dtype(), this->name(),
               ": gate and up projections must be 2-d of one dtype");
  if (!options_.norm.empty()) expect_shape(options_.norm, {weights_[0].dim(1)}, "norm weight");
}

void GatedMatmulLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor& x = in[0];
  expect_shape(x, {x.dim(0), weights_[0].dim(1)}, "input");
  expect_shape(out[0], {x.dim(0), weights_[0].dim(0)}, "output");
  kernels::registry().gated_matmul.find(ctx.device(), weights_[0].dtype())(
      {x, options_.norm, options_.eps}, weights_[0], weights_[1], out[0], ctx);
}

}  // namespace kuiper
