#include "kuiper/op/layers.h"

namespace kuiper {

KvStoreLayer::KvStoreLayer(std::string name) : Layer(LayerType::kKvStore, std::move(name), 2, 1) {}

void KvStoreLayer::base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const {
  const Tensor &rows = in[0], &positions = in[1], &cache = out[0];
  expect_shape(rows, {rows.dim(0), cache.dim(1)}, "rows");
  expect_shape(positions, {rows.dim(0)}, "positions");
  kernels::registry().scatter_rows.find(ctx.device(), cache.dtype())(rows, positions, cache, ctx);
}

}  // namespace kuiper
