#include "kuiper/op/layers.h"

namespace kuiper {

EmbeddingLayer::EmbeddingLayer(std::string name, Tensor table)
    : Layer(LayerType::kEmbedding, std::move(name), 1, 1, {std::move(table)}) {}

void EmbeddingLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor& tokens = in[0];
  KUIPER_CHECK(tokens.dtype() == DType::kI32 && tokens.ndim() == 1, name(),
               ": tokens must be int32 [n], got ", tokens.describe());
  expect_shape(out[0], {tokens.dim(0), table().dim(1)}, "output");
  kernels::registry().embedding.find(ctx.device(), table().dtype())(tokens, table(), out[0], ctx);
}

}  // namespace kuiper
