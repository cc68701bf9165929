// Tensor parallelism (LlamaModel split over ranks): on the CPU the ranks are threads of the test,
// so every split runs here; CUDA variants need as many GPUs and skip without them.
#include <fstream>

#include "kuiper/model/llama_model.h"
#include "test/test_util.h"

namespace kuiper::test {
namespace {

bool have_ranks(Device device, int ranks) {
  return device == Device::kCPU || cuda_device_count() >= ranks;
}

void skip_without_ranks(Device device, int ranks) {
  if (!have_ranks(device, ranks))
    GTEST_SKIP() << ranks << " CUDA ranks need " << ranks << " GPUs, found " << cuda_device_count()
                 << (cuda_compiled() ? "" : " (built without CUDA)");
}

std::unique_ptr<LlamaModel> load_split(Device device, const std::filesystem::path& path, int ranks,
                                       ModelOptions options = {}) {
  options.device = device;
  options.tensor_parallel = ranks;
  return LlamaModel::load(path, options);
}

// Every prompt position's logits of `split` against `whole`, within fp32 rounding: the ranks'
// partial sums are added in another order than one matrix product adds them (seen: up to
// 2e-5 on the random model, 1e-6 on the kjv models).
void expect_same_logits(LlamaModel& split, LlamaModel& whole, std::span<const int32_t> prompt,
                        const std::string& label) {
  const Tensor a = split.forward(prompt, 0, /*all_positions=*/true);
  const Tensor b = whole.forward(prompt, 0, /*all_positions=*/true);
  EXPECT_LT(max_rel_diff(a, b), 5e-5) << label;
}

class TensorParallelGolden : public DeviceModelTest {
 protected:
  void SetUp() override {
    DeviceModelTest::SetUp();
    if (!IsSkipped()) skip_without_ranks(device(), 2);
  }
  std::filesystem::path file() const {
    return exported_model("--hf {shared}/models/" + model() + "-kjv");
  }
};

// llama2-kjv splits its 2 KV heads one a rank; qwen2-kjv and llama3-kjv have one KV head, which
// both ranks hold (replicated), each with one of the two query heads.
TEST_P(TensorParallelGolden, TwoRanksDecodeTheGoldenGreedyIds) {
  auto m = load_split(device(), file(), 2);
  ASSERT_EQ(m->tensor_parallel(), 2);
  expect_greedy_matches_golden(*m, model());
}

TEST_P(TensorParallelGolden, TwoRanksGiveTheUnsplitLogits) {
  auto split = load_split(device(), file(), 2);
  auto whole = load_split(device(), file(), 1);
  const auto& cases = golden().at(model()).at(model() == "llama2" ? "prompts" : "raw");
  for (const auto& c : cases)
    expect_same_logits(*split, *whole, c.at("prompt_ids").get<std::vector<int32_t>>(),
                       c.dump().substr(0, 60));
}

INSTANTIATE_TEST_SUITE_P(All, TensorParallelGolden, all_devices_and_models(), device_model_label);

// A random Qwen2-shaped model (q/k/v biases, untied classifier) with 8 query heads and 2 KV
// heads: 2 ranks hold one KV head each, 4 and 8 ranks replicate them (2 and 4 ranks a KV head).
std::filesystem::path random_model(const std::string& extra_args = "") {
  const auto config = bin_dir().parent_path() / "test_models" / "tensor_parallel_config.json";
  std::filesystem::create_directories(config.parent_path());
  std::ofstream(config) << R"({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
    "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 8,
    "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 128,
    "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": false,
    "bos_token_id": 1, "eos_token_id": 2})";
  return exported_model("--random " + config.string() + " --seed 5 " + extra_args);
}

const std::vector<int32_t> kPrompt = {1, 17, 300, 42, 9, 511, 128, 64, 7, 250, 33, 2, 90};

// CUDA: as many of the rank counts as there are GPUs (skipped below 2).
class TensorParallelRandom : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override { skip_without_ranks(GetParam(), 2); }
};

TEST_P(TensorParallelRandom, EveryRankCountGivesTheUnsplitLogits) {
  const auto path = random_model();
  auto whole = load_split(GetParam(), path, 1);
  for (const int ranks : {2, 4, 8}) {
    if (!have_ranks(GetParam(), ranks)) break;
    auto split = load_split(GetParam(), path, ranks);
    EXPECT_EQ(split->share().kv_heads, 1);
    expect_same_logits(*split, *whole, kPrompt, std::to_string(ranks) + " ranks, prefill");
    // Decoding one token at a time reads every rank's share of the KV cache.
    for (size_t i = 0; i < kPrompt.size(); ++i) {
      const Tensor a = split->forward({&kPrompt[i], 1}, int32_t(i));
      const Tensor b = whole->forward({&kPrompt[i], 1}, int32_t(i));
      EXPECT_LT(max_rel_diff(a, b), 5e-5) << ranks << " ranks, decode position " << i;
    }
  }
}

// Group-quantized matrices split at whole groups: wo's 32 input columns a rank at 8 ranks.
TEST_P(TensorParallelRandom, QuantizedWeightsSplitAtWholeGroups) {
  for (const std::string args : {"--dtype int8 --group-size 32", "--dtype q4 --group-size 32"}) {
    const auto path = random_model(args);
    auto whole = load_split(GetParam(), path, 1);
    for (const int ranks : {2, 8}) {
      if (!have_ranks(GetParam(), ranks)) break;
      auto split = load_split(GetParam(), path, ranks);
      expect_same_logits(*split, *whole, kPrompt, args + ", " + std::to_string(ranks) + " ranks");
    }
  }
}

// The batched forward pass: two sequences in their own cache blocks, prefill then decode steps
// (4 ranks, or 2 on a machine of 2 or 3 GPUs).
TEST_P(TensorParallelRandom, BatchedForwardGivesTheUnsplitLogits) {
  const auto path = random_model();
  auto whole = load_split(GetParam(), path, 1);
  auto split = load_split(GetParam(), path, have_ranks(GetParam(), 4) ? 4 : 2);
  const std::vector<int32_t> a_blocks = {0, 1}, b_blocks = {2, 3};
  const std::span<const int32_t> prompt(kPrompt);
  const auto logits_of = [&](LlamaModel& m, std::span<const SequenceChunk> chunks) {
    return m.forward_batch(chunks).to(Device::kCPU, &m.device_context());
  };
  const SequenceChunk prefill[] = {{prompt.first(5), 0, a_blocks, true},
                                   {prompt.first(9), 0, b_blocks, true}};
  EXPECT_LT(max_rel_diff(logits_of(*split, prefill), logits_of(*whole, prefill)), 5e-5);
  const SequenceChunk step[] = {{prompt.subspan(5, 1), 5, a_blocks, true},
                                {prompt.subspan(9, 1), 9, b_blocks, true}};
  for (int i = 0; i < 3; ++i)  // on CUDA: eager, recorded, replayed
    EXPECT_LT(max_rel_diff(logits_of(*split, step), logits_of(*whole, step)), 5e-5) << "step " << i;
}

INSTANTIATE_TEST_SUITE_P(Devices, TensorParallelRandom,
                         ::testing::Values(Device::kCPU, Device::kCUDA),
                         [](const auto& info) { return std::string(device_name(info.param)); });

// ggml's blocks split at whole blocks: qwen2-kjv's q8_0 GGUF file, wo's and w2's 64 and 192
// input columns a rank (two and six blocks of 32).
TEST(TensorParallel, GgufBlocksSplitAtWholeBlocks) {
  KUIPER_REQUIRE_SHARED("models/qwen2-kjv");
  const auto path = gguf_model("{shared}/models/qwen2-kjv --type q8_0");
  auto split = load_split(Device::kCPU, path, 2);
  auto whole = load_split(Device::kCPU, path, 1);
  expect_same_logits(*split, *whole, kPrompt, "q8_0 GGUF, 2 ranks");
}

// llama2-kjv has 6 query heads and 2 KV heads: 4 ranks cannot split the heads, 3 cannot split
// the KV heads (nor replicate them evenly).
TEST(TensorParallel, BadSplitsAreClearErrors) {
  KUIPER_REQUIRE_SHARED("models/llama2-kjv");
  const auto path = exported_model("--hf {shared}/models/llama2-kjv");
  const auto refusal = [&](int ranks) -> std::string {
    try {
      load_split(Device::kCPU, path, ranks);
    } catch (const Error& e) {
      return e.what();
    }
    return "loaded";
  };
  EXPECT_NE(refusal(4).find("does not split over 4 tensor-parallel ranks: its 6 query heads do "
                            "not divide by 4"),
            std::string::npos)
      << refusal(4);
  EXPECT_NE(refusal(3).find("its 2 KV heads neither divide by 3"), std::string::npos) << refusal(3);
  EXPECT_NE(refusal(0).find("--tensor-parallel must be at least 1, got 0"), std::string::npos)
      << refusal(0);
}

}  // namespace
}  // namespace kuiper::test
