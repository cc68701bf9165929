#include "test/test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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

Weight random_weight(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng, int64_t group,
                     DType scale_dtype) {
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

}  // namespace kuiper::test
