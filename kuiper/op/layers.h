#pragma once
// The layers of a Llama-family transformer. Each one's .cpp checks shapes and calls the kernel
// registered for its tensors' device and dtype (kernels/kernels.h documents every kernel).
#include "kernels/kernels.h"
#include "kuiper/op/layer.h"

namespace kuiper {

// {tokens int32 [n]} -> {x fp32 [n, dim]}
class EmbeddingLayer final : public Layer {
 public:
  EmbeddingLayer(std::string name, Tensor table);
  const Tensor& table() const { return weights_[0]; }

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
};

// {x [n, dim]} -> {y [n, dim]}; y may be x.
class RmsNormLayer final : public Layer {
 public:
  RmsNormLayer(std::string name, Tensor weight, float eps);

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
  float eps_;
};

// {x [n, in]} -> {y [n, out]} with y = x w^T (+ bias).
class MatmulLayer final : public Layer {
 public:
  MatmulLayer(std::string name, Tensor weight, Tensor bias = {});
  int64_t in_features() const { return weights_[0].dim(1); }
  int64_t out_features() const { return weights_[0].dim(0); }

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
};

// {x [n, heads * head_dim], positions int32 [n]} -> {x}, rotated in place.
class RopeLayer final : public Layer {
 public:
  RopeLayer(std::string name, Tensor cos_sin, int head_dim);

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
  int head_dim_;
};

// {rows [n, width], positions int32 [n]} -> {cache [max_seq, width]}: row i goes to positions[i].
class KvStoreLayer final : public Layer {
 public:
  explicit KvStoreLayer(std::string name);

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
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

// {gate, up} -> {silu(gate) * up}; the output may be either input.
class SwiGluLayer final : public Layer {
 public:
  explicit SwiGluLayer(std::string name);

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
};

// {a, b} -> {a + b}; the output may be either input.
class AddLayer final : public Layer {
 public:
  explicit AddLayer(std::string name);

 private:
  void base_forward(TensorList in, TensorList out, const DeviceContext& ctx) const override;
};

}  // namespace kuiper
