#pragma once
// Helpers shared by the tests: where the test data is, random tensors, naive references.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kuiper/model/llama_model.h"
#include "kuiper/tensor/tensor.h"
#include "kuiper/tensor/weight.h"

namespace kuiper {
// Test names and failure messages show "cpu"/"cuda".
inline void PrintTo(Device d, std::ostream* os) { *os << device_name(d); }
}  // namespace kuiper

namespace kuiper::test {

// ../shared beside the project, or $KUIPER_SHARED_DIR.
std::filesystem::path shared_dir();
// Source tree and the folder with the built programs (llama_infer); $KUIPER_SOURCE_DIR and
// $KUIPER_BIN_DIR override them when the tests run away from the build tree.
std::filesystem::path source_dir();
std::filesystem::path bin_dir();
// A scratch folder for this test binary's run, removed at exit.
std::filesystem::path scratch_dir();

// Fills a tensor (CPU, fp32/fp16/bf16) with uniform values in [lo, hi).
void fill_uniform(const Tensor& t, std::mt19937& rng, float lo = -1.f, float hi = 1.f);
// A random weight [rows, cols] on the CPU: uniform in [-1, 1) for float dtypes; for int8, codes
// uniform in [-127, 127], for q4 in [0, 15], with scales (fp32 or fp16, one per `group` values of a row) uniform in
// [0.002, 0.02); ggml's blocks random bytes but for their fp16 scales, which keep the values
// within a few units (group and scale_dtype do not apply).
Weight random_weight(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng, int64_t group = 0,
                     DType scale_dtype = DType::kF32);
// Element (r, c) of a CPU weight, dequantized, in double (ggml's blocks as ggml's dequantize_row_*
// computes them).
double weight_element(const Weight& w, int64_t r, int64_t c);
// Element i of a CPU tensor of any float dtype, as float.
float element(const Tensor& t, int64_t i);
// max |a - b| / max(|b|, floor) over all elements of two CPU tensors of any float dtype.
float max_rel_diff(const Tensor& a, const Tensor& b, float floor = 1.f);

// A model exported by tools/export.py with `args` (e.g. "--hf <shared>/models/llama2-kjv
// --dtype fp16"), cached under the build folder so that every test binary and run shares it.
// `{shared}` in args stands for shared_dir(). Fails the calling test if the export fails.
std::filesystem::path exported_model(const std::string& args);

// The golden outputs of Hugging Face transformers (shared/models/golden_public.json), parsed once.
const nlohmann::json& golden();

// The llama_infer program, quoted for a shell command line.
std::string llama_infer();

// s as one single-quoted shell word.
std::string shell_quote(const std::string& s);

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
// Runs `command` through /bin/sh with stdin from `input`, capturing stdout and stderr.
CommandResult run_command(const std::string& command, const std::string& input = "");

// A file written by test/tools/legacy_int8.py: `format` (llama2c-v1, llama2c-v2 or kuiperllama)
// from `args` (e.g. "--hf {shared}/models/llama2-kjv --group-size 32", `{shared}` as above),
// cached beside exported_model's files. Fails the calling test if the writer fails.
std::filesystem::path legacy_int8_model(const std::string& format, const std::string& args);

// A GGUF file written by test/tools/write_gguf.py from `args` (e.g. "{shared}/models/qwen2-kjv
// --type f32"), cached beside exported_model's files. Fails the calling test if the writer fails.
std::filesystem::path gguf_model(const std::string& args);

}  // namespace kuiper::test

// Skips the test, with a message naming the path, when the shared test data is missing.
#define KUIPER_REQUIRE_SHARED(relpath)                                                     \
  do {                                                                                     \
    const auto kuiper_p_ = ::kuiper::test::shared_dir() / (relpath);                       \
    if (!std::filesystem::exists(kuiper_p_))                                               \
      GTEST_SKIP() << "test data not found: " << kuiper_p_.string()                        \
                   << " (set KUIPER_SHARED_DIR to the shared/ folder)";                    \
  } while (0)

namespace kuiper::test {

// Golden tests of one (device, model) pair, model "llama2", "qwen2" or "llama3", so that a run
// can pick one model's tests (the GPU machine receives one model's files at a time). Skips
// without a GPU for CUDA, and without the golden outputs or the model's checkpoint.
using DeviceModel = std::tuple<Device, std::string>;
class DeviceModelTest : public ::testing::TestWithParam<DeviceModel> {
 protected:
  void SetUp() override;
  Device device() const { return std::get<0>(GetParam()); }
  const std::string& model() const { return std::get<1>(GetParam()); }
};
// "cpu_llama2" and so on.
std::string device_model_label(const ::testing::TestParamInfo<DeviceModel>& info);
// Greedy decoding one token at a time through the KV cache gives the golden greedy_ids of every
// case of `model_name` (stopping at and including a stop id).
void expect_greedy_matches_golden(LlamaModel& m, const std::string& model_name);
// Every (device, model) pair.
inline auto all_devices_and_models() {
  return ::testing::Combine(::testing::Values(Device::kCPU, Device::kCUDA),
                            ::testing::Values("llama2", "qwen2", "llama3"));
}

}  // namespace kuiper::test
