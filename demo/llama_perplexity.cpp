// llama_perplexity MODEL [TOKENIZER] -f TEXT [options]: perplexity of a text, and the KL divergence
// against a saved base run, the way llama.cpp's llama-perplexity measures them.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "demo/command_line.h"
#include "demo/perplexity.h"
#include "demo/session.h"
#include "kuiper/base/error.h"
#include "kuiper/model/model_file.h"

namespace kuiper::demo {
namespace {

constexpr int kTopK = 32;
constexpr int kMinContext = 8;

struct PplOptions {
  std::string model_path, tokenizer_path;
  std::optional<std::string> text_path;
  int n_ctx = 256;
  bool ctx_given = false;
  std::optional<std::string> kl_base;
  bool kl_divergence = false;
  bool golden = false, bos_each_window = false, lines = false;
  Device device = Device::kCPU;
  int threads = 0;
  int chunks = 0;  // 0: every window
  bool no_mmap = false;
  bool help = false;
};

std::string usage(const std::string& program) {
  return "usage: " + program + R"( MODEL [TOKENIZER] -f TEXT [options]

Perplexity of a text file, like llama.cpp's llama-perplexity: the text is tokenized as one
string (with BOS when the model adds one), cut into windows of -c tokens, each window fed on
its own from position 0 with the first token replaced by BOS (when the model adds BOS), and
the second half of every window scored. Prints the running perplexity per window on stderr
and the final estimate on stdout.

  -f, --file TEXT      the text to score
  -c, --ctx N          window length in tokens (default 256, at least 8)
      --chunks N       score only the first N windows
      --kl-base FILE   save the top-32 log-probabilities of every scored position to FILE;
                       with --kl-divergence, read FILE and compare this model against it
      --kl-divergence  KL divergence (base || this model), top-token agreement and both
                       perplexities; TEXT may be left out (the tokens come from FILE)
      --golden-windows consecutive windows of -c tokens (the last one partial), every token of
                       a window after its first scored (golden_public.json's perplexity_rev)
      --bos-each-window with --golden-windows: feed each window as [BOS] + window (the
                       BOS logits are not scored)
      --lines          the token stream is each line of TEXT tokenized on its own (no BOS),
                       followed by the model's end-of-sequence id
      --device D       cpu or cuda (default cpu)
  -t, --threads N      CPU threads (default: all cores)
      --no-mmap        read the weights into memory instead of mapping the file
  -h, --help           this help
)";
}

PplOptions parse_options(std::span<char* const> args) {
  PplOptions o;
  OptionTable table;
  table.flags = {{"--kl-divergence", &o.kl_divergence}, {"--golden-windows", &o.golden},
                 {"--bos-each-window", &o.bos_each_window}, {"--lines", &o.lines},
                 {"--no-mmap", &o.no_mmap}, {"-h", &o.help}, {"--help", &o.help}};
  auto& m = table.valued;
  const OptionSetter file = [&](auto, auto v) { o.text_path = std::string(v); };
  const OptionSetter ctx = [&](auto opt, auto v) {
    o.n_ctx = parse_number<int>(opt, v);
    o.ctx_given = true;
  };
  const OptionSetter threads = [&](auto opt, auto v) {
    o.threads = parse_number<int>(opt, v);
    KUIPER_CHECK(o.threads >= 1, "--threads must be at least 1, got ", o.threads);
  };
  m["-f"] = m["--file"] = file;
  m["-c"] = m["--ctx"] = ctx;
  m["-t"] = m["--threads"] = threads;
  m["--chunks"] = [&](auto opt, auto v) {
    o.chunks = parse_number<int>(opt, v);
    KUIPER_CHECK(o.chunks >= 1, "--chunks must be at least 1, got ", o.chunks);
  };
  m["--kl-base"] = [&](auto, auto v) { o.kl_base = std::string(v); };
  m["--device"] = [&](auto, auto v) { o.device = parse_device(v); };
  const std::vector<std::string_view> positional = parse_command_line(args, table);
  if (o.help) return o;
  std::tie(o.model_path, o.tokenizer_path) = model_and_tokenizer(positional);
  KUIPER_CHECK(o.n_ctx >= kMinContext, "-c/--ctx must be at least ", kMinContext, " tokens, got ",
               o.n_ctx);
  KUIPER_CHECK(!o.kl_divergence || o.kl_base, "--kl-divergence needs --kl-base FILE");
  KUIPER_CHECK(o.text_path || o.kl_divergence, "no text to score: give -f TEXT");
  KUIPER_CHECK(!o.bos_each_window || o.golden, "--bos-each-window needs --golden-windows");
  return o;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  KUIPER_CHECK(f.good(), "cannot read text file ", path, ": ", std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The token stream: the whole text as one string, or (--lines) each line on its own + EOS.
std::vector<int32_t> tokenize(const PplOptions& o, const Session& s, const std::string& text) {
  const ModelConfig& c = s.model->config();
  if (!o.lines) return s.tokenizer->encode(text, c.add_bos && c.bos_id >= 0);
  KUIPER_CHECK(!c.eos_ids.empty(), "--lines ends each line with the end-of-sequence id, and model ",
               o.model_path, " has none");
  std::vector<int32_t> tokens;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    if (line.ends_with('\r')) line.remove_suffix(1);
    const std::vector<int32_t> ids = s.tokenizer->encode(line, false);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    tokens.push_back(c.eos_ids[0]);
    start = end + 1;
  }
  return tokens;
}

uint32_t mode_flags(const PplOptions& o) {
  using H = ppl::KlHeader;
  return (o.golden ? H::kGolden : 0) | (o.bos_each_window ? H::kBosEachWindow : 0) |
         (o.lines ? H::kLines : 0);
}

// --kl-divergence: the windowing comes from the base file; options that contradict it are errors.
void adopt_base_windowing(PplOptions& o, const ppl::KlHeader& h) {
  const std::string& file = *o.kl_base;
  KUIPER_CHECK(!o.ctx_given || uint32_t(o.n_ctx) == h.n_ctx, file, " was computed with -c ",
               h.n_ctx, ", not ", o.n_ctx);
  KUIPER_CHECK(o.chunks == 0 || uint32_t(o.chunks) == h.n_windows, file, " holds ", h.n_windows,
               " windows, not --chunks ", o.chunks);
  using H = ppl::KlHeader;
  for (const auto& [bit, given, name] :
       {std::tuple{H::kGolden, o.golden, "--golden-windows"},
        std::tuple{H::kBosEachWindow, o.bos_each_window, "--bos-each-window"},
        std::tuple{H::kLines, o.lines, "--lines"}})
    KUIPER_CHECK(!given || (h.flags & bit), file, " was computed without ", name);
  o.n_ctx = int(h.n_ctx);
  o.chunks = int(h.n_windows);
  o.golden = h.flags & H::kGolden;
  o.bos_each_window = h.flags & H::kBosEachWindow;
  o.lines = h.flags & H::kLines;
}

void check_same_tokens(const std::string& file, const std::string& text_path,
                       std::span<const int32_t> base, std::span<const int32_t> ours) {
  const size_t n = std::min(base.size(), ours.size());
  const size_t diff = size_t(std::mismatch(base.begin(), base.begin() + ptrdiff_t(n), ours.begin()).first -
                             base.begin());
  if (diff == n && base.size() == ours.size()) return;
  if (diff < n)
    fail(file, " was computed on other tokens than ", text_path, ": token ", diff, " is ",
         base[diff], " there and ", ours[diff], " here");
  fail(file, " was computed on other tokens than ", text_path, ": ", base.size(), " tokens there, ",
       ours.size(), " here");
}

void print_kl(const ppl::KlStats& kl) {
  const auto& q = kl.nll;
  const auto& b = kl.nll_base;
  const double n = double(q.count);
  const double cov = q.count > 1 ? (kl.sum_nll_nll_base / n - q.mean() * b.mean()) / (n - 1) : 0;
  const double ratio = q.mean() - b.mean();
  const double ratio_err =
      std::sqrt(std::max(0.0, q.mean_error() * q.mean_error() + b.mean_error() * b.mean_error() - 2 * cov));
  const double cor = q.mean_error() > 0 && b.mean_error() > 0
                         ? cov / (q.mean_error() * b.mean_error()) : 1.0;
  std::printf("====== Perplexity statistics ======\n");
  std::printf("Mean PPL(Q)                   : %10.6f +/- %10.6f\n", q.ppl(), q.ppl_error());
  std::printf("Mean PPL(base)                : %10.6f +/- %10.6f\n", b.ppl(), b.ppl_error());
  std::printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100.0 * cor);
  std::printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f +/- %10.6f\n", ratio, ratio_err);
  std::printf("Mean PPL(Q)/PPL(base)         : %10.6f +/- %10.6f\n", std::exp(ratio),
              std::exp(ratio) * ratio_err);
  std::printf("\n====== KL divergence statistics (base top-%d + rest) ======\n", kTopK);
  std::printf("Mean    KLD: %10.6f +/- %10.6f\n", kl.mean_kld(), kl.mean_kld_error());
  std::printf("Maximum KLD: %10.6f\n", kl.kld_percentile(1.0));
  std::printf("99.0%%   KLD: %10.6f\n", kl.kld_percentile(0.99));
  std::printf("Median  KLD: %10.6f\n", kl.kld_percentile(0.5));
  std::printf("Minimum KLD: %10.6f\n", kl.kld_percentile(0.0));
  const double p = kl.same_top_share();
  const double p_err = kl.kld.size() > 1 ? std::sqrt(p * (1 - p) / double(kl.kld.size() - 1)) : 0.0;
  std::printf("\n====== Token probability statistics ======\n");
  std::printf("Same top p: %7.3f +/- %5.3f %%\n\n", 100.0 * p, 100.0 * p_err);
}

int run(int argc, char** argv) {
  auto parsed = options_or_exit_code("llama_perplexity", argc, argv, parse_options, usage);
  if (const int* exit_code = std::get_if<int>(&parsed)) return *exit_code;
  PplOptions& o = std::get<PplOptions>(parsed);
  // Everything that can be checked before loading the model is.
  std::optional<ppl::KlReader> base;
  if (o.kl_divergence) {
    base.emplace(*o.kl_base);
    adopt_base_windowing(o, base->header());
  }
  std::optional<std::string> text;
  if (o.text_path) text = read_text(*o.text_path);
  const bool bos_windows = o.golden && o.bos_each_window;
  const int context = o.n_ctx + (bos_windows ? 1 : 0);
  {
    const ModelConfig c = ModelFile::open(o.model_path).config();
    KUIPER_CHECK(context <= c.max_seq_len, "-c ", o.n_ctx, bos_windows ? " (+1 for BOS)" : "",
                 " is larger than the model's context of ", c.max_seq_len, " tokens");
  }

  Options so;
  so.model_path = o.model_path;
  so.tokenizer_path = o.tokenizer_path;
  so.device = o.device;
  so.context = context;
  so.threads = o.threads;
  so.no_mmap = o.no_mmap;
  Session s = open_session(so);
  const ModelConfig& c = s.model->config();

  std::vector<int32_t> tokens;
  if (text) {
    try {
      tokens = tokenize(o, s, *text);
    } catch (const Error& e) {
      fail(*o.text_path, ": ", e.what());
    }
  }
  if (base) {
    const ppl::KlHeader& h = base->header();
    KUIPER_CHECK(h.n_vocab == uint32_t(c.vocab_size), *o.kl_base, " was computed with a vocabulary of ",
                 h.n_vocab, " tokens, model ", o.model_path, " has ", c.vocab_size);
    if (text) check_same_tokens(*o.kl_base, *o.text_path, h.tokens, tokens);
    else tokens = h.tokens;
  }

  std::vector<ppl::Window> windows;
  const std::string source = o.text_path ? *o.text_path : *o.kl_base;
  if (o.golden) {
    int32_t bos = -1;
    if (bos_windows) {
      KUIPER_CHECK(c.bos_id >= 0, "--bos-each-window: model ", o.model_path, " has no BOS token");
      bos = c.bos_id;
    }
    windows = ppl::consecutive_windows(tokens, o.n_ctx, bos, o.chunks);
    KUIPER_CHECK(!windows.empty(), source, " has ", tokens.size(), " tokens: nothing to score");
  } else {
    KUIPER_CHECK(int64_t(tokens.size()) >= o.n_ctx, source, " has ", tokens.size(),
                 " tokens, fewer than one window of -c ", o.n_ctx);
    windows = ppl::llama_cpp_windows(tokens, o.n_ctx, c.add_bos ? c.bos_id : -1, o.chunks);
  }
  const int64_t positions = ppl::scored_positions(windows);
  if (base) {
    const ppl::KlHeader& h = base->header();
    KUIPER_CHECK(h.n_windows == windows.size() && h.n_positions == uint64_t(positions), *o.kl_base,
                 " holds ", h.n_windows, " windows and ", h.n_positions, " positions, this run has ",
                 windows.size(), " and ", positions);
  }
  std::optional<ppl::KlWriter> writer;
  if (o.kl_base && !o.kl_divergence) {
    ppl::KlHeader h;
    h.n_vocab = uint32_t(c.vocab_size);
    h.n_ctx = uint32_t(o.n_ctx);
    h.flags = mode_flags(o);
    h.top_k = kTopK;
    h.n_windows = uint32_t(windows.size());
    h.n_positions = uint64_t(positions);
    h.tokens = tokens;
    writer.emplace(*o.kl_base, h);
  }

  report_loaded(so, s);
  std::fprintf(stderr, "kuiper: %zu tokens, %zu windows of %d, %lld positions scored\n",
               tokens.size(), windows.size(), o.n_ctx, static_cast<long long>(positions));
  const auto start = std::chrono::steady_clock::now();
  const ppl::EvalResult r = ppl::evaluate(
      *s.model, windows, kTopK, writer ? &*writer : nullptr, base ? &*base : nullptr,
      [](int i, const ppl::NllStats& nll) {
        std::fprintf(stderr, "[%d]%.4f,", i + 1, nll.ppl());
        std::fflush(stderr);
      });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "\nkuiper: %zu windows in %.2f s (%.1f tokens/s fed)\n", windows.size(),
               seconds, seconds > 0 ? double(windows.size() * windows[0].input.size()) / seconds : 0.0);
  if (writer) writer->finish();

  if (base) print_kl(r.kl);
  std::printf("tokens scored: %lld\n", static_cast<long long>(r.nll.count));
  std::printf("Mean NLL: %.6f +/- %.6f\n", r.nll.mean(), r.nll.mean_error());
  std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.nll.ppl(), r.nll.ppl_error());
  if (writer) std::fprintf(stderr, "kuiper: saved the base log-probabilities to %s\n", o.kl_base->c_str());
  return 0;
}

}  // namespace
}  // namespace kuiper::demo

int main(int argc, char** argv) {
  return kuiper::demo::guarded_main("llama_perplexity", argc, argv, kuiper::demo::run);
}
