#include <algorithm>
#include <vector>

#include "kuiper/op/layers.h"

namespace kuiper {

MatmulLayer::MatmulLayer(std::string name, std::vector<Weight> weights, std::vector<Tensor> biases,
                         ProjectionOptions options)
    : Layer(LayerType::kMatmul, std::move(name), 2, int(weights.size()) + 1, {}, 1, 1),
      projections_(std::move(weights)),
      biases_(std::move(biases)),
      options_(std::move(options)) {
  KUIPER_CHECK(!projections_.empty() && biases_.size() <= projections_.size(), this->name(),
               ": needs at least one weight and at most one bias per weight");
  biases_.resize(projections_.size());
  const Weight& first = projections_[0];
  check_weight(first, this->name());
  for (size_t i = 0; i < projections_.size(); ++i) {
    const Weight& w = projections_[i];
    check_weight(w, this->name());
    KUIPER_CHECK(w.cols() == first.cols(), this->name(), ": weight ", w.describe(),
                 " does not share the first weight's input size (", first.describe(), ")");
    if (!biases_[i].empty()) expect_shape(biases_[i], {w.rows()}, "bias");
    append_tensors(weights_, w);
    // Mixed files (llama.cpp's Q4_K_M keeps some layers' v in Q6_K) split a layer into one
    // kernel call per storage; the usual single-dtype file stays one call.
    auto group = std::find_if(launches_.begin(), launches_.end(), [&](const std::vector<size_t>& g) {
      return same_storage(projections_[g.front()], w);
    });
    if (group == launches_.end()) group = launches_.insert(launches_.end(), std::vector<size_t>{});
    group->push_back(i);
  }
  weights_.insert(weights_.end(), biases_.begin(), biases_.end());
  if (!options_.norm.empty()) {
    expect_shape(options_.norm, {first.cols()}, "norm weight");
    weights_.push_back(options_.norm);
  }
}

void MatmulLayer::forward(TensorList in, TensorList out, const DeviceContext& ctx,
                          const RopeStoreStep& rope) const {
  const bool folds = projections_.size() == 3 && launches_.size() == 1 && out.size() == 3 &&
                     !options_.residual &&
                     kernels::registry().matmul_rope_store.has(ctx.device(),
                                                               projections_[0].dtype());
  if (!folds) {
    forward(in, out, ctx);
    rope.layer.forward(out[0], out[1], out[2], rope.rows, rope.k_cache, rope.v_cache, ctx);
    return;
  }
  check_forward(in, out, ctx);
  const kernels::RopeStoreArgs args = rope.layer.args(rope.rows, rope.k_cache, rope.v_cache);
  project(in, out, &args, ctx);
}

void MatmulLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  project(in, out, nullptr, ctx);
}

void MatmulLayer::project(TensorList in, TensorList out, const kernels::RopeStoreArgs* rope,
                          const DeviceContext& ctx) const {
  const Tensor& x = in[0];
  const Tensor codes = in.size() > 1 ? in[1] : Tensor();
  const int64_t n = x.dim(0);
  expect_shape(x, {n, projections_[0].cols()}, "input");
  for (size_t i = 0; i < projections_.size(); ++i) {
    expect_shape(out[i], {n, projections_[i].rows()}, "output");
    KUIPER_CHECK(out[i].raw_data() != x.raw_data(), name(), ": output may not alias the input");
  }
  // The output's codes (one projection only) for the layer that reads it normalised.
  const Tensor y_codes = out.size() > projections_.size() ? out[projections_.size()] : Tensor();
  KUIPER_CHECK(y_codes.empty() || projections_.size() == 1, name(),
               ": output codes are for a layer of one projection");
  std::vector<kernels::MatmulOutput> outs;
  for (const std::vector<size_t>& group : launches_) {
    outs.clear();
    for (size_t i : group)
      outs.push_back({projections_[i], biases_[i], out[i], y_codes, options_.codes_norm});
    const DType wtype = projections_[group.front()].dtype();
    const kernels::MatmulInput input{x, options_.norm, options_.eps, codes};
    if (rope != nullptr)  // one launch group (forward with a RopeStoreStep)
      kernels::registry().matmul_rope_store.find(ctx.device(), wtype)(input, outs, *rope, ctx);
    else
      kernels::registry().matmul.find(ctx.device(), wtype)(input, outs, options_.residual, ctx);
  }
}

GatedMatmulLayer::GatedMatmulLayer(std::string name, Weight w_gate, Weight w_up,
                                   ProjectionOptions options)
    : Layer(LayerType::kGatedMatmul, std::move(name), 2, 2, {}, 1, 1),
      gate_(std::move(w_gate)),
      up_(std::move(w_up)),
      options_(std::move(options)) {
  check_weight(gate_, this->name());
  check_weight(up_, this->name());
  expect_shape(up_.values, gate_.values.shape(), "up projection");
  KUIPER_CHECK(same_storage(gate_, up_), this->name(),
               ": gate and up projections must share their storage, got ", gate_.describe(),
               " and ", up_.describe());
  append_tensors(weights_, gate_);
  append_tensors(weights_, up_);
  if (!options_.norm.empty()) {
    expect_shape(options_.norm, {gate_.cols()}, "norm weight");
    weights_.push_back(options_.norm);
  }
}

void GatedMatmulLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor& x = in[0];
  expect_shape(x, {x.dim(0), gate_.cols()}, "input");
  expect_shape(out[0], {x.dim(0), gate_.rows()}, "output");
  kernels::registry().gated_matmul.find(ctx.device(), gate_.dtype())(
      {x, options_.norm, options_.eps, in.size() > 1 ? in[1] : Tensor()}, gate_, up_, out[0],
      out.size() > 1 ? out[1] : Tensor(), ctx);
}

}  // namespace kuiper
