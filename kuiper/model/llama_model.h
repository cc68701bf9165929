#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "kuiper/base/cuda_graph.h"
#include "kuiper/base/device_context.h"
#include "kuiper/model/config.h"
#include "kuiper/model/model_file.h"
#include "kuiper/model/rank_share.h"
#include "kuiper/op/layers.h"
#include "kuiper/parallel/communicator.h"

namespace kuiper {

struct ModelOptions {
  Device device = Device::kCPU;
  int context = 0;      // KV cache length in tokens; 0: the model's maximum, capped at 4096
  int max_batch = 512;  // positions per forward pass; longer prompts are prefilled in chunks
  bool cuda_graphs = true;  // replay each CUDA decode step from one recorded graph
  bool mmap = true;         // map the weights (false: read them into private memory)
  int kv_block_size = 16;   // positions per KV cache block
  int kv_blocks = 0;        // blocks in the KV pool; 0: enough for one sequence of `context`
  DType kv_dtype = DType::kF32;  // of the KV cache: fp32, fp16 or bf16
  int max_sequences = 64;   // sequences one batched forward pass may hold
  // Ranks the model is split over (tensor parallelism): threads of this process on the CPU
  // (each running its share of every matrix; for tests), GPUs 0 .. N-1 on CUDA (over NCCL).
  int tensor_parallel = 1;
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
//
// Tensor parallelism: each rank is a LlamaModel holding its RankShare of the matrices and of the
// KV cache, meeting the others through its Communicator. The model load() returns is rank 0; it
// owns the other ranks and their threads, and each of its forward calls runs on every rank at
// once. Every rank computes whole logits (gathered from the vocabulary shards); rank 0's are
// returned. One rank is the same code with collectives that do nothing.
class LlamaModel {
 public:
  static std::unique_ptr<LlamaModel> load(const std::filesystem::path& path,
                                          const ModelOptions& options = {});
  // One rank: `comm`'s rank of its size (nullptr: the only one). Ignores options.tensor_parallel;
  // a rank's forward calls must be made on every rank of the group at once.
  LlamaModel(ModelFile file, const ModelOptions& options,
             std::unique_ptr<Communicator> comm = nullptr);
  ~LlamaModel();

  const ModelConfig& config() const { return file_.config(); }
  const ModelFile& file() const { return file_; }
  int context() const { return context_; }
  Device device() const { return ctx_.device(); }
  const DeviceContext& device_context() const { return ctx_; }
  int tensor_parallel() const { return comm_->size(); }
  const RankShare& share() const { return share_; }

  // One sequence at positions [pos, pos + n) in the cache's first blocks (a batch of one for
  // forward_batch): fills the KV cache there and returns fp32 logits on the host, [1, vocab] for
  // the last position, or [n, vocab] with all_positions. Longer inputs run in chunks of
  // max_batch().
  Tensor forward(std::span<const int32_t> tokens, int32_t pos, bool all_positions = false);
  // Feeds tokens like forward() and returns the most likely next token; the argmax runs on the
  // device, so only the id crosses to the host.
  int32_t forward_greedy(std::span<const int32_t> tokens, int32_t pos);

  // The batched forward pass (kuiper/engine): every chunk's tokens through the network at once;
  // returns device fp32 logits [chunks wanting logits, vocab], in chunk order, valid until the
  // next forward call. At most max_batch() tokens in all.
  Tensor forward_batch(std::span<const SequenceChunk> chunks);
  int max_batch() const { return batch_; }
  int max_sequences() const { return max_seqs_; }
  int kv_block_size() const { return kv_block_size_; }
  int kv_blocks() const { return kv_blocks_; }
  DType kv_dtype() const { return k_cache_.front().dtype(); }
  // Bytes the KV cache holds per cached token (keys and values of every layer; of this rank).
  size_t kv_bytes_per_token() const;

  // Bytes of weights one decoding step reads (every matrix once, plus the norms; of this rank).
  size_t weight_bytes_per_token() const;

  // Seconds the collectives of one decoding step of `rows` sequences take on their own (two
  // all-reduces of the residual stream a block, one all-gather of the logits), as the median of
  // `repeat` runs on every rank; 0 for one rank. For llama_bench.
  double collective_seconds_per_step(int64_t rows, int repeat);

 private:
  struct Block;
  struct Activations;
  struct Peers;

  // Runs work(model) on every rank at once (rank 0: this model, on the calling thread) and
  // returns rank 0's result.
  template <class Work>
  auto on_every_rank(const Work& work);
  // One rank's part of the public forward calls.
  Tensor forward_rank(std::span<const int32_t> tokens, int32_t pos, bool all_positions);
  int32_t forward_greedy_rank(std::span<const int32_t> tokens, int32_t pos);
  Tensor forward_batch_rank(std::span<const SequenceChunk> chunks);

  Tensor place(const Tensor& host_tensor);
  Weight place(const Weight& host_weight);
  // Two float weights of one shape into one device allocation, a's rows first (others as
  // place()): a batched step's GEMMs take such a pair (k and v, gate and up) as one strided call.
  std::pair<Weight, Weight> place_pair(const Weight& a, const Weight& b);
  void check_chunks(std::span<const SequenceChunk> chunks) const;
  // Uploads the batch's tokens and row index (padded to `rows` rows of `seqs` sequences for a
  // recorded decode step) and returns the activations that view them.
  Activations stage(std::span<const SequenceChunk> chunks, int64_t rows, int64_t seqs);
  // Device work only: the embedding and every block.
  void compute(const Activations& a) const;
  void run_block(const Block& b, int l, const Activations& a) const;
  // Logits (final norm, then classifier) of residual-stream rows [first, first + count), into
  // the device logits buffer.
  Tensor classify(int64_t first, int64_t count);
  // The single-sequence entry: chunks of at most max_batch() tokens in the pool's first blocks;
  // returns the device logits of the last token.
  SequenceChunk identity_chunk(std::span<const int32_t> tokens, int32_t pos, bool logits) const;
  Tensor last_logits(std::span<const int32_t> tokens, int32_t pos);

  ModelFile file_;
  std::unique_ptr<Communicator> comm_;  // before ctx_: outlives the stream its collectives use
  DeviceContext ctx_;
  RankShare share_;
  int context_;
  int batch_;
  // Host tensor (memory, bytes) -> its copy on the device.
  std::map<std::pair<const void*, size_t>, Tensor> placed_;

  std::unique_ptr<EmbeddingLayer> embedding_;
  std::vector<Block> blocks_;
  std::unique_ptr<MatmulLayer> classifier_;  // with the final norm folded in
  std::unique_ptr<RopeStoreLayer> rope_store_;
  std::unique_ptr<AttentionLayer> attention_;

  std::vector<Tensor> k_cache_, v_cache_;  // per layer, [(kv_blocks + 1) * block_size, kv_dim]
  int max_seqs_;
  int kv_block_size_;
  int kv_blocks_;        // for sequences; one more block takes the padding rows of decode graphs
  int max_table_;        // entries of a block table: blocks of a context-long sequence
  std::unique_ptr<Activations> act_;
  Tensor index_;                        // int32 on the device: a batch's tokens and row index
  std::vector<int32_t> staging_;        // the same on the host
  std::vector<int32_t> identity_table_;  // blocks 0, 1, ...: the single-sequence entry's
  bool use_graphs_;
  // Decode steps (every sequence feeds one token) replay a graph per padded row count.
  std::map<int64_t, std::unique_ptr<CudaGraph>> decode_graphs_;
  std::map<int64_t, int> eager_steps_;
  // Rank 0 of a group from load(): the threads and models of the other ranks. Last, so that it
  // goes first (each rank is destroyed on its own thread).
  std::unique_ptr<Peers> peers_;
};

}  // namespace kuiper
