#pragma once
// The layers of a Llama-family transformer. Each one's .cpp checks shapes and calls the kernel
// registered for its tensors' device and dtype (kernels/kernels.h documents every kernel).
#include "kernels/kernels.h"
#include "kuiper/op/layer.h"

namespace kuiper {

// {tokens int32 [n]} -> {x fp32 [n, dim]}
class EmbeddingLayer final : public Layer {
 public:
  EmbeddingLayer(std::string name, Weight table);
  const Weight& table() const { return table_; }

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
  Weight table_;
};

// Where a projection's input comes from and where its result goes.
struct ProjectionOptions {
  Tensor norm;               // fp32 [in]: RMS-normalise the input first (empty: use it as it is)
  float eps = 0.f;
  bool residual = false;     // add into the output instead of overwriting it
  Tensor codes_norm{};       // fp32 [out]: the norm weight of the layer that reads the output's
                             // codes (MatmulLayer), or empty
};

// The device tensors that place a ragged batch's rows in their sequences and in the paged KV
// cache (kernels::BatchRows, which says what each holds).
struct BatchIndex {
  Tensor positions, slots, row_seqs, seq_starts, block_tables;
};

class RopeStoreLayer;

// The rope_store that follows a q/k/v projection (RopeStoreLayer::forward's arguments but q, k
// and v), for the projection to fold into its kernel.
struct RopeStoreStep {
  const RopeStoreLayer& layer;
  const BatchIndex& rows;
  const Tensor& k_cache;
  const Tensor& v_cache;
};

// {x [n, in], optionally x's codes} -> {y_i [n, out_i], optionally y's codes}: y_i = norm(x)
// w_i^T (+ b_i), every projection in one kernel (q, k and v of a block share one input), or one
// per storage when the weights mix dtypes. x's codes (kernels.h: MatmulInput::codes), where
// given, were written by the layer that wrote x; y's codes (one projection only) are written
// for the layer that reads y, times options.codes_norm.
class MatmulLayer final : public Layer {
 public:
  MatmulLayer(std::string name, std::vector<Weight> weights, std::vector<Tensor> biases = {},
              ProjectionOptions options = {});
  using Layer::forward;
  // forward({x, x's codes}, {q, k, v}) and then `rope` of q, k and v: in one kernel where the
  // device has one for these weights (kernels.h: MatmulRopeStoreFn) and they are one storage.
  void forward(TensorList in, TensorList out, const DeviceContext& ctx,
               const RopeStoreStep& rope) const;

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
  // base_forward, with `rope` (or null) folded into the kernel.
  void project(TensorList in, TensorList out, const kernels::RopeStoreArgs* rope,
               const DeviceContext& ctx) const;
  std::vector<Weight> projections_;
  std::vector<Tensor> biases_;  // one per projection, empty where it has none
  ProjectionOptions options_;
  std::vector<std::vector<size_t>> launches_;  // projections by storage: one kernel call each
};

// {x [n, in], optionally x's codes} -> {h [n, hidden], optionally h's codes}: h =
// silu(norm(x) w_gate^T) * (norm(x) w_up^T), the first half of a SwiGLU feed-forward in one
// kernel; the codes as MatmulLayer's (h's for the projection that reads h).
class GatedMatmulLayer final : public Layer {
 public:
  GatedMatmulLayer(std::string name, Weight w_gate, Weight w_up, ProjectionOptions options = {});

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
  Weight gate_, up_;
  ProjectionOptions options_;
};

// Rotary embedding of q (in place) and k, and the batch's keys and values stored in the cache at
// the rows' slots: q [n, heads * head_dim], k, v [n, kv_heads * head_dim]; caches
// [blocks * block_size, kv_heads * head_dim].
class RopeStoreLayer final : public Layer {
 public:
  RopeStoreLayer(std::string name, Tensor cos_sin, int head_dim, int block_size);
  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const BatchIndex& rows,
               const Tensor& k_cache, const Tensor& v_cache, const DeviceContext& ctx) const;
  // The kernels' arguments of forward(q, k, v, rows, k_cache, v_cache) but q, k and v.
  kernels::RopeStoreArgs args(const BatchIndex& rows, const Tensor& k_cache,
                              const Tensor& v_cache) const;

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
  int head_dim_;
  int block_size_;
};

// Causal attention of each row over its sequence's cached positions, read through its block
// table: q, out [n, n_heads * head_dim]; optionally out's codes for wo (kernels.h:
// PagedAttentionFn). `max_positions` bounds every position + 1 (it sizes the kernels' work
// split, and must hold for every replay of a recorded CUDA graph).
class AttentionLayer final : public Layer {
 public:
  AttentionLayer(std::string name, kernels::AttentionShape shape, int block_size, int max_positions);
  void forward(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache, const BatchIndex& rows,
               const Tensor& out, const DeviceContext& ctx, const Tensor& out_codes = {}) const;

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
  kernels::AttentionShape shape_;
  int block_size_;
  int max_positions_;
};

}  // namespace kuiper
