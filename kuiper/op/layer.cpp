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
             std::vector<Tensor> weights)
    : weights_(std::move(weights)), type_(type), name_(std::move(name)), n_inputs_(n_inputs),
      n_outputs_(n_outputs) {}

void Layer::forward(TensorList inputs, TensorList outputs, const DeviceContext& ctx) const {
  KUIPER_CHECK(int(inputs.size()) == n_inputs_ && int(outputs.size()) == n_outputs_, name_, " (",
               layer_type_name(type_), ") takes ", n_inputs_, " inputs and ", n_outputs_,
               " outputs, got ", inputs.size(), " and ", outputs.size());
  for (TensorList list : {inputs, outputs})
    for (const Tensor& t : list)
      KUIPER_CHECK(!t.empty() && t.device() == ctx.device(), name_, ": tensor ", t.describe(),
                   " is not on ", device_name(ctx.device()));
  for (const Tensor& w : weights_)
    KUIPER_CHECK(w.empty() || w.device() == ctx.device(), name_, ": weight ", w.describe(),
                 " is not on ", device_name(ctx.device()));
  base_forward(inputs, outputs, ctx);
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
