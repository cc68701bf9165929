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
};

// {x [n, in]} -> {y_i [n, out_i]}: y_i = norm(x) w_i^T (+ b_i), every projection in one kernel
// (q, k and v of a block share one input).
class MatmulLayer final : public Layer {
 public:
  MatmulLayer(std::string name, std::vector<Weight> weights, std::vector<Tensor> biases = {},
              ProjectionOptions options = {});

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
  std::vector<Weight> projections_;
  std::vector<Tensor> biases_;  // one per projection, empty where it has none
  ProjectionOptions options_;
};

// {x [n, in]} -> {h [n, hidden]}: h = silu(norm(x) w_gate^T) * (norm(x) w_up^T), the first half
// of a SwiGLU feed-forward in one kernel.
class GatedMatmulLayer final : public Layer {
 public:
  GatedMatmulLayer(std::string name, Weight w_gate, Weight w_up, ProjectionOptions options = {});

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
  Weight gate_, up_;
  ProjectionOptions options_;
};

// {q [n, heads * head_dim], k, v [n, kv_heads * head_dim], positions int32 [n]}
//   -> {q, k_cache, v_cache [max_seq, kv_heads * head_dim]}:
// rotary embedding of q (in place) and k, and the batch's keys and values stored in the cache.
class RopeStoreLayer final : public Layer {
 public:
  RopeStoreLayer(std::string name, Tensor cos_sin, int head_dim);

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
  int head_dim_;
};

// {q [n, n_heads * head_dim], k_cache, v_cache [max_seq, n_kv_heads * head_dim], positions [n]}
//   -> {out [n, n_heads * head_dim]}
class AttentionLayer final : public Layer {
 public:
  AttentionLayer(std::string name, kernels::AttentionShape shape);

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
  kernels::AttentionShape shape_;
};

}  // namespace kuiper
