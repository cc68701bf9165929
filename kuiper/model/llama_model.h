#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "kuiper/base/cuda_graph.h"
#include "kuiper/base/device_context.h"
#include "kuiper/model/config.h"
#include "kuiper/model/model_file.h"
#include "kuiper/op/layers.h"

namespace kuiper {

struct ModelOptions {
  Device device = Device::kCPU;
  int context = 0;      // KV cache length in tokens; 0: the model's maximum, capped at 4096
  int max_batch = 512;  // positions per forward pass; longer prompts are prefilled in chunks
  bool cuda_graphs = true;  // replay each CUDA decode step from one recorded graph
  bool mmap = true;         // map the weights (false: read them into private memory)
  int kv_block_size = 16;   // positions per KV cache block
  int kv_blocks = 0;        // blocks in the KV pool; 0: enough for one sequence of `context`
};

// One sequence's share of a batched forward pass: its tokens at positions [start, start + n),
// their keys and values stored in the sequence's cache blocks (position p in
// blocks[p / kv_block_size()]), which hold every earlier position already.
struct SequenceChunk {
  std::span<const int32_t> tokens;
  int32_t start = 0;
  std::span<const int32_t> blocks;
  bool logits = false;  // whether the logits of its last token are wanted
};

// The Llama family (Llama 2 and 3, TinyLlama, Qwen2): weights mapped from the model file (and
// uploaded once to the GPU for --device cuda), a KV cache, and a forward pass over a batch of
// positions. The model's variants are data in its ModelConfig.
class LlamaModel {
 public:
  static std::unique_ptr<LlamaModel> load(const std::filesystem::path& path,
                                          const ModelOptions& options = {});
  LlamaModel(ModelFile file, const ModelOptions& options);
  ~LlamaModel();

  const ModelConfig& config() const { return file_.config(); }
  const ModelFile& file() const { return file_; }
  int context() const { return context_; }
  Device device() const { return ctx_.device(); }
  const DeviceContext& device_context() const { return ctx_; }

  // Feeds tokens at positions [pos, pos + n): fills the KV cache there and returns fp32 logits on
  // the host, [1, vocab] for the last position, or [n, vocab] with all_positions.
  Tensor forward(std::span<const int32_t> tokens, int32_t pos, bool all_positions = false);
  // Feeds tokens like forward() and returns the most likely next token; the argmax runs on the
  // device, so only the id crosses to the host.
  int32_t forward_greedy(std::span<const int32_t> tokens, int32_t pos);

  // The batched forward pass (kuiper/engine): every chunk's tokens through the network at once;
  // returns device fp32 logits [chunks wanting logits, vocab], in chunk order, valid until the
  // next forward call. At most max_batch() tokens in all.
  Tensor forward_batch(std::span<const SequenceChunk> chunks);
  int max_batch() const { return batch_; }
  int kv_block_size() const { return kv_block_size_; }
  int kv_blocks() const { return kv_blocks_; }

  // Bytes of weights one decoding step reads (every matrix once, plus the norms).
  size_t weight_bytes_per_token() const;

 private:
  struct Block;
  struct Activations;

  Tensor place(const Tensor& host_tensor);
  Weight place(const Weight& host_weight);
  void check_fits(int64_t n, int32_t pos) const;
  // Uploads tokens (at most max_batch) and their positions, then runs the network on them; leaves
  // the last block's output (the residual stream) in rows [0, n) of the activations.
  void run_batch(std::span<const int32_t> tokens, int32_t pos);
  // One position through the network and the classifier into row 0 of the logits. On CUDA the
  // whole step is replayed from a graph; only the token and position are uploaded.
  void decode(int32_t token, int32_t pos);
  // Device work only: the embedding and every block.
  void compute(const Activations& a) const;
  void run_block(const Block& b, int l, const Activations& a) const;
  // Feeds tokens (decode step or chunked prefill) and returns the device logits of the last one.
  Tensor last_logits(std::span<const int32_t> tokens, int32_t pos);
  // Logits (final norm, then classifier) of residual-stream rows [first, first + count), into
  // the device logits buffer.
  Tensor classify(int64_t first, int64_t count);

  ModelFile file_;
  DeviceContext ctx_;
  int context_;
  int batch_;
  int kv_block_size_;
  int kv_blocks_;
  std::unordered_map<const void*, Tensor> placed_;  // host weight -> its copy on the device

  std::unique_ptr<EmbeddingLayer> embedding_;
  std::vector<Block> blocks_;
  std::unique_ptr<MatmulLayer> classifier_;  // with the final norm folded in
  std::unique_ptr<RopeStoreLayer> rope_store_;
  std::unique_ptr<AttentionLayer> attention_;

  std::vector<Tensor> k_cache_, v_cache_;  // per layer, [context, kv_dim]
  std::unique_ptr<Activations> act_;
  std::unique_ptr<Activations> step_act_;  // one position, tokens/positions viewing step_
  Tensor step_;                            // int32 [2]: a decode step's token and position
  bool use_graphs_;
  int eager_steps_ = 0;
  std::unique_ptr<CudaGraph> decode_graph_;
};

}  // namespace kuiper
