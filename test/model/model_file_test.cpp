#include "kuiper/model/model_file.h"

#include <fstream>

#include "test/test_util.h"

namespace kuiper::test {
namespace {

std::string error_of(const std::filesystem::path& path) {
  try {
    ModelFile::open(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(ModelFile, ReadsTheHeaderOfAnExport) {
  KUIPER_REQUIRE_SHARED("models/qwen2-kjv");
  const ModelFile f = ModelFile::open(exported_model("--hf {shared}/models/qwen2-kjv --dtype bf16"));
  const ModelConfig& c = f.config();
  EXPECT_EQ(f.format(), "kuiper v1");
  EXPECT_EQ(c.architecture, "qwen2");
  EXPECT_EQ(c.dim, 128);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.tokenizer_vocab_size, 151665);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6f);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(c.dtype, DType::kBF16);
  EXPECT_EQ(c.bos_id, -1);
  EXPECT_TRUE(c.is_eos(151645) && c.is_eos(151643));
  EXPECT_EQ(c.chat_template, "chatml");
  EXPECT_EQ(f.tensor("layers.0.bq", {128}).dtype(), DType::kF32);
  EXPECT_EQ(f.tensor("layers.3.wk", {64, 128}).dtype(), DType::kBF16);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f.tensor("layers.3.wk", {64, 128}).raw_data()) % 64, 0u);
  EXPECT_THROW(f.tensor("layers.3.wk", {128, 64}), Error);
  EXPECT_THROW(f.tensor("layers.4.wk", {64, 128}), Error);
}

TEST(ModelFile, ReadsLlama3RopeScaling) {
  KUIPER_REQUIRE_SHARED("models/llama3-kjv");
  const ModelConfig c = ModelFile::open(exported_model("--hf {shared}/models/llama3-kjv")).config();
  EXPECT_TRUE(c.rope_scaling.enabled);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 32.f);
  EXPECT_EQ(c.rope_scaling.original_max_position, 8192);
  EXPECT_EQ(c.bos_id, 128000);
  EXPECT_EQ(c.eos_ids, (std::vector<int32_t>{128001, 128008, 128009}));
}

TEST(ModelFile, ReadsLlama2cLegacyFiles) {
  KUIPER_REQUIRE_SHARED("models/llama2-kjv");
  const ModelFile f = ModelFile::open(exported_model("--hf {shared}/models/llama2-kjv --legacy"));
  EXPECT_EQ(f.format(), "llama2.c v0");
  EXPECT_EQ(f.config().n_kv_heads, 2);
  EXPECT_EQ(f.config().head_dim, 48);
  EXPECT_TRUE(f.config().tied_embeddings);
  EXPECT_FALSE(f.has("output"));
}

TEST(ModelFile, BadFilesAreClearErrors) {
  const auto dir = scratch_dir();
  EXPECT_NE(error_of(dir / "missing.bin").find("cannot open"), std::string::npos);
  std::ofstream(dir / "text.bin") << std::string(1000, 'a');
  EXPECT_NE(error_of(dir / "text.bin").find("not a model file"), std::string::npos);
  std::ofstream(dir / "magic.bin") << "KUIPERLM";
  EXPECT_NE(error_of(dir / "magic.bin").find("truncated"), std::string::npos);
  {
    std::ofstream f(dir / "version.bin", std::ios::binary);
    const uint32_t version = 99;
    f << "KUIPERLM";
    f.write(reinterpret_cast<const char*>(&version), 4);
    f << std::string(100, '\0');
  }
  EXPECT_NE(error_of(dir / "version.bin").find("version 99"), std::string::npos);
  {
    std::ofstream f(dir / "ak42.bin", std::ios::binary);
    const int32_t header[7] = {0x616b3432, 1, 0, 0, 0, 0, 0};
    f.write(reinterpret_cast<const char*>(header), sizeof(header));
  }
  EXPECT_NE(error_of(dir / "ak42.bin").find("ak42"), std::string::npos);
  {
    std::ofstream f(dir / "legacy_short.bin", std::ios::binary);
    const int32_t header[7] = {64, 128, 2, 4, 4, 100, 32};
    f.write(reinterpret_cast<const char*>(header), sizeof(header));
    f << std::string(1000, '\0');
  }
  EXPECT_NE(error_of(dir / "legacy_short.bin").find("truncated"), std::string::npos);
}

}  // namespace
}  // namespace kuiper::test
