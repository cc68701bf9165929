// The model against Hugging Face transformers' fp32 outputs (shared/models/golden_public.json).
#include "kuiper/model/llama_model.h"

#include <algorithm>
#include <numeric>

#include "test/test_util.h"

namespace kuiper::test {
namespace {

std::vector<int32_t> ids_of(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

void skip_without(Device device) {
  if (device == Device::kCUDA && cuda_device_count() == 0)
    GTEST_SKIP() << "no CUDA device" << (cuda_compiled() ? "" : " (built without CUDA)");
}

std::unique_ptr<LlamaModel> load_on(Device device, const std::string& export_args,
                                    ModelOptions options = {}) {
  options.device = device;
  return LlamaModel::load(exported_model(export_args), options);
}

// Tests that run on each device (CUDA variants skip without a GPU).
class OnDevice : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override { skip_without(GetParam()); }
  std::unique_ptr<LlamaModel> load(const std::string& export_args, ModelOptions options = {}) {
    return load_on(GetParam(), export_args, options);
  }
};

std::string device_label(const ::testing::TestParamInfo<Device>& info) {
  return std::string(device_name(info.param));
}

// Golden tests run for each device and each model.
class Golden : public DeviceModelTest {
 protected:
  const nlohmann::json& cases() const { return golden().at(model()); }
  std::unique_ptr<LlamaModel> load(const std::string& export_args) const {
    return load_on(device(), export_args);
  }
};

// Every position's logits have the golden top-20 ids, and their values within 1e-3 relative.
void expect_matches_top20(LlamaModel& model, const nlohmann::json& c, const std::string& label) {
  const auto prompt = ids_of(c.at("prompt_ids"));
  const Tensor logits = model.forward(prompt, 0, /*all_positions=*/true);
  const int64_t vocab = logits.dim(1);
  const auto& top20 = c.at("prompt_top20");
  ASSERT_EQ(top20.size(), prompt.size()) << label;
  for (size_t i = 0; i < prompt.size(); ++i) {
    const float* row = logits.span<float>().data() + i * vocab;
    std::vector<int32_t> order(static_cast<size_t>(vocab));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + 20, order.end(),
                      [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    std::vector<int32_t> ours(order.begin(), order.begin() + 20), theirs;
    for (const auto& pair : top20[i]) {
      const int32_t id = pair[0];
      const float expected = pair[1];
      theirs.push_back(id);
      EXPECT_NEAR(row[id], expected, 1e-3 * std::max(1.f, std::fabs(expected)))
          << label << " position " << i << " token " << id;
    }
    std::sort(ours.begin(), ours.end());
    std::sort(theirs.begin(), theirs.end());
    EXPECT_EQ(ours, theirs) << label << " position " << i;
  }
}

// Every prompt position's logits match transformers' (Llama 2: its prompts, through the HF, the
// legacy and, when its folder is there, the Meta export; Qwen2 and Llama 3: their raw prompts).
TEST_P(Golden, PromptLogitsMatchTransformers) {
  std::vector<std::string> exports = {"--hf {shared}/models/" + model() + "-kjv"};
  if (model() == "llama2") {
    exports.push_back("--hf {shared}/models/llama2-kjv --legacy");
    if (std::filesystem::exists(shared_dir() / "models/llama2-kjv-meta"))
      exports.push_back("--meta-llama {shared}/models/llama2-kjv-meta");
  }
  const auto& prompts = cases().at(model() == "llama2" ? "prompts" : "raw");
  for (const std::string& args : exports) {
    auto m = load(args);
    for (const auto& p : prompts) expect_matches_top20(*m, p, args + ": " + p.dump().substr(0, 60));
  }
}

// Greedy decoding one token at a time through the KV cache reproduces transformers' greedy ids
// (stopping at and including a stop id), for every golden prompt.
TEST_P(Golden, DecodingReproducesTransformers) {
  auto m = load("--hf {shared}/models/" + model() + "-kjv");
  expect_greedy_matches_golden(*m, model());
}

INSTANTIATE_TEST_SUITE_P(All, Golden, all_devices_and_models(), device_model_label);

// Prefill in one batch, in chunks, or one token at a time (on CUDA: replayed graphs, and eager
// steps): the same logits.
using LlamaModelOnDevice = OnDevice;

TEST_P(LlamaModelOnDevice, BatchingDoesNotChangeLogits) {
  KUIPER_REQUIRE_SHARED("models/qwen2-kjv");
  const std::string args = "--hf {shared}/models/qwen2-kjv";
  const std::vector<int32_t> tokens = {9707, 11, 1879, 0, 220, 108386, 3837, 99489, 1773, 220};
  const Tensor whole = load(args)->forward(tokens, 0, true);
  ModelOptions chunked;
  chunked.max_batch = 3;
  EXPECT_LT(max_rel_diff(load(args, chunked)->forward(tokens, 0, true), whole), 1e-4);
  for (const bool graphs : {true, false}) {
    ModelOptions options;
    options.cuda_graphs = graphs;
    auto model = load(args, options);
    for (size_t i = 0; i < tokens.size(); ++i) {
      const Tensor step = model->forward({&tokens[i], 1}, int32_t(i));
      EXPECT_LT(max_rel_diff(step, whole.rows(int64_t(i), int64_t(i) + 1)), 1e-4)
          << "position " << i << (graphs ? " with" : " without") << " graphs";
    }
  }
}

// fp16 keeps every prompt position's top-1 token. bf16 (8 mantissa bits) may swap near-ties:
// its top-1 must be among the golden tokens within 0.1 of the best logit.
TEST_P(LlamaModelOnDevice, Fp16AndBf16ExportsKeepTheTopToken) {
  KUIPER_REQUIRE_SHARED("models/golden_public.json");
  KUIPER_REQUIRE_SHARED("models/llama2-kjv");
  for (const std::string dtype : {"fp16", "bf16"}) {
    auto model = load("--hf {shared}/models/llama2-kjv --dtype " + dtype);
    EXPECT_EQ(model->config().dtype, *dtype_from_name(dtype));
    for (const auto& p : golden().at("llama2").at("prompts")) {
      const auto prompt = ids_of(p.at("prompt_ids"));
      const Tensor logits = model->forward(prompt, 0, true);
      for (size_t i = 0; i < prompt.size(); ++i) {
        const auto row = logits.span<float>().subspan(i * size_t(logits.dim(1)), size_t(logits.dim(1)));
        const auto top = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
        const auto& golden_top = p.at("prompt_top20")[i];
        std::vector<int32_t> acceptable = {golden_top[0][0].get<int32_t>()};
        for (const auto& pair : golden_top)
          if (dtype == "bf16" && pair[1].get<float>() >= golden_top[0][1].get<float>() - 0.1f)
            acceptable.push_back(pair[0]);
        EXPECT_NE(std::find(acceptable.begin(), acceptable.end(), top), acceptable.end())
            << dtype << " '" << p.at("prompt").get<std::string>() << "' position " << i;
      }
    }
  }
}

// A 16-bit KV cache (fp32 weights) keeps the golden top-1 token at every prompt position of
// every model (bf16 may swap near-ties, as above); prints the cache's bytes per token.
TEST_P(LlamaModelOnDevice, Fp16AndBf16KvCachesKeepTheTopToken) {
  KUIPER_REQUIRE_SHARED("models/golden_public.json");
  for (const std::string model_name : {"llama2", "qwen2", "llama3"}) {
    // A checkpoint, not just its directory: a GPU machine's share of the data may hold only a
    // model's tokenizer (test/device/speed_check.sh).
    if (!std::filesystem::exists(shared_dir() / "models" / (model_name + "-kjv") / "config.json"))
      continue;
    for (const DType kv : {DType::kF16, DType::kBF16}) {
      ModelOptions options;
      options.kv_dtype = kv;
      auto model = load("--hf {shared}/models/" + model_name + "-kjv", options);
      std::printf("%s kv cache %s: %.1f KiB per token\n", model_name.c_str(),
                  std::string(dtype_name(kv)).c_str(), model->kv_bytes_per_token() / 1024.0);
      const auto& cases = golden().at(model_name).at(model_name == "llama2" ? "prompts" : "raw");
      for (const auto& p : cases) {
        const auto prompt = ids_of(p.at("prompt_ids"));
        const Tensor logits = model->forward(prompt, 0, true);
        for (size_t i = 0; i < prompt.size(); ++i) {
          const auto row =
              logits.span<float>().subspan(i * size_t(logits.dim(1)), size_t(logits.dim(1)));
          const auto top = int32_t(std::max_element(row.begin(), row.end()) - row.begin());
          const auto& golden_top = p.at("prompt_top20")[i];
          std::vector<int32_t> acceptable = {golden_top[0][0].get<int32_t>()};
          for (const auto& pair : golden_top)
            if (kv == DType::kBF16 && pair[1].get<float>() >= golden_top[0][1].get<float>() - 0.1f)
              acceptable.push_back(pair[0]);
          EXPECT_NE(std::find(acceptable.begin(), acceptable.end(), top), acceptable.end())
              << model_name << " kv " << dtype_name(kv) << " case " << p.dump().substr(0, 60)
              << " position " << i;
        }
      }
    }
  }
}

TEST_P(LlamaModelOnDevice, ContextOverflowIsAnError) {
  KUIPER_REQUIRE_SHARED("models/llama2-kjv");
  ModelOptions small;
  small.context = 8;
  auto model = load("--hf {shared}/models/llama2-kjv", small);
  EXPECT_EQ(model->context(), 8);
  const std::vector<int32_t> tokens(9, 1);
  try {
    model->forward(tokens, 0);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("context"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(model->forward({tokens.data(), 8}, 0));
  EXPECT_THROW(model->forward({tokens.data(), 1}, 8), Error);
}

INSTANTIATE_TEST_SUITE_P(Devices, LlamaModelOnDevice,
                         ::testing::Values(Device::kCPU, Device::kCUDA), device_label);

}  // namespace
}  // namespace kuiper::test
