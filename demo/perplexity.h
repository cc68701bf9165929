#pragma once
// Perplexity and KL divergence over a token stream, the way llama.cpp's llama-perplexity measures
// them: the stream is cut into windows, each window is fed on its own from position 0 (a fresh
// cache) with every position's logits, and the log-softmax of the scored positions is taken on
// the host.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kuiper/model/llama_model.h"

namespace kuiper::demo::ppl {

// One forward pass from position 0. The logits at rows [first, first + count) predict
// input[first + 1 .. first + count].
struct Window {
  std::vector<int32_t> input;
  int first = 0;
  int count = 0;
};

// llama.cpp's windowing: floor(n / n_ctx) windows of n_ctx tokens (at most max_windows when that
// is > 0), the first token of each replaced by `bos` when bos >= 0, scoring the second half: the
// logits at positions n_ctx/2 .. n_ctx-2 predict the tokens at n_ctx/2+1 .. n_ctx-1, so every
// scored token has at least n_ctx/2 tokens before it.
std::vector<Window> llama_cpp_windows(std::span<const int32_t> tokens, int n_ctx, int32_t bos,
                                      int max_windows);

// Consecutive windows of `window` tokens, the last one partial, each fed as [bos] + window when
// bos >= 0, else as the window alone; either way every token of a window after its first is
// scored (the BOS logits are not: that is how golden_public.json's perplexity_rev counts).
// Windows that score nothing are left out.
std::vector<Window> consecutive_windows(std::span<const int32_t> tokens, int window, int32_t bos,
                                        int max_windows);

int64_t scored_positions(std::span<const Window> windows);

// exp(x) for x <= 0 within 2 ulp, written so that the compiler vectorises loops over it.
float fast_exp(float x);

// log-sum-exp of one row of logits, with the row's maximum: log p(i) = logits[i] - log_z.
struct RowNorm {
  float max = 0;
  double sum_exp = 0;  // sum of exp(logits[i] - max)
  double log_z = 0;    // max + log(sum_exp)
};
RowNorm row_norm(std::span<const float> logits);

// The k most likely ids of a row, most likely first (ties: the lower id first).
std::vector<int32_t> top_k(std::span<const float> logits, int k);

// Running mean of per-token negative log-likelihoods, with llama.cpp's uncertainty estimate.
struct NllStats {
  double sum = 0, sum2 = 0;
  int64_t count = 0;
  void add(double nll) {
    sum += nll;
    sum2 += nll * nll;
    ++count;
  }
  double mean() const { return count ? sum / double(count) : 0.0; }
  // Standard error of the mean NLL: sqrt((E[x^2] - E[x]^2) / (count - 1)).
  double mean_error() const;
  double ppl() const;
  double ppl_error() const { return ppl() * mean_error(); }
};

// What --kl-base saves per scored position of the base model.
struct BaseRecord {
  float logp_target = 0;  // log-probability of the token that came next
  float log_rest = 0;     // log of the probability mass outside ids (-inf when there is none)
  std::vector<int32_t> ids;  // the top-k ids, most likely first
  std::vector<float> logp;   // their log-probabilities
};

// The --kl-base file. Little-endian, 48-byte header:
//   char     magic[8]     "KPPLKLD1"
//   uint32   version      1
//   uint32   n_vocab      the model's vocabulary size
//   uint32   n_ctx        the window length (-c)
//   uint32   flags        bit 0: --golden-windows, bit 1: --bos-each-window, bit 2: --lines
//   uint32   top_k        ids kept per position (32)
//   uint32   n_windows    windows scored (after --chunks)
//   uint64   n_tokens     length of the token stream the windows were cut from
//   uint64   n_positions  scored positions, all windows together
// then int32 tokens[n_tokens] (the stream, so that another text or tokenizer is detected), then
// per scored position in order: float logp_target, float log_rest, int32 ids[top_k],
// float logp[top_k]. The file size must match the header exactly.
struct KlHeader {
  uint32_t n_vocab = 0;
  uint32_t n_ctx = 0;
  uint32_t flags = 0;
  uint32_t top_k = 32;
  uint32_t n_windows = 0;
  uint64_t n_positions = 0;
  std::vector<int32_t> tokens;

  static constexpr uint32_t kGolden = 1, kBosEachWindow = 2, kLines = 4;
  static constexpr uint32_t kVersion = 1;
  static constexpr size_t kHeaderBytes = 48;
  size_t record_bytes() const { return 8 + size_t(top_k) * 8; }
};

// Writes FILE.tmp and renames it to FILE on finish(), so that a failed run leaves no half file.
class KlWriter {
 public:
  KlWriter(std::filesystem::path path, const KlHeader& header);
  ~KlWriter();
  void write(const BaseRecord& r);
  void finish();

 private:
  std::filesystem::path path_, tmp_;
  std::FILE* f_ = nullptr;
  uint32_t top_k_;
  uint64_t written_ = 0, expected_;
};

// Reads and checks the whole --kl-base file up front; throws kuiper::Error naming the file for
// one that is missing, not such a file, of another version, or whose size does not match.
class KlReader {
 public:
  explicit KlReader(const std::filesystem::path& path);
  const KlHeader& header() const { return header_; }
  BaseRecord record(uint64_t i) const;

 private:
  KlHeader header_;
  std::vector<char> records_;
};

// KL(base || model) over the base's top-k ids and one bucket for the rest of the vocabulary.
double kl_divergence(const BaseRecord& base, std::span<const float> logits, const RowNorm& norm);

struct KlStats {
  NllStats nll, nll_base;
  double sum_nll_nll_base = 0;
  std::vector<float> kld;  // per scored position
  int64_t same_top = 0;
  double mean_kld() const;
  double mean_kld_error() const;
  double kld_percentile(double fraction) const;  // linear interpolation, as llama.cpp does
  double same_top_share() const { return kld.empty() ? 0.0 : double(same_top) / double(kld.size()); }
};

struct EvalResult {
  NllStats nll;
  KlStats kl;  // filled when a base is given
};

// Runs every window through the model. With `writer`, saves each scored position's top-k; with
// `base`, compares against it (records in the same order). on_window(i, running) after each.
EvalResult evaluate(LlamaModel& model, std::span<const Window> windows, int top_k,
                    KlWriter* writer, const KlReader* base,
                    const std::function<void(int, const NllStats&)>& on_window);

}  // namespace kuiper::demo::ppl
