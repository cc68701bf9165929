// Strict model headers: every numeric field of a valid file set to hostile values must give a
// clear error or the unchanged model, never non-finite logits.
#include "kuiper/model/config.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "kuiper/model/llama_model.h"
#include "test/test_util.h"

namespace kuiper::test {
namespace {

using nlohmann::json;

constexpr size_t kPrefixBytes = 24;

// A kuiper file split into its header and its data (everything from the data start on).
struct SplitFile {
  json header;
  std::string data;
};

SplitFile split(const std::filesystem::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string bytes = ss.str();
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data() + 16, 8);
  const size_t data_start = (kPrefixBytes + header_len + 63) / 64 * 64;
  return {json::parse(bytes.substr(kPrefixBytes, header_len)), bytes.substr(data_start)};
}

// The header text (any JSON, even invalid) followed by the data, as export.py lays files out.
void write_file(const std::filesystem::path& path, const std::string& header_text,
                const std::string& data) {
  std::string out = "KUIPERLM";
  const uint32_t version = 1, reserved = 0;
  const uint64_t len = header_text.size();
  out.append(reinterpret_cast<const char*>(&version), 4);
  out.append(reinterpret_cast<const char*>(&reserved), 4);
  out.append(reinterpret_cast<const char*>(&len), 8);
  out += header_text;
  out.resize((out.size() + 63) / 64 * 64, '\0');
  out += data;
  std::ofstream(path, std::ios::binary) << out;
}

const int32_t kTokens[] = {1, 5, 7, 3};

// Logits of every position of kTokens.
std::vector<float> logits_of(const std::filesystem::path& path) {
  LlamaModel model(ModelFile::open(path), {.context = 8});
  const Tensor t = model.forward(kTokens, 0, /*all_positions=*/true);
  return {t.data<float>(), t.data<float>() + t.numel()};
}

// A Llama 3-shaped model with rope scaling and GQA, small enough to run in milliseconds.
std::filesystem::path base_model(const std::string& extra_args) {
  // A fixed path, so that exported_model caches the file across runs.
  const auto config = bin_dir().parent_path() / "test_models" / "hostile_config.json";
  std::filesystem::create_directories(config.parent_path());
  std::ofstream(config) << R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 32, "max_position_embeddings": 32, "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": [2, 3],
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 16}})";
  return exported_model("--random " + config.string() + " " + extra_args);
}

// Fields whose legal values change the computation itself; any other accepted value must leave
// the logits exactly as they were.
bool changes_the_math(const std::string& field) {
  return field.find("rope") != std::string::npos || field.find("norm_eps") != std::string::npos;
}

struct Outcome {
  int refused = 0, unchanged = 0, changed = 0;
};

// Sets config field `pointer` (a JSON pointer) of the file to each hostile value in turn.
void attack(const SplitFile& file, const std::vector<float>& reference, const std::string& pointer,
            Outcome& outcome) {
  static const char* const kHostile[] = {"0", "-1", "1", "3", "2147483648", "9223372036854775807",
                                         "18446744073709551616", "1e30", "1e400", "-1e400", "0.5",
                                         "NaN", "null", "true", "\"8\"", "[]", "{}"};
  const auto path = scratch_dir() / "hostile.bin";
  for (const char* value : kHostile) {
    json header = file.header;
    header[json::json_pointer(pointer)] = "@HOSTILE@";
    std::string text = header.dump();
    text.replace(text.find("\"@HOSTILE@\""), 11, value);
    write_file(path, text, file.data);
    SCOPED_TRACE(pointer + " = " + value);
    std::vector<float> logits;
    try {
      logits = logits_of(path);
    } catch (const Error& e) {
      // A clear error names the file.
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
      ++outcome.refused;
      continue;
    }
    for (float v : logits) ASSERT_TRUE(std::isfinite(v)) << "non-finite logit";
    if (logits == reference) {
      ++outcome.unchanged;
    } else {
      EXPECT_TRUE(changes_the_math(pointer)) << "accepted, but the logits changed";
      ++outcome.changed;
    }
  }
}

// Every numeric field of the config, and the offset and a dimension of a few tensors.
std::vector<std::string> numeric_fields(const json& header) {
  std::vector<std::string> out;
  for (const auto& [key, v] : header["config"].items()) {
    if (v.is_number() || v.is_boolean()) out.push_back("/config/" + key);
  }
  for (const auto& [key, v] : header["config"]["rope_scaling"].items())
    if (v.is_number()) out.push_back("/config/rope_scaling/" + key);
  out.push_back("/config/eos_ids/0");
  for (int t : {0, 1, 5, int(header["tensors"].size()) - 1}) {
    const std::string p = "/tensors/" + std::to_string(t);
    out.insert(out.end(), {p + "/offset", p + "/shape/0"});
  }
  return out;
}

void attack_every_field(const std::filesystem::path& model) {
  const SplitFile file = split(model);
  const std::vector<float> reference = logits_of(model);
  for (float v : reference) ASSERT_TRUE(std::isfinite(v));
  Outcome outcome;
  const auto fields = numeric_fields(file.header);
  for (const auto& field : fields) attack(file, reference, field, outcome);
  std::printf("%zu fields x 17 hostile values: %d refused, %d unchanged logits, %d finite but "
              "changed (rope / norm fields)\n",
              fields.size(), outcome.refused, outcome.unchanged, outcome.changed);
}

TEST(ModelConfig, HostileHeaderValuesAreRefusedOrHarmless) { attack_every_field(base_model("")); }

TEST(ModelConfig, HostileHeaderValuesOfAnInt8FileAreRefusedOrHarmless) {
  attack_every_field(base_model("--dtype int8 --group-size 32"));
}

// Direct checks of the rules the header attack reaches only in part.
TEST(ModelConfig, ValidateRefusesIllegalHyperparameters) {
  ModelConfig good;
  good.dim = 64, good.hidden_dim = 96, good.n_layers = 2, good.n_heads = 4, good.n_kv_heads = 2;
  good.head_dim = 16, good.vocab_size = 32, good.max_seq_len = 32, good.bos_id = 1;
  good.eos_ids = {2};
  EXPECT_NO_THROW(good.validate());
  const auto refused = [&](auto change) {
    ModelConfig c = good;
    change(c);
    EXPECT_THROW(c.validate(), Error);
  };
  refused([](ModelConfig& c) { c.head_dim = 15; });
  refused([](ModelConfig& c) { c.n_kv_heads = 3; });
  refused([](ModelConfig& c) { c.n_kv_heads = 8, c.n_heads = 4; });
  refused([](ModelConfig& c) { c.rope_theta = std::nanf(""); });
  refused([](ModelConfig& c) { c.rope_theta = INFINITY; });
  refused([](ModelConfig& c) { c.rope_theta = 0; });
  refused([](ModelConfig& c) { c.norm_eps = 1; });
  refused([](ModelConfig& c) { c.norm_eps = std::nanf(""); });
  refused([](ModelConfig& c) { c.bos_id = -2; });
  refused([](ModelConfig& c) { c.bos_id = 32; });
  refused([](ModelConfig& c) { c.eos_ids = {32}; });
  refused([](ModelConfig& c) { c.n_heads = 1 << 20, c.n_kv_heads = 1 << 20, c.head_dim = 1 << 10; });
  refused([](ModelConfig& c) { c.rope_scaling = {true, 8, 4, 4, 16}; });    // high == low
  refused([](ModelConfig& c) { c.rope_scaling = {true, 0.5f, 1, 4, 16}; });  // factor < 1
  refused([](ModelConfig& c) { c.rope_scaling = {true, 8, 1, 4, 0}; });
  refused([](ModelConfig& c) { c.dtype = DType::kI8, c.group_size = 0; });
  refused([](ModelConfig& c) { c.group_size = -32; });
}

}  // namespace
}  // namespace kuiper::test
