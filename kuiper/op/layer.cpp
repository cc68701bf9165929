#include "kuiper/op/layer.h"

namespace kuiper {

std::string_view layer_type_name(LayerType type) {
  switch (type) {
    case LayerType::kEmbedding: return "embedding";
    case LayerType::kMatmul: return "matmul";
    case LayerType::kGatedMatmul: return "gated_matmul";
    case LayerType::kRopeStore: return "rope_store";
    case LayerType::kAttention: return "attention";
  }
  return "?";
}

Layer::Layer(LayerType type, std::string name, int n_inputs, int n_outputs,
             std::vector<Tensor> weights, int optional_inputs, int optional_outputs)
    : weights_(std::move(weights)), type_(type), name_(std::move(name)), n_inputs_(n_inputs),
      n_outputs_(n_outputs),
      optional_inputs_(optional_inputs),
      optional_outputs_(optional_outputs) {}

void Layer::forward(TensorList inputs, TensorList outputs, const DeviceContext& ctx) const {
  check_forward(inputs, outputs, ctx);
  base_forward(inputs, outputs, ctx);
}

void Layer::check_forward(TensorList inputs, TensorList outputs, const DeviceContext& ctx) const {
  const int n_in = int(inputs.size()), n_out = int(outputs.size());
  KUIPER_CHECK(n_in >= n_inputs_ - optional_inputs_ && n_in <= n_inputs_ &&
                   n_out >= n_outputs_ - optional_outputs_ && n_out <= n_outputs_,
               name_, " (", layer_type_name(type_), ") takes ", n_inputs_ - optional_inputs_,
               optional_inputs_ > 0 ? "+" : "", " inputs and ", n_outputs_ - optional_outputs_,
               optional_outputs_ > 0 ? "+" : "", " outputs, got ", n_in, " and ", n_out);
  auto check = [&](TensorList list, int required) {
    for (int i = 0; i < int(list.size()); ++i) {
      const Tensor& t = list[size_t(i)];
      if (i >= required && t.empty()) continue;
      KUIPER_CHECK(!t.empty() && t.device() == ctx.device(), name_, ": tensor ", t.describe(),
                   " is not on ", device_name(ctx.device()));
    }
  };
  check(inputs, n_inputs_ - optional_inputs_);
  check(outputs, n_outputs_ - optional_outputs_);
  for (const Tensor& w : weights_)
    KUIPER_CHECK(w.empty() || w.device() == ctx.device(), name_, ": weight ", w.describe(),
                 " is not on ", device_name(ctx.device()));
}

void Layer::append_tensors(std::vector<Tensor>& list, const Weight& w) {
  list.push_back(w.values);
  if (w.quantized()) list.push_back(w.scales);
}

void Layer::expect_shape(const Tensor& t, const Shape& shape, std::string_view what) const {
  KUIPER_CHECK(t.shape() == shape, name_, ": ", what, " has shape ", t.shape().str(), ", expected ",
               shape.str());
}

}  // namespace kuiper
