#pragma once
#include <optional>
#include <span>
#include <string>

#include "kuiper/base/device.h"
#include "kuiper/base/dtype.h"
#include "kuiper/sampler/sampler.h"

namespace kuiper::demo {

struct Options {
  std::string model_path;
  std::string tokenizer_path;
  std::string prompt;
  int steps = 256;  // max new tokens
  SamplerOptions sampler;
  bool seed_given = false;
  Device device = Device::kCPU;
  int context = 0;  // 0: the model's, capped
  int kv_blocks = 0;  // KV cache blocks; 0: room for one sequence of `context` (llama_server: more)
  DType kv_dtype = DType::kF32;  // of the KV cache
  int max_sequences = 64;        // sequences one forward pass holds (llama_server: --parallel)
  int max_batch = 512;           // rows one forward pass holds (llama_server: --batch-size)
  int threads = 0;  // 0: all cores
  int tensor_parallel = 1;  // ranks the model is split over: CPU threads, or GPUs
  bool no_mmap = false;
  bool tokenize_only = false;
  bool print_ids = false;
  bool chat = false;
  std::optional<std::string> system;
  std::string chat_template;  // empty: from the model file
  bool verbose = false;
  bool help = false;
};

// Parses argv. Throws kuiper::Error for unknown options, missing or malformed values.
Options parse_options(std::span<char* const> args);
std::string usage(const std::string& program);

}  // namespace kuiper::demo
