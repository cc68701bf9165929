// The engine against Hugging Face's greedy outputs (shared/models/golden_public.json): many
// requests at once must each get exactly what the model gives them alone.
#include "kuiper/engine/engine.h"

#include <map>

#include "test/test_util.h"

namespace kuiper::engine {
namespace {

using test::golden;
using test::shared_dir;

struct Golden {
  std::vector<int32_t> prompt, expected;
};

// Every golden case of a model (llama2's prompts; qwen2/llama3 raw and chat).
std::vector<Golden> cases_of(const std::string& model) {
  std::vector<Golden> out;
  for (const std::string section : {"prompts", "raw", "chat"}) {
    const auto& m = golden().at(model);
    if (!m.contains(section)) continue;
    for (const auto& c : m.at(section))
      out.push_back({c.at("prompt_ids").get<std::vector<int32_t>>(),
                     c.at("greedy_ids").get<std::vector<int32_t>>()});
  }
  return out;
}

// The index of the case with the longest greedy continuation.
size_t longest_case(const std::vector<Golden>& cases) {
  size_t best = 0;
  for (size_t i = 1; i < cases.size(); ++i)
    if (cases[i].expected.size() > cases[best].expected.size()) best = i;
  return best;
}

std::filesystem::path tokenizer_of(const std::string& model) {
  const auto dir = shared_dir() / "models" / (model + "-kjv");
  return std::filesystem::exists(dir / "tokenizer.json") ? dir / "tokenizer.json"
                                                         : dir / "tokenizer.model";
}

// What a request's callbacks delivered.
struct Received {
  std::vector<int32_t> tokens;
  std::string text;
  int updates = 0;
  bool finished = false;
  FinishReason reason = FinishReason::kError;
};

class EngineGolden : public test::DeviceModelTest {
 protected:
  void load(ModelOptions options = {}) {
    options.device = device();
    model_ = LlamaModel::load(test::exported_model("--hf {shared}/models/" + model() + "-kjv"),
                              options);
    tokenizer_ = Tokenizer::load(tokenizer_of(model()));
  }
  Request request_for(const Golden& g, Received& r) const {
    Request q;
    q.prompt = g.prompt;
    q.params.max_tokens = int(g.expected.size());
    q.on_update = [&r](const Update& u) {
      EXPECT_FALSE(r.finished) << "an update after the last one";
      r.tokens.insert(r.tokens.end(), u.tokens.begin(), u.tokens.end());
      r.text += u.text;
      ++r.updates;
      r.finished = u.finished;
      r.reason = u.reason;
    };
    return q;
  }

  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_P(EngineGolden, RequestsSubmittedTogetherEachGetTheirGreedyIds) {
  load();
  Engine engine(*model_, *tokenizer_);
  const auto cases = cases_of(model());
  std::vector<Received> got(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) engine.submit(request_for(cases[i], got[i]));
  engine.run_until_idle();
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(got[i].tokens, cases[i].expected) << "case " << i;
    EXPECT_TRUE(got[i].finished);
    EXPECT_EQ(got[i].text, tokenizer_->decode(std::vector<int32_t>(
                               got[i].tokens.begin(),
                               got[i].tokens.end() - (got[i].reason == FinishReason::kStop))))
        << "case " << i;
  }
  const EngineStats s = engine.stats();
  EXPECT_EQ(s.running + s.waiting + s.kv_blocks_used, 0);
}

// The same with the model split over two tensor-parallel ranks (CPU: threads; CUDA: two GPUs).
TEST_P(EngineGolden, TwoTensorParallelRanksGiveEveryRequestItsGreedyIds) {
  if (device() == Device::kCUDA && cuda_device_count() < 2) GTEST_SKIP() << "needs 2 GPUs";
  load({.tensor_parallel = 2});
  Engine engine(*model_, *tokenizer_);
  const auto cases = cases_of(model());
  std::vector<Received> got(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) engine.submit(request_for(cases[i], got[i]));
  engine.run_until_idle();
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(got[i].tokens, cases[i].expected) << i;
}

TEST_P(EngineGolden, RequestsArrivingWhileOthersDecodeGetTheirGreedyIds) {
  load();
  Engine engine(*model_, *tokenizer_);
  const auto cases = cases_of(model());
  std::vector<Received> got(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    engine.submit(request_for(cases[i], got[i]));
    for (int k = 0; k < 3; ++k) engine.step();  // the earlier ones decode meanwhile
  }
  engine.run_until_idle();
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(got[i].tokens, cases[i].expected) << i;
}

TEST_P(EngineGolden, APoolTooSmallForAllPreemptsAndStillGivesTheGreedyIds) {
  const auto cases = cases_of(model());
  size_t longest = 0;
  for (const auto& c : cases) longest = std::max(longest, c.prompt.size() + c.expected.size());
  ModelOptions options;
  options.kv_block_size = 16;
  options.kv_blocks = int(longest / 16 + 2);  // one long sequence fits, all of them do not
  load(options);
  Engine engine(*model_, *tokenizer_);
  std::vector<Received> got(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) engine.submit(request_for(cases[i], got[i]));
  engine.run_until_idle();
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(got[i].tokens, cases[i].expected) << i;
  EXPECT_GT(engine.stats().preemptions, 0);
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
}

TEST_P(EngineGolden, CancellingFreesTheBlocksAndTheOthersGoOn) {
  load();
  Engine engine(*model_, *tokenizer_);
  auto cases = cases_of(model());
  std::swap(cases[0], cases[longest_case(cases)]);  // the first one is cancelled while it decodes
  std::vector<Received> got(cases.size());
  std::vector<RequestId> ids;
  for (size_t i = 0; i < cases.size(); ++i) ids.push_back(engine.submit(request_for(cases[i], got[i])));
  engine.cancel(ids.back());  // before it ever runs
  engine.step();
  engine.step();
  engine.cancel(ids[0]);  // while it decodes
  engine.run_until_idle();
  EXPECT_EQ(got[0].reason, FinishReason::kCancelled);
  EXPECT_EQ(got.back().reason, FinishReason::kCancelled);
  EXPECT_TRUE(got.back().tokens.empty());  // cancelled before it ran
  for (size_t i = 1; i + 1 < cases.size(); ++i) EXPECT_EQ(got[i].tokens, cases[i].expected) << i;
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
}

TEST_P(EngineGolden, ARequestLongerThanASequenceIsRefusedAndTheOthersGoOn) {
  ModelOptions options;
  options.context = 64;
  load(options);
  Engine engine(*model_, *tokenizer_);
  Request too_long;
  too_long.prompt.assign(64, 1);
  try {
    engine.submit(std::move(too_long));
    ADD_FAILURE() << "not refused";
  } catch (const Refused& e) {
    EXPECT_EQ(e.kind, Refused::Kind::kTooLong);
    EXPECT_NE(std::string(e.what()).find("64 tokens"), std::string::npos) << e.what();
  }
  const auto cases = cases_of(model());
  const auto& c = cases[longest_case(cases)];
  Received r;
  Golden short_case{c.prompt, {c.expected.begin(), c.expected.begin() + 4}};
  engine.submit(request_for(short_case, r));
  engine.run_until_idle();
  EXPECT_EQ(r.tokens, short_case.expected);
  EXPECT_EQ(r.reason, FinishReason::kLength);
}

// The queue limit counts the requests waiting at every moment, also in the middle of a step (a
// server's client may submit while another's token is being delivered): from a running request's
// update, the one just admitted does not count, and one taken in to wait for a slot does.
TEST_P(EngineGolden, TheQueueLimitCountsWhatWaitsDuringAStep) {
  // The scheduler's count, not a model's numbers: one model is enough.
  if (model() != "llama2") GTEST_SKIP() << "the queue limit is checked with llama2";
  load();
  EngineOptions options;
  options.max_running = 1;
  options.max_waiting = 1;
  Engine engine(*model_, *tokenizer_, options);
  const auto cases = cases_of(model());
  const Golden& c = cases[longest_case(cases)];
  ASSERT_GE(c.expected.size(), 3u);
  Received running, waiting, refused;
  Request first = request_for(c, running);
  int updates = 0;
  std::vector<std::string> outcomes;
  first.on_update = [&, deliver = first.on_update](const Update& u) {
    deliver(u);
    if (++updates > 2) return;
    try {
      engine.submit(request_for({c.prompt, {c.expected.front()}}, updates == 1 ? waiting : refused));
      outcomes.push_back("accepted");
    } catch (const Refused& e) {
      outcomes.push_back(e.kind == Refused::Kind::kQueueFull ? "queue full" : e.what());
    }
  };
  engine.submit(std::move(first));
  engine.run_until_idle();
  EXPECT_EQ(outcomes, (std::vector<std::string>{"accepted", "queue full"}));
  EXPECT_EQ(running.tokens, c.expected);
  EXPECT_EQ(waiting.tokens, std::vector<int32_t>{c.expected.front()});
}

INSTANTIATE_TEST_SUITE_P(All, EngineGolden, test::all_devices_and_models(),
                         test::device_model_label);

}  // namespace
}  // namespace kuiper::engine
