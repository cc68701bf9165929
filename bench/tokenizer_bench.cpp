// Load time and encode throughput of the tokenizers, on about 1 MB of the KJV text.
// Usage: tokenizer_bench [SHARED_DIR] [TOKENIZER_FILE...]
//   SHARED_DIR defaults to $KUIPER_SHARED_DIR or ../shared; with no files given it measures the
//   Qwen2.5 and Llama 3 tokenizer.json files (and Llama 2's tokenizer.model for comparison).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Verse texts of kjv.tsv joined by newlines, cut at about `bytes` (on a line boundary).
std::string kjv_text(const fs::path& tsv, size_t bytes) {
  std::ifstream file(tsv);
  KUIPER_CHECK(file.good(), "cannot open ", tsv.string());
  std::string text, line;
  std::getline(file, line);  // header
  while (text.size() < bytes && std::getline(file, line)) {
    size_t pos = 0;  // start of the fourth field
    for (int field = 0; field < 3 && pos != std::string::npos; ++field) {
      pos = line.find('\t', pos);
      if (pos != std::string::npos) ++pos;
    }
    if (pos == std::string::npos) continue;
    text.append(line, pos).append(1, '\n');
  }
  return text;
}

void bench(const fs::path& path, const std::string& text) {
  auto start = Clock::now();
  const auto tok = kuiper::Tokenizer::load(path);
  const double load_s = seconds_since(start);

  // The first pass fills the piece cache; later passes show the steady state.
  std::vector<double> times;
  size_t tokens = 0;
  for (int pass = 0; pass < 4; ++pass) {
    start = Clock::now();
    tokens = tok->encode(text, false).size();
    times.push_back(seconds_since(start));
  }
  const double first = times.front();
  const double best = *std::min_element(times.begin() + 1, times.end());
  const double mb = double(text.size()) / 1e6;
  std::printf("%-48s load %6.3f s  encode %.2f MB: cold %6.1f MB/s (%5.3f s), warm %6.1f MB/s  %zu tokens\n",
              path.filename().string() == "tokenizer.json" || path.filename().string() == "tokenizer.model"
                  ? (path.parent_path().filename() / path.filename()).string().c_str()
                  : path.string().c_str(),
              load_s, mb, mb / first, first, mb / best, tokens);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const char* env = std::getenv("KUIPER_SHARED_DIR");
    const fs::path shared = argc > 1 ? fs::path(argv[1]) : env && *env ? fs::path(env) : fs::path("../shared");
    std::vector<fs::path> files;
    for (int i = 2; i < argc; ++i) files.emplace_back(argv[i]);
    if (files.empty()) {
      files = {shared / "models/qwen2-kjv/tokenizer.json", shared / "models/llama3-kjv/tokenizer.json",
               shared / "models/llama2/tokenizer.model"};
    }
    const std::string text = kjv_text(shared / "corpus/kjv.tsv", 1 << 20);
    for (const fs::path& f : files) bench(f, text);
  } catch (const kuiper::Error& e) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
