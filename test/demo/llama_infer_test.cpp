// llama_infer end to end: golden greedy generations through the command line, and every kind of
// bad input ending in one clear line on stderr and a non-zero exit.
#include <fstream>
#include <iterator>
#include <sstream>

#include "test/test_util.h"

namespace kuiper::test {
namespace {

std::string ids_line(const nlohmann::json& ids) {
  std::string line;
  for (const auto& id : ids) line += (line.empty() ? "" : " ") + std::to_string(id.get<int>());
  return line + "\n";
}

// llama_infer with args; with prefix_program false, args is the whole command line.
CommandResult infer(const std::string& args, const std::string& input = "",
                    bool prefix_program = true) {
  return run_command(prefix_program ? llama_infer() + " " + args : args, input);
}

// Exactly one line on stderr naming the problem, and a non-zero exit.
void expect_clear_error(const CommandResult& r, const std::string& must_mention) {
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_LT(r.exit_code, 128) << "killed by a signal: " << r.err;
  EXPECT_NE(r.err.find(must_mention), std::string::npos) << "stderr: " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
}

class Llama2Greedy : public ::testing::TestWithParam<std::string> {};

TEST_P(Llama2Greedy, GeneratesTheGoldenIdsAndText) {
  KUIPER_REQUIRE_SHARED("models/golden_public.json");
  KUIPER_REQUIRE_SHARED("models/llama2-kjv-meta");
  const auto model = exported_model(GetParam());
  const auto tokenizer = shared_dir() / "models/llama2/tokenizer.model";
  for (const auto& p : golden().at("llama2").at("prompts")) {
    const std::string prompt = p.at("prompt");
    const std::string base = model.string() + " " + tokenizer.string() + " -p " + shell_quote(prompt);
    const auto ids = infer(base + " --temp 0 -n 96 --ids");
    EXPECT_EQ(ids.exit_code, 0) << ids.err;
    EXPECT_EQ(ids.out, ids_line(p.at("greedy_ids"))) << prompt;
    const auto text = infer(base + " --temp 0 -n 96");
    EXPECT_EQ(text.out, prompt + " " + p.at("greedy_text").get<std::string>() + "\n") << prompt;
    EXPECT_NE(text.err.find("tokens/s"), std::string::npos) << text.err;
    EXPECT_EQ(infer(base + " --tokenize").out, ids_line(p.at("prompt_ids"))) << prompt;
  }
}

INSTANTIATE_TEST_SUITE_P(Exports, Llama2Greedy,
                         ::testing::Values("--hf {shared}/models/llama2-kjv",
                                           "--meta-llama {shared}/models/llama2-kjv-meta",
                                           "--hf {shared}/models/llama2-kjv --legacy"));

// Every golden case of `model` through the command line on `device` with MODEL_AND_TOKENIZER
// (the tokenizer left out: the model file's own): --tokenize prints the prompt ids and greedy
// generation gives the greedy ids.
void expect_golden_cli(Device device, const std::string& model, const std::string& model_and_tokenizer) {
  for (const auto& [section, text_key] : {std::pair<std::string, std::string>{"prompts", "prompt"},
                                          {"raw", "text"}, {"chat", "rendered"}}) {
    if (!golden().at(model).contains(section)) continue;
    for (const auto& p : golden().at(model).at(section)) {
      const std::string base = model_and_tokenizer + " --device " + std::string(device_name(device)) +
                               " -p " + shell_quote(p.at(text_key).get<std::string>());
      EXPECT_EQ(infer(base + " --tokenize").out, ids_line(p.at("prompt_ids")))
          << model_and_tokenizer << ": " << p.at(text_key);
      const auto r = infer(base + " --temp 0 -n 96 --ids");
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.out, ids_line(p.at("greedy_ids"))) << model_and_tokenizer << ": " << p.at(text_key);
    }
  }
}

// Per device and model (CUDA skips without a GPU).
class GoldenCli : public ::testing::TestWithParam<std::tuple<Device, std::string>> {
 protected:
  void SetUp() override {
    KUIPER_REQUIRE_SHARED("models/golden_public.json");
    KUIPER_REQUIRE_SHARED("models/" + model() + "-kjv");
    if (device() == Device::kCUDA && cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
  Device device() const { return std::get<0>(GetParam()); }
  const std::string& model() const { return std::get<1>(GetParam()); }
};

// An exported file with the tokenizer given, and with the one export.py embedded in it: the same.
TEST_P(GoldenCli, TokenizesAndGeneratesTheGoldenIds) {
  const auto exported = exported_model("--hf {shared}/models/" + model() + "-kjv");
  const auto tokenizer = shared_dir() / "models" / (model() + "-kjv") /
                         (model() == "llama2" ? "tokenizer.model" : "tokenizer.json");
  expect_golden_cli(device(), model(), exported.string() + " " + tokenizer.string());
  expect_golden_cli(device(), model(), exported.string());
}

// A GGUF file written the way llama.cpp's converter writes it, with its own tokenizer and with
// the checkpoint's given on the command line.
TEST_P(GoldenCli, GgufFileWithItsOwnTokenizer) {
  const auto gguf = gguf_model("{shared}/models/" + model() + "-kjv");
  const auto tokenizer = shared_dir() / "models" / (model() + "-kjv") /
                         (model() == "llama2" ? "tokenizer.model" : "tokenizer.json");
  expect_golden_cli(device(), model(), gguf.string());
  expect_golden_cli(device(), model(), gguf.string() + " " + tokenizer.string());
}

INSTANTIATE_TEST_SUITE_P(All, GoldenCli,
                         ::testing::Combine(::testing::Values(Device::kCPU, Device::kCUDA),
                                            ::testing::Values("llama2", "qwen2", "llama3")),
                         [](const auto& info) {
                           return std::string(device_name(std::get<0>(info.param))) + "_" +
                                  std::get<1>(info.param);
                         });

class BadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(shared_dir() / "models/llama2-kjv"))
      GTEST_SKIP() << "test data not found: " << (shared_dir() / "models/llama2-kjv").string();
    model_ = exported_model("--hf {shared}/models/llama2-kjv").string();
    tokenizer_ = (shared_dir() / "models/llama2-kjv/tokenizer.model").string();
  }
  std::string write_file(const std::string& name, const std::string& bytes) {
    const auto path = scratch_dir() / name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path.string();
  }
  std::string model_bytes(size_t keep) {
    std::ifstream f(model_, std::ios::binary);
    std::string bytes(keep, '\0');
    f.read(bytes.data(), std::streamsize(keep));
    return bytes;
  }
  std::string model_, tokenizer_;
};

TEST_F(BadInput, MissingModelFile) {
  expect_clear_error(infer("/no/such/model.bin " + tokenizer_ + " -p hi"), "/no/such/model.bin");
}

TEST_F(BadInput, TruncatedModelFile) {
  const auto size = std::filesystem::file_size(model_);
  expect_clear_error(infer(write_file("half.bin", model_bytes(size / 2)) + " " + tokenizer_),
                     "truncated");
  expect_clear_error(infer(write_file("header.bin", model_bytes(30)) + " " + tokenizer_), "truncated");
}

TEST_F(BadInput, FileThatIsNotAModel) {
  expect_clear_error(infer(write_file("notes.txt", std::string(4096, 'x')) + " " + tokenizer_),
                     "not a model file");
  expect_clear_error(infer(tokenizer_ + " " + tokenizer_), "not a model file");
}

TEST_F(BadInput, CorruptHeader) {
  std::string bytes = model_bytes(1 << 16);
  bytes[30] = '#';  // inside the JSON header
  expect_clear_error(infer(write_file("corrupt.bin", bytes) + " " + tokenizer_), "corrupt header");
}

TEST_F(BadInput, MissingOrWrongTokenizer) {
  expect_clear_error(infer(model_ + " /no/such/tokenizer.model"), "/no/such/tokenizer.model");
  expect_clear_error(infer(model_ + " " + write_file("garbage.model", "garbage")), "tokenizer");
  const auto qwen = shared_dir() / "models/qwen2-kjv/tokenizer.json";
  expect_clear_error(infer(model_ + " " + qwen.string() + " -p hi"), "does not belong to model");
}

TEST_F(BadInput, PromptLongerThanTheContext) {
  expect_clear_error(infer(model_ + " " + tokenizer_ + " -c 8 -p " +
                           shell_quote("In the beginning God created the heaven and the earth.")),
                     "context");
}

TEST_F(BadInput, StepsBeyondTheContextStopWithANotice) {
  const auto r = infer(model_ + " " + tokenizer_ + " -c 12 -n 100 --temp 0 -p 'And it came to pass'");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("context of 12 tokens is full"), std::string::npos) << r.err;
  const auto ids = infer(model_ + " " + tokenizer_ + " -c 12 -n 100 --temp 0 --ids -p 'And it came to pass'");
  EXPECT_EQ(std::count(ids.out.begin(), ids.out.end(), ' ') + 1, 12 - 6 + 1)
      << "prompt of 6 tokens, 6 fed back, the last one printed: " << ids.out;
}

// llama2.c files (and kuiper files exported before tokenizers were embedded) need TOKENIZER.
TEST_F(BadInput, ModelWithoutATokenizer) {
  const auto legacy = exported_model("--hf {shared}/models/llama2-kjv --legacy").string();
  expect_clear_error(infer(legacy + " -p hi"), "carries no tokenizer");
  const auto r = infer(legacy + " " + tokenizer_ + " -p hi -n 2 --temp 0");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// Damaged or unsupported GGUF files: one line naming the problem.
TEST_F(BadInput, GgufFiles) {
  const std::string llama2 = "{shared}/models/llama2-kjv";
  expect_clear_error(infer(gguf_model(llama2 + " --arch gpt2").string() + " -p hi"),
                     "unsupported GGUF architecture 'gpt2'");
  expect_clear_error(infer(gguf_model(llama2 + " --drop llama.block_count").string() + " -p hi"),
                     "GGUF metadata lacks 'llama.block_count'");
  expect_clear_error(infer(gguf_model(llama2 + " --drop llama.attention.layer_norm_rms_epsilon").string()),
                     "llama.attention.layer_norm_rms_epsilon");
  expect_clear_error(infer(gguf_model(llama2 + " --drop blk.2.ffn_up.weight").string()),
                     "lacks tensor 'blk.2.ffn_up.weight'");
  expect_clear_error(infer(gguf_model(llama2 + " --tensor-type blk.0.ffn_down.weight=q4_1").string()),
                     "tensor 'blk.0.ffn_down.weight' has ggml type Q4_1");
  expect_clear_error(infer(gguf_model(llama2 + " --drop tokenizer.ggml.tokens").string() + " -p hi"),
                     "tokenizer.ggml.tokens");

  std::ifstream f(gguf_model(llama2), std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::string v2 = good;
  v2[4] = 2;
  expect_clear_error(infer(write_file("v2.gguf", v2)), "GGUF version 2 is not supported");
  expect_clear_error(infer(write_file("half.gguf", good.substr(0, good.size() / 2))), "truncated");
  expect_clear_error(infer(write_file("head.gguf", good.substr(0, 4096))), "truncated");
  expect_clear_error(infer(write_file("magic.gguf", good.substr(0, 6))), "truncated");
}

TEST_F(BadInput, InvalidUtf8Prompt) {
  expect_clear_error(infer(model_ + " " + tokenizer_ + " -p $(printf 'ab\\377cd')"), "UTF-8");
}

TEST_F(BadInput, UnknownOptionsAndBadValues) {
  expect_clear_error(infer(model_ + " " + tokenizer_ + " --frobnicate"), "--frobnicate");
  expect_clear_error(infer(model_ + " " + tokenizer_ + " -n many"), "-n");
  expect_clear_error(infer(model_ + " " + tokenizer_ + " --temp"), "--temp");
  expect_clear_error(infer(model_ + " " + tokenizer_ + " --device tpu"), "tpu");
  expect_clear_error(infer(""), "expected MODEL [TOKENIZER]");
  expect_clear_error(infer(model_ + " " + tokenizer_ + " extra"), "expected MODEL [TOKENIZER]");
  expect_clear_error(infer(model_ + " " + tokenizer_ + " --top-p 0"), "top-p");
}

TEST_F(BadInput, CudaWithoutAGpu) {
  const auto probe = infer(model_ + " " + tokenizer_ + " --device cuda -n 1 -p hi");
  if (probe.exit_code == 0) GTEST_SKIP() << "a GPU is present";
  expect_clear_error(probe, "CUDA");
}

// A model larger than the GPU memory (here: than an allocator capped at 8 MiB; the fp32 llama2-kjv
// file is ~60 MiB) fails at load, before uploading, with the sizes in one line.
TEST_F(BadInput, ModelLargerThanTheGpuMemory) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const auto r = infer("KUIPER_CUDA_MEMORY_LIMIT=8M " + llama_infer() + " " + model_ + " " +
                           tokenizer_ + " --device cuda -n 4 -p hi",
                       "", /*prefix_program=*/false);
  expect_clear_error(r, "not enough GPU memory");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("MiB"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("allocator limit 8.00 MiB"), std::string::npos) << r.err;
}

// stdout's last newline is out before the statistics on stderr, so a 2>&1 pipe (or a terminal)
// shows the text as one block followed by the statistics.
TEST_F(BadInput, StdoutEndsBeforeTheStatistics) {
  const std::string args = model_ + " " + tokenizer_ + " --temp 0 -n 8 -p 'In the beginning'";
  const auto alone = infer(args);
  const auto merged = infer(args + " 2>&1");
  ASSERT_EQ(alone.exit_code, 0) << alone.err;
  ASSERT_FALSE(alone.out.empty());
  const size_t text = merged.out.find(alone.out);
  ASSERT_NE(text, std::string::npos) << merged.out;
  EXPECT_TRUE(merged.out.substr(text + alone.out.size()).starts_with("kuiper: prompt")) << merged.out;
}

// --tensor-parallel on the CPU: the model split over two threads gives the golden ids; a split
// the model's heads do not allow is one clear line.
TEST(LlamaInfer, TensorParallelRanksGiveTheGoldenIds) {
  KUIPER_REQUIRE_SHARED("models/golden_public.json");
  KUIPER_REQUIRE_SHARED("models/llama2-kjv");
  const auto& p = golden().at("llama2").at("prompts")[0];
  const std::string base = exported_model("--hf {shared}/models/llama2-kjv").string() + " " +
                           (shared_dir() / "models/llama2-kjv/tokenizer.model").string() +
                           " -p " + shell_quote(p.at("prompt")) + " --temp 0 -n 96 --ids";
  const auto r = infer(base + " -tp 2");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, ids_line(p.at("greedy_ids")));
  EXPECT_EQ(infer(base + " --tensor-parallel 2").out, r.out);
  expect_clear_error(infer(base + " -tp 4"), "its 6 query heads do not divide by 4");
  expect_clear_error(infer(base + " -tp 0"), "--tensor-parallel must be >= 1, got 0");
}

TEST(LlamaInfer, HelpPrintsUsage) {
  const auto r = infer("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("usage:"), std::string::npos);
  EXPECT_NE(r.out.find("--top-p"), std::string::npos);
}

TEST(LlamaInfer, SamplingIsReproducibleWithASeed) {
  KUIPER_REQUIRE_SHARED("models/llama2-kjv");
  const auto base = exported_model("--hf {shared}/models/llama2-kjv").string() + " " +
                    (shared_dir() / "models/llama2-kjv/tokenizer.model").string() +
                    " -p 'And God said' -n 30 --temp 1.0 --top-p 0.9 --top-k 50 --ids";
  const auto a = infer(base + " --seed 7"), b = infer(base + " --seed 7"), c = infer(base + " --seed 8");
  EXPECT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
}

}  // namespace
}  // namespace kuiper::test
