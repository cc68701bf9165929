#include "kuiper/op/layers.h"

namespace kuiper {

EmbeddingLayer::EmbeddingLayer(std::string name, Weight table)
    : Layer(LayerType::kEmbedding, std::move(name), 1, 1), table_(std::move(table)) {
  check_weight(table_, this->name());
  append_tensors(weights_, table_);
}

void EmbeddingLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor& tokens = in[0];
  KUIPER_CHECK(tokens.dtype() == DType::kI32 && tokens.ndim() == 1, name(),
               ": tokens must be int32 [n], got ", tokens.describe());
  expect_shape(out[0], {tokens.dim(0), table_.cols()}, "output");
  kernels::registry().embedding.find(ctx.device(), table_.dtype())(tokens, table_, out[0], ctx);
}

}  // namespace kuiper
