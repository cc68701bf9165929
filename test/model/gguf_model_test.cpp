// GGUF files as llama.cpp's converter lays them out (written by test/tools/write_gguf.py from the
// shared checkpoints) against transformers' golden greedy generations, on each device.
#include "kuiper/model/gguf_model.h"

#include <algorithm>

#include "kuiper/model/gguf_file.h"
#include "kuiper/model/llama_model.h"
#include "test/test_util.h"

namespace kuiper::test {
namespace {

using GgufGolden = DeviceModelTest;

// Greedy decoding through the KV cache gives transformers' greedy ids for every golden prompt
// (up to the golden length, stopping at and including an end-of-generation id of the file).
TEST_P(GgufGolden, DecodingReproducesTransformers) {
  ModelOptions options;
  options.device = device();
  auto m = LlamaModel::load(gguf_model("{shared}/models/" + model() + "-kjv"), options);
  EXPECT_EQ(m->file().format(), "gguf v3");
  expect_greedy_matches_golden(*m, model());
}

INSTANTIATE_TEST_SUITE_P(All, GgufGolden, all_devices_and_models(), device_model_label);

// The metadata reads as the same config export.py derives from the checkpoint folder.
TEST(GgufModel, ConfigMatchesTheExportedFile) {
  for (const std::string model : {"llama2", "qwen2", "llama3"}) {
    KUIPER_REQUIRE_SHARED("models/" + model + "-kjv");
    const auto gguf = ModelFile::open(gguf_model("{shared}/models/" + model + "-kjv"));
    const auto bin = ModelFile::open(exported_model("--hf {shared}/models/" + model + "-kjv"));
    const ModelConfig &g = gguf.config(), &b = bin.config();
    EXPECT_EQ(g.architecture, b.architecture) << model;
    EXPECT_EQ(std::tie(g.dim, g.hidden_dim, g.n_layers, g.n_heads, g.n_kv_heads, g.head_dim,
                       g.vocab_size, g.max_seq_len),
              std::tie(b.dim, b.hidden_dim, b.n_layers, b.n_heads, b.n_kv_heads, b.head_dim,
                       b.vocab_size, b.max_seq_len))
        << model;
    EXPECT_EQ(g.rope_theta, b.rope_theta) << model;
    EXPECT_EQ(g.rope_scaling.enabled, b.rope_scaling.enabled) << model;
    EXPECT_FLOAT_EQ(g.norm_eps, b.norm_eps) << model;
    EXPECT_EQ(g.tied_embeddings, b.tied_embeddings) << model;
    EXPECT_EQ(g.attention_bias, b.attention_bias) << model;
    EXPECT_EQ(g.add_bos, b.add_bos) << model;
    if (b.add_bos) {
      EXPECT_EQ(g.bos_id, b.bos_id) << model;
    }
    EXPECT_EQ(g.chat_template, b.chat_template) << model;
    for (int32_t id : g.eos_ids) EXPECT_TRUE(b.is_eos(id)) << model << " eos " << id;
    EXPECT_EQ(g.dtype, DType::kF32) << model;
    // Llama's q/k rows are already interleaved in the file; Qwen2's are reordered at load. Either
    // way the tensors equal the exported ones, which are interleaved.
    for (const std::string name :
         {"layers.1.wq", "layers.1.wk", "layers.1.wv", "layers.1.bq", "layers.1.bk"}) {
      if (!bin.has(name)) continue;
      const int64_t rows = name.ends_with("q") ? b.q_dim() : b.kv_dim();
      const Shape shape = name[9] == 'b' ? Shape{rows} : Shape{rows, b.dim};
      EXPECT_EQ(max_rel_diff(gguf.tensor(name, shape), bin.tensor(name, shape)), 0.f)
          << model << " " << name;
    }
  }
}

// A layer whose tensors mix types, as llama.cpp's Q4_K_M files do (v and w2 of some layers in
// Q6_K): it loads, and one Q8_0 v and w2 move the logits as little as Q8_0 does.
TEST(GgufModel, LayersMayMixTensorTypes) {
  KUIPER_REQUIRE_SHARED("models/llama2-kjv");
  const std::string dir = "{shared}/models/llama2-kjv";
  auto mixed = LlamaModel::load(gguf_model(dir + " --tensor-type blk.0.attn_v.weight=q8_0"
                                                 " --tensor-type blk.1.ffn_down.weight=q8_0"));
  auto f32 = LlamaModel::load(gguf_model(dir));
  const auto prompt = golden().at("llama2").at("prompts").at(0).at("prompt_ids").get<std::vector<int32_t>>();
  const Tensor want = f32->forward(prompt, 0, true), got = mixed->forward(prompt, 0, true);
  EXPECT_GT(max_rel_diff(got, want), 0.f);  // the Q8_0 tensors were used
  const int64_t vocab = want.dim(1);
  auto top = [&](const Tensor& t, int64_t row) {
    const auto v = t.span<float>().subspan(size_t(row * vocab), size_t(vocab));
    return std::max_element(v.begin(), v.end()) - v.begin();
  };
  int same = 0;
  for (int64_t r = 0; r < want.dim(0); ++r) same += top(got, r) == top(want, r);
  EXPECT_GE(same, want.dim(0) - 1) << "of " << want.dim(0) << " positions";
}

TEST(GgufModel, TensorNames) {
  EXPECT_EQ(gguf_tensor_name("tok_embeddings"), "token_embd.weight");
  EXPECT_EQ(gguf_tensor_name("layers.12.wo"), "blk.12.attn_output.weight");
  EXPECT_EQ(gguf_tensor_name("layers.0.bk"), "blk.0.attn_k.bias");
  EXPECT_EQ(gguf_tensor_name("layers.3.w1"), "blk.3.ffn_gate.weight");
  EXPECT_EQ(gguf_tensor_name("layers.3.w2"), "blk.3.ffn_down.weight");
  EXPECT_EQ(gguf_tensor_name("norm"), "output_norm.weight");
}

}  // namespace
}  // namespace kuiper::test
