#include "demo/perplexity.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "kuiper/base/error.h"

namespace kuiper::demo::ppl {

static_assert(std::endian::native == std::endian::little, "the --kl-base file is little-endian");

std::vector<Window> llama_cpp_windows(std::span<const int32_t> tokens, int n_ctx, int32_t bos,
                                      int max_windows) {
  KUIPER_CHECK(n_ctx >= 2, "window of ", n_ctx, " tokens");
  int64_t n = int64_t(tokens.size()) / n_ctx;
  if (max_windows > 0) n = std::min<int64_t>(n, max_windows);
  const int first = n_ctx / 2;
  std::vector<Window> windows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    Window& w = windows[size_t(i)];
    w.input.assign(tokens.begin() + i * n_ctx, tokens.begin() + (i + 1) * n_ctx);
    if (bos >= 0) w.input[0] = bos;
    w.first = first;
    w.count = n_ctx - 1 - first;
  }
  return windows;
}

std::vector<Window> consecutive_windows(std::span<const int32_t> tokens, int window, int32_t bos,
                                        int max_windows) {
  KUIPER_CHECK(window >= 1, "window of ", window, " tokens");
  std::vector<Window> windows;
  for (size_t start = 0; start < tokens.size(); start += size_t(window)) {
    if (max_windows > 0 && int(windows.size()) == max_windows) break;
    const auto chunk = tokens.subspan(start, std::min(tokens.size() - start, size_t(window)));
    Window w;
    if (bos >= 0) w.input.push_back(bos);
    w.input.insert(w.input.end(), chunk.begin(), chunk.end());
    // The BOS logits predict nothing that is scored: the window's first token is context.
    w.first = bos >= 0 ? 1 : 0;
    w.count = int(chunk.size()) - 1;
    if (w.count > 0) windows.push_back(std::move(w));
  }
  return windows;
}

int64_t scored_positions(std::span<const Window> windows) {
  int64_t n = 0;
  for (const Window& w : windows) n += w.count;
  return n;
}

// Cephes' expf: exp(x) = 2^n * exp(r), |r| <= ln2/2, exp(r) by a degree-7 polynomial. No calls
// and no branches, so that loops over it vectorise (with -fno-trapping-math, see CMakeLists.txt).
float fast_exp(float x) {
  x = x < -87.f ? -87.f : x;
  x = x > 88.f ? 88.f : x;
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  const float shifted = x * 1.44269504088896341f + kRound;
  const float n = shifted - kRound;
  const int32_t ni = std::bit_cast<int32_t>(shifted) - std::bit_cast<int32_t>(kRound);
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.f;
  return y * std::bit_cast<float>((ni + 127) << 23);
}

RowNorm row_norm(std::span<const float> logits) {
  const float* l = logits.data();
  const size_t n = logits.size();
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (size_t i = 0; i < n; ++i) m = l[i] > m ? l[i] : m;
  // Float sums over blocks of 2048, added up in double.
  double total = 0;
  for (size_t b = 0; b < n; b += 2048) {
    const size_t e = std::min(n, b + 2048);
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (size_t i = b; i < e; ++i) s += fast_exp(l[i] - m);
    total += s;
  }
  return {m, total, double(m) + std::log(total)};
}

std::vector<int32_t> top_k(std::span<const float> logits, int k) {
  const size_t n = logits.size();
  k = int(std::min<size_t>(size_t(std::max(k, 0)), n));
  if (k == 0) return {};
  // The k-th largest of the block maxima bounds the k-th largest logit from below (the k largest
  // block maxima are k distinct logits), so only blocks reaching it need a closer look.
  constexpr size_t kBlock = 64;
  const size_t nb = (n + kBlock - 1) / kBlock;
  std::vector<float> block_max(nb);
  for (size_t b = 0; b < nb; ++b) {
    const float* l = logits.data() + b * kBlock;
    const size_t len = std::min(kBlock, n - b * kBlock);
    float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
    for (size_t i = 0; i < len; ++i) m = l[i] > m ? l[i] : m;
    block_max[b] = m;
  }
  float threshold = -std::numeric_limits<float>::infinity();
  if (nb >= size_t(k)) {
    std::vector<float> sorted = block_max;
    std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<>());
    threshold = sorted[size_t(k - 1)];
  }
  std::vector<std::pair<float, int32_t>> candidates;
  for (size_t b = 0; b < nb; ++b) {
    if (!(block_max[b] >= threshold)) continue;
    for (size_t i = b * kBlock; i < std::min(n, (b + 1) * kBlock); ++i)
      if (logits[i] >= threshold) candidates.emplace_back(logits[i], int32_t(i));
  }
  const auto better = [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  const size_t keep = std::min(candidates.size(), size_t(k));
  std::partial_sort(candidates.begin(), candidates.begin() + keep, candidates.end(), better);
  std::vector<int32_t> ids(keep);
  for (size_t i = 0; i < keep; ++i) ids[i] = candidates[i].second;
  return ids;
}

double NllStats::mean_error() const {
  if (count < 2) return 0.0;
  const double m = mean(), var = sum2 / double(count) - m * m;
  return var > 0 ? std::sqrt(var / double(count - 1)) : 0.0;
}

double NllStats::ppl() const { return std::exp(mean()); }

namespace {

// log-probability of a logit, as float: the base run and the comparing run round the same way.
float log_prob(float logit, const RowNorm& norm) { return float(double(logit) - norm.log_z); }

// log of the mass outside `ids`; -inf when nothing is left.
float log_rest(std::span<const float> logits, std::span<const int32_t> ids, const RowNorm& norm) {
  double top = 0;
  for (int32_t id : ids) top += fast_exp(logits[size_t(id)] - norm.max);
  const double rest = std::max(0.0, norm.sum_exp - top) / norm.sum_exp;
  return rest > 0 ? float(std::log(rest)) : -std::numeric_limits<float>::infinity();
}

template <class T>
void put(std::FILE* f, const T* data, size_t n) {
  if (n && std::fwrite(data, sizeof(T), n, f) != n) throw Error("write failed");
}

template <class T>
T get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

constexpr char kMagic[8] = {'K', 'P', 'P', 'L', 'K', 'L', 'D', '1'};

}  // namespace

KlWriter::KlWriter(std::filesystem::path path, const KlHeader& h)
    : path_(std::move(path)), top_k_(h.top_k), expected_(h.n_positions) {
  tmp_ = path_;
  tmp_ += ".tmp";
  f_ = std::fopen(tmp_.c_str(), "wb");
  KUIPER_CHECK(f_ != nullptr, "cannot write --kl-base file ", tmp_.string(), ": ",
               std::strerror(errno));
  try {
    put(f_, kMagic, 8);
    const uint32_t u32[6] = {KlHeader::kVersion, h.n_vocab, h.n_ctx, h.flags, h.top_k, h.n_windows};
    put(f_, u32, 6);
    const uint64_t u64[2] = {h.tokens.size(), h.n_positions};
    put(f_, u64, 2);
    put(f_, h.tokens.data(), h.tokens.size());
  } catch (const Error&) {
    fail("cannot write --kl-base file ", tmp_.string(), ": ", std::strerror(errno));
  }
}

KlWriter::~KlWriter() {
  if (f_ == nullptr) return;
  std::fclose(f_);
  std::error_code ec;
  std::filesystem::remove(tmp_, ec);
}

void KlWriter::write(const BaseRecord& r) {
  KUIPER_CHECK(r.ids.size() == top_k_ && r.logp.size() == top_k_, "KL record of ", r.ids.size(),
               " ids, the file keeps ", top_k_);
  try {
    put(f_, &r.logp_target, 1);
    put(f_, &r.log_rest, 1);
    put(f_, r.ids.data(), r.ids.size());
    put(f_, r.logp.data(), r.logp.size());
  } catch (const Error&) {
    fail("cannot write --kl-base file ", tmp_.string(), ": ", std::strerror(errno));
  }
  ++written_;
}

void KlWriter::finish() {
  KUIPER_CHECK(written_ == expected_, "wrote ", written_, " KL records, the header says ", expected_);
  const bool ok = std::fflush(f_) == 0 && std::ferror(f_) == 0;
  const bool closed = std::fclose(f_) == 0;
  f_ = nullptr;
  std::error_code ec;
  if (!ok || !closed) {
    std::filesystem::remove(tmp_, ec);
    fail("cannot write --kl-base file ", tmp_.string(), ": ", std::strerror(errno));
  }
  std::filesystem::rename(tmp_, path_, ec);
  KUIPER_CHECK(!ec, "cannot rename ", tmp_.string(), " to ", path_.string(), ": ", ec.message());
}

KlReader::KlReader(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::ifstream f(path, std::ios::binary);
  KUIPER_CHECK(f.good(), "cannot read --kl-base file ", name, ": ", std::strerror(errno));
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  KUIPER_CHECK(!f.bad(), "cannot read --kl-base file ", name);
  KUIPER_CHECK(bytes.size() >= KlHeader::kHeaderBytes && std::memcmp(bytes.data(), kMagic, 8) == 0,
               name, " is not a --kl-base file of llama_perplexity");
  const char* p = bytes.data();
  const uint32_t version = get<uint32_t>(p + 8);
  KUIPER_CHECK(version == KlHeader::kVersion, name, " is a --kl-base file of version ", version,
               ", this program reads version ", KlHeader::kVersion);
  KlHeader& h = header_;
  h.n_vocab = get<uint32_t>(p + 12);
  h.n_ctx = get<uint32_t>(p + 16);
  h.flags = get<uint32_t>(p + 20);
  h.top_k = get<uint32_t>(p + 24);
  h.n_windows = get<uint32_t>(p + 28);
  const uint64_t n_tokens = get<uint64_t>(p + 32);
  h.n_positions = get<uint64_t>(p + 40);
  const auto corrupt = [&](auto... why) { fail(name, " is corrupt: ", why...); };
  if (h.n_vocab == 0 || h.top_k == 0 || h.top_k > h.n_vocab || h.top_k > 4096)
    corrupt("header with a vocabulary of ", h.n_vocab, " and top-k ", h.top_k);
  const uint64_t size = bytes.size() - KlHeader::kHeaderBytes;
  if (n_tokens > size / 4 || h.n_positions > (size - n_tokens * 4) / h.record_bytes() ||
      n_tokens * 4 + h.n_positions * h.record_bytes() != size)
    fail(name, " is truncated or corrupt: its header promises ", n_tokens, " tokens and ",
         h.n_positions, " positions, which is not its size of ", bytes.size(), " bytes");
  h.tokens.resize(n_tokens);
  std::memcpy(h.tokens.data(), p + KlHeader::kHeaderBytes, n_tokens * 4);
  for (size_t i = 0; i < n_tokens; ++i)
    if (h.tokens[i] < 0 || uint32_t(h.tokens[i]) >= h.n_vocab)
      corrupt("token ", i, " is ", h.tokens[i], ", outside the vocabulary of ", h.n_vocab);
  records_.assign(bytes.begin() + ptrdiff_t(KlHeader::kHeaderBytes + n_tokens * 4), bytes.end());
  for (uint64_t i = 0; i < h.n_positions; ++i) {
    const char* r = records_.data() + i * h.record_bytes() + 8;
    for (uint32_t j = 0; j < h.top_k; ++j) {
      const int32_t id = get<int32_t>(r + 4 * j);
      if (id < 0 || uint32_t(id) >= h.n_vocab) corrupt("position ", i, " names token ", id);
    }
  }
}

BaseRecord KlReader::record(uint64_t i) const {
  const KlHeader& h = header_;
  const char* r = records_.data() + i * h.record_bytes();
  BaseRecord b;
  b.logp_target = get<float>(r);
  b.log_rest = get<float>(r + 4);
  b.ids.resize(h.top_k);
  b.logp.resize(h.top_k);
  std::memcpy(b.ids.data(), r + 8, 4 * size_t(h.top_k));
  std::memcpy(b.logp.data(), r + 8 + 4 * size_t(h.top_k), 4 * size_t(h.top_k));
  return b;
}

double kl_divergence(const BaseRecord& base, std::span<const float> logits, const RowNorm& norm) {
  double kl = 0;
  for (size_t j = 0; j < base.ids.size(); ++j) {
    const float lp = base.logp[j];
    if (lp == -std::numeric_limits<float>::infinity()) continue;
    kl += std::exp(double(lp)) * (double(lp) - log_prob(logits[size_t(base.ids[j])], norm));
  }
  if (base.log_rest > -std::numeric_limits<float>::infinity()) {
    const float lq = log_rest(logits, base.ids, norm);
    // A model that leaves nothing outside the base's top-k: a floor instead of log(0).
    const double lq_floor = std::max(double(lq), std::log(1e-30));
    kl += std::exp(double(base.log_rest)) * (double(base.log_rest) - lq_floor);
  }
  return kl;
}

double KlStats::mean_kld() const {
  if (kld.empty()) return 0.0;
  double s = 0;
  for (float v : kld) s += v;
  return s / double(kld.size());
}

double KlStats::mean_kld_error() const {
  const size_t n = kld.size();
  if (n < 2) return 0.0;
  double s = 0, s2 = 0;
  for (float v : kld) s += v, s2 += double(v) * v;
  const double m = s / double(n), var = s2 / double(n) - m * m;
  return var > 0 ? std::sqrt(var / double(n - 1)) : 0.0;
}

double KlStats::kld_percentile(double fraction) const {
  if (kld.empty()) return 0.0;
  std::vector<float> v = kld;
  std::sort(v.begin(), v.end());
  if (fraction <= 0) return v.front();
  if (fraction >= 1) return v.back();
  const double p = fraction * double(v.size() - 1);
  const size_t i = size_t(p);
  const double t = p - double(i);
  return (1 - t) * v[i] + t * v[std::min(i + 1, v.size() - 1)];
}

EvalResult evaluate(LlamaModel& model, std::span<const Window> windows, int k, KlWriter* writer,
                    const KlReader* base, const std::function<void(int, const NllStats&)>& on_window) {
  EvalResult result;
  uint64_t position = 0;
  struct Row {
    double nll = 0;
    double nll_base = 0;
    float kld = 0;
    bool same_top = false;
    BaseRecord saved;
  };
  for (size_t wi = 0; wi < windows.size(); ++wi) {
    const Window& w = windows[wi];
    const Tensor logits = model.forward(w.input, 0, /*all_positions=*/true);
    const int64_t vocab = logits.dim(1);
    const float* all = logits.span<float>().data();
    std::vector<Row> rows(size_t(w.count));
    // Positions in parallel; each row's work is independent and the sums below run in order,
    // so the result does not depend on the thread count.
#pragma omp parallel for schedule(dynamic, 1)
    for (int r = 0; r < w.count; ++r) {
      const std::span<const float> row(all + (w.first + r) * vocab, size_t(vocab));
      const int32_t target = w.input[size_t(w.first + r + 1)];
      const RowNorm norm = row_norm(row);
      Row& out = rows[size_t(r)];
      out.nll = norm.log_z - double(row[size_t(target)]);
      if (writer != nullptr) {
        BaseRecord& s = out.saved;
        s.ids = top_k(row, k);
        s.logp.resize(s.ids.size());
        for (size_t j = 0; j < s.ids.size(); ++j) s.logp[j] = log_prob(row[size_t(s.ids[j])], norm);
        s.logp_target = log_prob(row[size_t(target)], norm);
        s.log_rest = log_rest(row, s.ids, norm);
      }
      if (base != nullptr) {
        const BaseRecord b = base->record(position + uint64_t(r));
        out.nll_base = -double(b.logp_target);
        out.kld = float(kl_divergence(b, row, norm));
        const int32_t argmax = int32_t(std::find(row.begin(), row.end(), norm.max) - row.begin());
        out.same_top = argmax == b.ids[0];
      }
    }
    for (const Row& r : rows) {
      result.nll.add(r.nll);
      if (writer != nullptr) writer->write(r.saved);
      if (base != nullptr) {
        KlStats& kl = result.kl;
        kl.nll.add(r.nll);
        kl.nll_base.add(r.nll_base);
        kl.sum_nll_nll_base += r.nll * r.nll_base;
        kl.kld.push_back(r.kld);
        kl.same_top += r.same_top;
      }
    }
    position += uint64_t(w.count);
    if (on_window) on_window(int(wi), result.nll);
  }
  return result;
}

}  // namespace kuiper::demo::ppl
