#include "test/test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kuiper::test {

namespace {
// A compile-time path, unless the environment names another (tests run from a copied bundle).
std::filesystem::path configured(const char* env_name, const char* built_in) {
  const char* env = std::getenv(env_name);
  return env != nullptr && *env != '\0' ? env : built_in;
}
}  // namespace

std::filesystem::path shared_dir() {
  return configured("KUIPER_SHARED_DIR", KUIPER_DEFAULT_SHARED_DIR);
}

std::filesystem::path source_dir() { return configured("KUIPER_SOURCE_DIR", KUIPER_SOURCE_DIR); }
std::filesystem::path bin_dir() { return configured("KUIPER_BIN_DIR", KUIPER_BIN_DIR); }

std::filesystem::path scratch_dir() {
  struct Scratch {
    std::filesystem::path path;
    Scratch() {
      std::string tmpl = (std::filesystem::temp_directory_path() / "kuiper_test_XXXXXX").string();
      path = mkdtemp(tmpl.data());
    }
    ~Scratch() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static Scratch scratch;
  return scratch.path;
}

void fill_uniform(const Tensor& t, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  switch (t.dtype()) {
    case DType::kF32:
      for (float& v : t.span<float>()) v = dist(rng);
      break;
    case DType::kF16:
      for (f16& v : t.span<f16>()) v = to_f16(dist(rng));
      break;
    case DType::kBF16:
      for (bf16& v : t.span<bf16>()) v = to_bf16(dist(rng));
      break;
    default:
      FAIL() << "fill_uniform: unsupported dtype " << dtype_name(t.dtype());
  }
}

namespace {

// ggml's blocks of a random weight: random bytes, then each fp16 scale field set to a value
// uniform in [lo, 10 lo) (random bits would include NaNs and infinities), lo = 0.002 for Q8_0
// and Q4_0, 0.0002 for Q4_K's d and dmin (times 6-bit sub-scales) and 0.0001 for Q6_K's d
// (times int8 sub-scales), so that values stay within a few units like the int8 weights'.
// Every code, packed 6-bit scale and minimum (Q4_K) and int8 sub-scale (Q6_K) keeps its random
// bits, so every value the formats allow appears, -128 among Q8_0's codes and Q6_K's
// sub-scales too.
Weight random_blocks(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  Tensor values(dtype, {rows, cols});
  auto* bytes = static_cast<uint8_t*>(values.raw_data());
  std::uniform_int_distribution<int> byte(0, 255);
  for (size_t i = 0; i < values.bytes(); ++i) bytes[i] = uint8_t(byte(rng));
  const float lo = dtype == DType::kQ4_K ? 2e-4f : dtype == DType::kQ6_K ? 1e-4f : 2e-3f;
  std::uniform_real_distribution<float> scale(lo, 10 * lo);
  auto set_scale = [&](uint8_t* at) {
    const f16 h = to_f16(scale(rng));
    std::memcpy(at, &h, sizeof h);
  };
  const size_t stride = size_t(block_bytes(dtype));
  for (size_t b = 0; b < values.bytes(); b += stride) {
    switch (dtype) {
      case DType::kQ8_0:
      case DType::kQ4_0: set_scale(bytes + b); break;
      case DType::kQ4_K: set_scale(bytes + b), set_scale(bytes + b + 2); break;  // d, dmin
      case DType::kQ6_K: set_scale(bytes + b + 208); break;
      default: break;
    }
  }
  return values;
}

// The values of one ggml block at `b` into out[0 .. block_values), as ggml's dequantize_row_*
// loops compute them (ggml/src/ggml-quants.c), in double.
void dequantize_block(DType dtype, const uint8_t* b, double* out) {
  auto half_at = [](const uint8_t* p) {
    f16 h;
    std::memcpy(&h, p, sizeof h);
    return double(to_float(h));
  };
  switch (dtype) {
    case DType::kQ8_0: {
      const double d = half_at(b);
      for (int j = 0; j < 32; ++j) out[j] = d * double(int8_t(b[2 + j]));
      return;
    }
    case DType::kQ4_0: {
      const double d = half_at(b);
      for (int j = 0; j < 16; ++j) {
        out[j] = d * ((b[2 + j] & 0x0f) - 8);
        out[j + 16] = d * ((b[2 + j] >> 4) - 8);
      }
      return;
    }
    case DType::kQ4_K: {  // d, dmin, scales[12], qs[128]
      const double d = half_at(b), dmin = half_at(b + 2);
      const uint8_t* scales = b + 4;
      const uint8_t* q = b + 16;
      auto scale_min = [&](int j, int& sc, int& m) {
        if (j < 4) {
          sc = scales[j] & 63;
          m = scales[j + 4] & 63;
        } else {
          sc = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4);
          m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        }
      };
      for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
        int sc, m;
        scale_min(is, sc, m);
        for (int l = 0; l < 32; ++l) out[j + l] = d * sc * (q[l] & 0x0f) - dmin * m;
        scale_min(is + 1, sc, m);
        for (int l = 0; l < 32; ++l) out[j + 32 + l] = d * sc * (q[l] >> 4) - dmin * m;
      }
      return;
    }
    case DType::kQ6_K: {  // ql[128], qh[64], scales[16], d
      const double d = half_at(b + 208);
      const uint8_t *ql = b, *qh = b + 128;
      const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
      for (int n = 0; n < 256; n += 128, ql += 64, qh += 32, sc += 8)
        for (int l = 0; l < 32; ++l) {
          const int is = l / 16;
          out[n + l] = d * sc[is] * (((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
          out[n + l + 32] = d * sc[is + 2] * (((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
          out[n + l + 64] = d * sc[is + 4] * (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
          out[n + l + 96] = d * sc[is + 6] * (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
      return;
    }
    default: break;
  }
  ADD_FAILURE() << "dequantize_block: " << dtype_name(dtype) << " is not a ggml block type";
}

}  // namespace

Weight random_weight(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng, int64_t group,
                     DType scale_dtype) {
  if (is_ggml_block(dtype)) return random_blocks(dtype, rows, cols, rng);
  if (dtype != DType::kI8 && dtype != DType::kQ4) {
    Tensor w(dtype, {rows, cols});
    fill_uniform(w, rng);
    return w;
  }
  Tensor codes(dtype, {rows, cols}), scales(scale_dtype, {rows, cols / group});
  auto* bytes = static_cast<uint8_t*>(codes.raw_data());
  std::uniform_int_distribution<int> code(0, 255);  // q4: two codes of 0..15; int8: -128..127 once
  for (size_t i = 0; i < codes.bytes(); ++i) bytes[i] = uint8_t(code(rng));
  if (dtype == DType::kI8)
    for (int8_t& v : codes.span<int8_t>()) v = std::max<int8_t>(v, -127);
  fill_uniform(scales, rng, 0.002f, 0.02f);
  return {codes, scales};
}

double weight_element(const Weight& w, int64_t r, int64_t c) {
  if (is_ggml_block(w.dtype())) {
    // The block dequantized whole, kept for the next call while its bytes are the same
    // (references walk a row in order).
    thread_local uint8_t cached[256];
    thread_local double values[256];
    const int64_t per = block_values(w.dtype());
    const size_t bytes = size_t(block_bytes(w.dtype()));
    const auto* block = static_cast<const uint8_t*>(w.values.raw_data()) +
                        (r * (w.cols() / per) + c / per) * bytes;
    if (std::memcmp(block, cached, bytes) != 0 || cached[255] != uint8_t(w.dtype())) {
      dequantize_block(w.dtype(), block, values);
      std::memcpy(cached, block, bytes);
      cached[255] = uint8_t(w.dtype());  // blocks are at most 210 bytes
    }
    return values[c % per];
  }
  double v = 0;
  if (w.dtype() == DType::kQ4) {  // block b of a row: byte j holds values 32b + j (low), + 16 (high)
    const auto* row = static_cast<const uint8_t*>(w.values.raw_data()) + r * w.cols() / 2;
    const int64_t block = c / 32, j = c % 32;
    const uint8_t byte = row[block * 16 + j % 16];
    v = double(j < 16 ? byte & 15 : byte >> 4) - 8.0;
  } else {
    v = element(w.values, r * w.cols() + c);
  }
  if (!w.quantized()) return v;
  return v * element(w.scales, r * w.scales.dim(1) + c / w.group());
}

float element(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::kF32: return t.span<float>()[i];
    case DType::kF16: return to_float(t.span<f16>()[i]);
    case DType::kBF16: return to_float(t.span<bf16>()[i]);
    case DType::kI32: return float(t.span<int32_t>()[i]);
    case DType::kI8: return float(t.span<int8_t>()[i]);
    default: break;  // packed codes and blocks: weight_element() reads them
  }
  return NAN;
}

float max_rel_diff(const Tensor& a, const Tensor& b, float floor) {
  EXPECT_EQ(a.numel(), b.numel());
  float worst = 0;
  for (int64_t i = 0; i < std::min(a.numel(), b.numel()); ++i) {
    const float x = element(a, i), y = element(b, i);
    const float d = std::fabs(x - y) / std::max(std::fabs(y), floor);
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  return worst;
}

std::filesystem::path exported_model(const std::string& args) {
  std::string expanded = args;
  for (size_t at; (at = expanded.find("{shared}")) != std::string::npos;)
    expanded.replace(at, 8, shared_dir().string());
  // The cache key covers the arguments and the converter's source, so an edited export.py
  // never serves stale files.
  std::string key = expanded;
  for (const auto& entry : std::filesystem::directory_iterator(source_dir() / "tools")) {
    if (entry.path().extension() != ".py") continue;
    std::ifstream f(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    key += ss.str();
  }
  const auto dir = bin_dir().parent_path() / "test_models";
  std::filesystem::create_directories(dir);
  const auto path = dir / ("model_" + std::to_string(std::hash<std::string>{}(key)) + ".bin");
  if (!std::filesystem::exists(path)) {
    const auto r = run_command("python3 " + (source_dir() / "tools/export.py").string() + " " +
                               path.string() + " " + expanded + " -q");
    EXPECT_EQ(r.exit_code, 0) << "export.py " << expanded << " failed:\n" << r.err;
  }
  return path;
}

const nlohmann::json& golden() {
  static const nlohmann::json g = [] {
    std::ifstream f(shared_dir() / "models/golden_public.json");
    return f ? nlohmann::json::parse(f) : nlohmann::json::object();
  }();
  return g;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string llama_infer() { return (bin_dir() / "llama_infer").string(); }

CommandResult run_command(const std::string& command, const std::string& input) {
  const auto dir = scratch_dir();
  static int counter = 0;
  const std::string tag = std::to_string(getpid()) + "_" + std::to_string(counter++);
  const auto in = dir / ("in_" + tag), out = dir / ("out_" + tag), err = dir / ("err_" + tag);
  std::ofstream(in, std::ios::binary) << input;
  const std::string full = "(" + command + ") <" + in.string() + " >" + out.string() + " 2>" +
                           err.string();
  const int status = std::system(full.c_str());
  auto slurp = [](const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

namespace {

// A file a test writer script makes from `args`, cached under the build folder by a key that
// covers the arguments, the writer and the tools/*.py it imports (so edits never serve stale files).
std::filesystem::path written_model(const std::string& writer_name, const std::string& command,
                                    const std::string& prefix, const std::string& suffix,
                                    const std::string& args) {
  std::string expanded = args;
  for (size_t at; (at = expanded.find("{shared}")) != std::string::npos;)
    expanded.replace(at, 8, shared_dir().string());
  const auto writer = source_dir() / "test/tools" / writer_name;
  std::string key = writer_name + " " + command + " " + expanded;
  std::vector<std::filesystem::path> sources = {writer};
  for (const auto& entry : std::filesystem::directory_iterator(source_dir() / "tools"))
    if (entry.path().extension() == ".py") sources.push_back(entry.path());
  std::sort(sources.begin(), sources.end());
  for (const auto& source : sources) {
    std::ifstream f(source, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    key += ss.str();
  }
  const auto dir = bin_dir().parent_path() / "test_models";
  std::filesystem::create_directories(dir);
  const auto path = dir / (prefix + "_" + std::to_string(std::hash<std::string>{}(key)) + suffix);
  if (!std::filesystem::exists(path)) {
    const auto r = run_command("python3 " + writer.string() + " " + command + (command.empty() ? "" : " ") +
                               path.string() + " " + expanded);
    EXPECT_EQ(r.exit_code, 0) << writer_name << " " << command << " " << expanded << " failed:\n" << r.err;
  }
  return path;
}

}  // namespace

std::filesystem::path gguf_model(const std::string& args) {
  return written_model("write_gguf.py", "", "gguf", ".gguf", args);
}

std::filesystem::path legacy_int8_model(const std::string& format, const std::string& args) {
  return written_model("legacy_int8.py", format, format, ".bin", args);
}

void DeviceModelTest::SetUp() {
  if (device() == Device::kCUDA && cuda_device_count() == 0)
    GTEST_SKIP() << "no CUDA device" << (cuda_compiled() ? "" : " (built without CUDA)");
  KUIPER_REQUIRE_SHARED("models/golden_public.json");
  KUIPER_REQUIRE_SHARED("models/" + model() + "-kjv");
}

std::string device_model_label(const ::testing::TestParamInfo<DeviceModel>& info) {
  return std::string(device_name(std::get<0>(info.param))) + "_" + std::get<1>(info.param);
}

void expect_greedy_matches_golden(LlamaModel& m, const std::string& model_name) {
  const auto& cases = golden().at(model_name);
  for (const std::string section : {"prompts", "raw", "chat"}) {
    if (!cases.contains(section)) continue;
    for (const auto& c : cases.at(section)) {
      const auto prompt = c.at("prompt_ids").get<std::vector<int32_t>>();
      const auto expected = c.at("greedy_ids").get<std::vector<int32_t>>();
      std::vector<int32_t> got = {m.forward_greedy(prompt, 0)};
      auto pos = int32_t(prompt.size());
      while (got.size() < expected.size() && !m.config().is_eos(got.back()))
        got.push_back(m.forward_greedy({&got.back(), 1}, pos++));
      EXPECT_EQ(got, expected) << model_name << " " << section << " case "
                               << c.dump().substr(0, 80);
    }
  }
}

}  // namespace kuiper::test
