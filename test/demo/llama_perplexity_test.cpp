// llama_perplexity: the golden perplexities of the held-out book (golden_public.json's
// perplexity_rev) per device and model, llama.cpp-style scoring with a KL divergence of a model
// against itself, bad input ending in one clear line on stderr; and unit tests of the windowing,
// the log-softmax, top-k and the --kl-base file.
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

#include "demo/perplexity.h"
#include "kuiper/base/error.h"
#include "test/test_util.h"

namespace kuiper::test {
namespace {

namespace ppl = demo::ppl;

std::string perplexity_program() { return (bin_dir() / "llama_perplexity").string(); }

CommandResult perplexity(const std::string& args) {
  return run_command(perplexity_program() + " " + args);
}

// Exactly one line on stderr naming the problem, and a non-zero exit.
void expect_clear_error(const CommandResult& r, const std::string& must_mention) {
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_LT(r.exit_code, 128) << "killed by a signal: " << r.err;
  EXPECT_NE(r.err.find(must_mention), std::string::npos) << "stderr: " << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "stderr: " << r.err;
}

// The number after `label` in `text`; NaN when the label is missing.
double value_after(const std::string& text, const std::string& label) {
  const size_t at = text.find(label);
  if (at == std::string::npos) return NAN;
  return std::strtod(text.c_str() + at + label.size(), nullptr);
}

std::string write_file(const std::string& name, const std::string& bytes) {
  const auto path = scratch_dir() / name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path.string();
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The held-out book, one verse a line (the text column of kjv.tsv's Rev rows).
std::string revelation_verses() {
  const auto out = scratch_dir() / "rev_verses.txt";
  if (!std::filesystem::exists(out)) {
    std::ifstream in(shared_dir() / "corpus/kjv.tsv");
    std::ofstream o(out, std::ios::binary);
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> cols;
      std::stringstream ss(line);
      for (std::string c; std::getline(ss, c, '\t');) cols.push_back(c);
      if (cols.size() == 4 && cols[0] == "Rev") o << cols[3] << "\n";
    }
  }
  return out.string();
}

std::string model_args(const std::string& model) {
  const auto tokenizer = shared_dir() / "models" / (model + "-kjv") /
                         (model == "llama2" ? "tokenizer.model" : "tokenizer.json");
  return exported_model("--hf {shared}/models/" + model + "-kjv").string() + " " + tokenizer.string();
}

// ---- unit tests -------------------------------------------------------------------------------

TEST(PerplexityWindows, LlamaCppWindowsScoreTheSecondHalfWithBos) {
  std::vector<int32_t> tokens(37);
  std::iota(tokens.begin(), tokens.end(), 100);
  const auto w = ppl::llama_cpp_windows(tokens, 8, /*bos=*/1, 0);
  ASSERT_EQ(w.size(), 4u);  // 37 / 8, the rest left out
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(w[i].input.size(), 8u);
    EXPECT_EQ(w[i].input[0], 1);
    EXPECT_EQ(w[i].input[1], int32_t(100 + 8 * i + 1));
    EXPECT_EQ(w[i].first, 4);
    EXPECT_EQ(w[i].count, 3);  // logits 4, 5, 6 predict tokens 5, 6, 7
  }
  EXPECT_EQ(ppl::scored_positions(w), 12);
  EXPECT_EQ(ppl::llama_cpp_windows(tokens, 8, -1, 0)[1].input[0], 108);
  EXPECT_EQ(ppl::llama_cpp_windows(tokens, 8, 1, 2).size(), 2u);
}

TEST(PerplexityWindows, ConsecutiveWindowsKeepThePartialLast) {
  std::vector<int32_t> tokens(21);
  std::iota(tokens.begin(), tokens.end(), 100);
  const auto plain = ppl::consecutive_windows(tokens, 8, -1, 0);
  ASSERT_EQ(plain.size(), 3u);
  EXPECT_EQ(plain[2].input, (std::vector<int32_t>{116, 117, 118, 119, 120}));
  EXPECT_EQ(plain[2].first, 0);
  EXPECT_EQ(plain[2].count, 4);
  EXPECT_EQ(ppl::scored_positions(plain), 7 + 7 + 4);
  const auto bos = ppl::consecutive_windows(tokens, 8, 1, 0);
  ASSERT_EQ(bos.size(), 3u);
  EXPECT_EQ(bos[0].input.size(), 9u);
  EXPECT_EQ(bos[0].input[0], 1);
  EXPECT_EQ(bos[0].first, 1);  // the BOS logits are not scored
  EXPECT_EQ(ppl::scored_positions(bos), 7 + 7 + 4);
  // A last window of one token scores nothing and is left out.
  tokens.resize(17);
  EXPECT_EQ(ppl::consecutive_windows(tokens, 8, -1, 0).size(), 2u);
  EXPECT_EQ(ppl::consecutive_windows(tokens, 8, -1, 1).size(), 1u);
}

TEST(PerplexityMath, FastExpAndRowNormMatchDoublePrecision) {
  double worst = 0;
  for (float x = -87.f; x <= 0.f; x += 0.00137f) {
    const double e = std::exp(double(x));
    worst = std::max(worst, std::fabs(ppl::fast_exp(x) - e) / e);
  }
  EXPECT_LT(worst, 2e-7);
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.f, 4.f);
  std::vector<float> row(151936);
  for (float& v : row) v = dist(rng);
  row[77] = 40.f;
  double m = -INFINITY, s = 0;
  for (float v : row) m = std::max(m, double(v));
  for (float v : row) s += std::exp(double(v) - m);
  const ppl::RowNorm n = ppl::row_norm(row);
  EXPECT_EQ(n.max, 40.f);
  EXPECT_NEAR(n.log_z, m + std::log(s), 1e-6);
}

TEST(PerplexityMath, TopKMatchesAFullSort) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> dist(-50, 50);  // many ties
  for (size_t n : {40u, 1000u, 32000u}) {
    std::vector<float> row(n);
    for (float& v : row) v = float(dist(rng)) * 0.25f;
    std::vector<int32_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    order.resize(32);
    EXPECT_EQ(ppl::top_k(row, 32), order) << n;
  }
}

TEST(PerplexityMath, KlOfAModelAgainstItselfIsZero) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.f, 3.f);
  std::vector<float> p(5000), q(5000);
  for (float& v : p) v = dist(rng);
  for (size_t i = 0; i < q.size(); ++i) q[i] = p[i] + 0.3f * dist(rng);
  const auto record = [](const std::vector<float>& row) {
    const ppl::RowNorm n = ppl::row_norm(row);
    ppl::BaseRecord r;
    r.ids = ppl::top_k(row, 32);
    double top = 0;
    for (int32_t id : r.ids) {
      r.logp.push_back(float(row[size_t(id)] - n.log_z));
      top += std::exp(double(row[size_t(id)]) - n.log_z);
    }
    r.log_rest = float(std::log(1 - top));
    return r;
  };
  const ppl::BaseRecord base = record(p);
  // The rest bucket was summed here in double, there with fast_exp: equal to about 1e-7.
  EXPECT_NEAR(ppl::kl_divergence(base, p, ppl::row_norm(p)), 0.0, 1e-6);
  // Against another distribution: the KL of the two coarsened distributions, computed here.
  const ppl::RowNorm nq = ppl::row_norm(q);
  double expected = 0, q_top = 0;
  for (size_t j = 0; j < base.ids.size(); ++j) {
    const double lq = double(q[size_t(base.ids[j])]) - nq.log_z;
    expected += std::exp(double(base.logp[j])) * (base.logp[j] - lq);
    q_top += std::exp(lq);
  }
  expected += std::exp(double(base.log_rest)) * (base.log_rest - std::log(1 - q_top));
  EXPECT_GT(expected, 0.01);
  EXPECT_NEAR(ppl::kl_divergence(base, q, nq), expected, 1e-5 * expected);
}

TEST(PerplexityKlFile, RoundTripsAndRejectsDamage) {
  ppl::KlHeader h;
  h.n_vocab = 1000;
  h.n_ctx = 16;
  h.flags = ppl::KlHeader::kLines;
  h.top_k = 4;
  h.n_windows = 1;
  h.n_positions = 2;
  h.tokens = {5, 6, 7, 999};
  const std::string path = (scratch_dir() / "roundtrip.kld").string();
  {
    ppl::KlWriter w(path, h);
    w.write({-1.5f, -3.f, {1, 2, 3, 4}, {-1.f, -2.f, -3.f, -4.f}});
    w.write({-0.5f, -INFINITY, {9, 8, 7, 6}, {-0.1f, -0.2f, -0.3f, -0.4f}});
    EXPECT_FALSE(std::filesystem::exists(path)) << "written to a temporary until finish()";
    w.finish();
  }
  const ppl::KlReader r(path);
  EXPECT_EQ(r.header().n_vocab, 1000u);
  EXPECT_EQ(r.header().n_ctx, 16u);
  EXPECT_EQ(r.header().flags, ppl::KlHeader::kLines);
  EXPECT_EQ(r.header().tokens, h.tokens);
  EXPECT_EQ(r.record(1).ids, (std::vector<int32_t>{9, 8, 7, 6}));
  EXPECT_EQ(r.record(1).log_rest, -INFINITY);
  EXPECT_EQ(r.record(0).logp_target, -1.5f);
  const std::string bytes = read_file(path);
  EXPECT_EQ(bytes.size(), ppl::KlHeader::kHeaderBytes + 4 * 4 + 2 * (8 + 4 * 8));
  EXPECT_THROW(ppl::KlReader(write_file("short.kld", bytes.substr(0, bytes.size() - 1))), Error);
  EXPECT_THROW(ppl::KlReader(write_file("long.kld", bytes + "x")), Error);
  EXPECT_THROW(ppl::KlReader(write_file("magic.kld", "X" + bytes.substr(1))), Error);
  EXPECT_THROW(ppl::KlReader((scratch_dir() / "missing.kld").string()), Error);
  {
    ppl::KlWriter unfinished((scratch_dir() / "unfinished.kld").string(), h);
  }
  EXPECT_FALSE(std::filesystem::exists(scratch_dir() / "unfinished.kld"));
  EXPECT_FALSE(std::filesystem::exists(scratch_dir() / "unfinished.kld.tmp"));
}

// ---- the program ------------------------------------------------------------------------------

// golden_public.json's perplexity_rev through the command line, per device and model (CUDA skips
// without a GPU), over the whole held-out book: Llama 2 scores the verses, each encoded on its own
// and followed by EOS, in windows of [BOS] + 256 tokens; Qwen2 and Llama 3 the chat renderings,
// tokenized whole, in windows of 256.
class GoldenPerplexity : public ::testing::TestWithParam<std::tuple<Device, std::string>> {};

TEST_P(GoldenPerplexity, ReproducesPerplexityRev) {
  const auto& [device, model] = GetParam();
  KUIPER_REQUIRE_SHARED("models/golden_public.json");
  KUIPER_REQUIRE_SHARED("models/" + model + "-kjv");
  KUIPER_REQUIRE_SHARED("corpus/kjv.tsv");
  if (device == Device::kCUDA && cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const auto& g = golden().at(model).at("perplexity_rev");
  std::string args = model_args(model) + " --golden-windows -c " +
                     std::to_string(g.at("window").get<int>()) + " --device " +
                     std::string(device_name(device));
  if (g.at("bos_each_window").get<bool>()) args += " --bos-each-window";
  if (model == "llama2") {
    args += " --lines -f " + revelation_verses();
  } else {
    args += " -f " + (shared_dir() / "corpus" / ("rev_chat_" + model + ".txt")).string();
  }
  const auto r = perplexity(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(value_after(r.out, "tokens scored: "), g.at("tokens_scored").get<double>()) << r.out;
  const double mean_nll = g.at("mean_nll").get<double>();
  EXPECT_NEAR(value_after(r.out, "Mean NLL: "), mean_nll, 1e-3 * mean_nll) << r.out;
  const double ppl_value = value_after(r.out, "Final estimate: PPL = ");
  EXPECT_NEAR(ppl_value, g.at("ppl").get<double>(), 1e-2 * g.at("ppl").get<double>()) << r.out;
}

INSTANTIATE_TEST_SUITE_P(All, GoldenPerplexity,
                         ::testing::Combine(::testing::Values(Device::kCPU, Device::kCUDA),
                                            ::testing::Values("llama2", "qwen2", "llama3")),
                         [](const auto& info) {
                           return std::string(device_name(std::get<0>(info.param))) + "_" +
                                  std::get<1>(info.param);
                         });

// llama.cpp's scoring (whole text, windows of -c with BOS first, second half scored), then a KL
// divergence of the same model against the saved base: zero, with the same top token everywhere.
class PerplexityKl : public ::testing::TestWithParam<std::string> {};

TEST_P(PerplexityKl, AModelAgainstItselfHasNoDivergence) {
  const std::string model = GetParam();
  KUIPER_REQUIRE_SHARED("models/" + model + "-kjv");
  KUIPER_REQUIRE_SHARED("corpus/kjv.tsv");
  const std::string kld = (scratch_dir() / ("self_" + model + ".kld")).string();
  const std::string text = revelation_verses();
  const auto base = perplexity(model_args(model) + " -f " + text + " -c 64 --chunks 3 --kl-base " + kld);
  ASSERT_EQ(base.exit_code, 0) << base.err;
  EXPECT_EQ(value_after(base.out, "tokens scored: "), 3 * (64 - 1 - 32)) << base.out;
  EXPECT_NE(base.err.find("[1]"), std::string::npos) << base.err;
  EXPECT_NE(base.err.find(",[3]"), std::string::npos) << base.err;
  const double ppl_value = value_after(base.out, "Final estimate: PPL = ");
  EXPECT_GT(ppl_value, 1.0) << base.out;
  EXPECT_GT(std::filesystem::file_size(kld), 3u * 31 * (8 + 32 * 8));

  const auto kl = perplexity(model_args(model) + " -f " + text + " --kl-base " + kld + " --kl-divergence");
  ASSERT_EQ(kl.exit_code, 0) << kl.err;
  EXPECT_LT(std::fabs(value_after(kl.out, "Mean    KLD: ")), 1e-6) << kl.out;
  EXPECT_LT(std::fabs(value_after(kl.out, "99.0%   KLD: ")), 1e-6) << kl.out;
  EXPECT_EQ(value_after(kl.out, "Same top p: "), 100.0) << kl.out;
  EXPECT_EQ(value_after(kl.out, "Final estimate: PPL = "), ppl_value) << kl.out;
  EXPECT_NEAR(value_after(kl.out, "Mean PPL(base)                : "), ppl_value, 1e-4 * ppl_value)
      << kl.out;
  // Without -f the tokens come from the file.
  const auto no_text = perplexity(model_args(model) + " --kl-base " + kld + " --kl-divergence");
  ASSERT_EQ(no_text.exit_code, 0) << no_text.err;
  EXPECT_EQ(value_after(no_text.out, "Final estimate: PPL = "), ppl_value) << no_text.out;
}

INSTANTIATE_TEST_SUITE_P(Models, PerplexityKl, ::testing::Values("llama2", "qwen2"));

class PerplexityBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(shared_dir() / "models/llama2-kjv") ||
        !std::filesystem::exists(shared_dir() / "corpus/kjv.tsv"))
      GTEST_SKIP() << "test data not found in " << shared_dir().string();
    args_ = model_args("llama2");
    text_ = revelation_verses();
  }
  // A base file over 2 windows of 32 of the Rev verses.
  std::string base_file() {
    const std::string path = (scratch_dir() / "bad_input_base.kld").string();
    if (!std::filesystem::exists(path)) {
      const auto r = perplexity(args_ + " -f " + text_ + " -c 32 --chunks 2 --kl-base " + path);
      EXPECT_EQ(r.exit_code, 0) << r.err;
    }
    return path;
  }
  std::string args_, text_;
};

TEST_F(PerplexityBadInput, MissingTextFile) {
  expect_clear_error(perplexity(args_ + " -f /no/such/text.txt"), "/no/such/text.txt");
  expect_clear_error(perplexity(args_), "-f TEXT");
}

TEST_F(PerplexityBadInput, ContextTooSmallOrTooLarge) {
  expect_clear_error(perplexity(args_ + " -f " + text_ + " -c 4"), "at least 8");
  expect_clear_error(perplexity(args_ + " -f " + text_ + " -c 4096"), "larger than the model's context");
}

TEST_F(PerplexityBadInput, TextShorterThanOneWindow) {
  const std::string short_text = write_file("short.txt", "In the beginning God created the heaven.");
  expect_clear_error(perplexity(args_ + " -f " + short_text), "fewer than one window");
  expect_clear_error(perplexity(args_ + " -f " + write_file("empty.txt", "") + " --golden-windows"),
                     "nothing to score");
}

TEST_F(PerplexityBadInput, MissingOrCorruptBaseFile) {
  expect_clear_error(perplexity(args_ + " -f " + text_ + " --kl-base /no/such/base.kld --kl-divergence"),
                     "/no/such/base.kld");
  const std::string bytes = read_file(base_file());
  const std::string cut = write_file("cut.kld", bytes.substr(0, bytes.size() / 2));
  expect_clear_error(perplexity(args_ + " --kl-base " + cut + " --kl-divergence"), "truncated");
  const std::string text_file = write_file("not_a_base.kld", std::string(4096, 'x'));
  expect_clear_error(perplexity(args_ + " --kl-base " + text_file + " --kl-divergence"),
                     "not a --kl-base file");
  expect_clear_error(perplexity(args_ + " -f " + text_ + " --kl-divergence"), "--kl-base");
}

TEST_F(PerplexityBadInput, BaseOfOtherTokensOrOptions) {
  const std::string base = base_file();
  const std::string other = write_file("other.txt", "And God said, Let there be light.\n" + read_file(text_));
  expect_clear_error(perplexity(args_ + " -f " + other + " --kl-base " + base + " --kl-divergence"),
                     "other tokens");
  expect_clear_error(perplexity(args_ + " -f " + text_ + " -c 64 --kl-base " + base + " --kl-divergence"),
                     "-c 32");
  expect_clear_error(
      perplexity(args_ + " -f " + text_ + " --lines --kl-base " + base + " --kl-divergence"),
      "without --lines");
  // A model of another vocabulary.
  if (std::filesystem::exists(shared_dir() / "models/qwen2-kjv"))
    expect_clear_error(perplexity(model_args("qwen2") + " --kl-base " + base + " --kl-divergence"),
                       "vocabulary");
}

TEST_F(PerplexityBadInput, UnknownOptionsAndBadValues) {
  expect_clear_error(perplexity(args_ + " -f " + text_ + " --frobnicate"), "--frobnicate");
  expect_clear_error(perplexity(args_ + " -f " + text_ + " -c many"), "-c");
  expect_clear_error(perplexity(args_ + " -f " + text_ + " --chunks 0"), "--chunks");
  expect_clear_error(perplexity(args_ + " -f " + text_ + " --bos-each-window"), "--golden-windows");
  expect_clear_error(perplexity(args_ + " -f " + text_ + " --device tpu"), "tpu");
}

TEST(LlamaPerplexity, HelpPrintsUsage) {
  const auto r = perplexity("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("usage:"), std::string::npos);
  EXPECT_NE(r.out.find("--kl-divergence"), std::string::npos);
}

}  // namespace
}  // namespace kuiper::test
