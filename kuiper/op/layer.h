#pragma once
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kuiper/base/device_context.h"
#include "kuiper/tensor/tensor.h"
#include "kuiper/tensor/weight.h"

namespace kuiper {

enum class LayerType { kEmbedding, kMatmul, kGatedMatmul, kRopeStore, kAttention };
std::string_view layer_type_name(LayerType type);

// The tensors a layer reads or writes, written as a braced list at the call site:
// `wq.forward({xb}, {q}, ctx)`. It views its elements; it never outlives the call.
class TensorList {
 public:
  TensorList(std::initializer_list<Tensor> tensors) : items_(tensors.begin(), tensors.size()) {}
  TensorList(std::span<const Tensor> tensors) : items_(tensors) {}
  size_t size() const { return items_.size(); }
  const Tensor& operator[](size_t i) const { return items_[i]; }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::span<const Tensor> items_;
};

// One step of the network. forward() checks what every layer needs checked (how many tensors,
// all on the context's device), then base_forward() checks shapes and calls the kernel that the
// registry holds for the tensors' device and dtype. Outputs are written in place; const refers
// to the layer's configuration, not to the memory behind output tensors. The last
// `optional_inputs` inputs and `optional_outputs` outputs (an input's codes: kernels.h's
// MatmulInput::codes) may be left out or empty.
class Layer {
 public:
  Layer(LayerType type, std::string name, int n_inputs, int n_outputs,
        std::vector<Tensor> weights = {}, int optional_inputs = 0, int optional_outputs = 0);
  virtual ~Layer() = default;

  LayerType type() const { return type_; }
  const std::string& name() const { return name_; }
  // Every tensor the layer reads from its own memory: weight values and scales, biases, norms.
  std::span<const Tensor> weights() const { return weights_; }
  void forward(TensorList inputs, TensorList outputs, const DeviceContext& ctx) const;

 protected:
  virtual void base_forward(TensorList inputs, TensorList outputs,
                            const DeviceContext& ctx) const = 0;
  // forward()'s checks, for a layer's own forward that does not go through base_forward.
  void check_forward(TensorList inputs, TensorList outputs, const DeviceContext& ctx) const;
  // Throws, naming this layer, unless `t` has the expected shape.
  void expect_shape(const Tensor& t, const Shape& shape, std::string_view what) const;
  // The tensors behind `w` (values, and scales when quantized), for weights_.
  static void append_tensors(std::vector<Tensor>& list, const Weight& w);

  std::vector<Tensor> weights_;

 private:
  LayerType type_;
  std::string name_;
  int n_inputs_;
  int n_outputs_;
  int optional_inputs_;
  int optional_outputs_;
};

}  // namespace kuiper
