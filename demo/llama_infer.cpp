// llama_infer MODEL [TOKENIZER] [options]: generate text, tokenize a prompt, or chat.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "demo/chat.h"
#include "demo/command_line.h"
#include "demo/generator.h"
#include "demo/options.h"
#include "demo/session.h"
#include "kuiper/base/error.h"

namespace kuiper::demo {
namespace {

void print_ids(std::span<const int32_t> ids) {
  for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? " " : "", ids[i]);
  std::printf("\n");
}

double per_second(int tokens, double seconds) { return seconds > 0 ? tokens / seconds : 0.0; }

int generate(const Options& o, Session& s) {
  const ModelConfig& c = s.model->config();
  std::vector<int32_t> prompt = s.tokenizer->encode(o.prompt, c.add_bos && c.bos_id >= 0);
  if (o.tokenize_only) {
    print_ids(prompt);
    return 0;
  }
  KUIPER_CHECK(!prompt.empty(), "the prompt is empty and the model has no BOS token to start from");
  KUIPER_CHECK(int64_t(prompt.size()) <= s.model->context(), "the prompt has ", prompt.size(),
               " tokens but the context holds ", s.model->context(), " (-c/--ctx)");
  report_loaded(o, s);
  if (!o.print_ids) {
    std::fwrite(o.prompt.data(), 1, o.prompt.size(), stdout);
    std::fflush(stdout);
  }
  Generator gen(*s.model, *s.tokenizer, o.sampler);
  const Generator::Result r = gen.generate(prompt, o.steps, [&](std::string_view text) {
    if (o.print_ids || text.empty()) return;
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  });
  if (o.print_ids) print_ids(r.ids);
  else std::printf("\n");
  // The statistics below go to stderr, which is unbuffered: flush stdout first, so that a
  // terminal or a 2>&1 pipe shows the text's last line before them.
  std::fflush(stdout);
  if (r.stop == Generator::Stop::kContextFull)
    std::fprintf(stderr, "kuiper: context of %d tokens is full: stopped after %d new tokens (use -c)\n",
                 s.model->context(), r.stats.generated_tokens);
  std::fprintf(stderr, "kuiper: prompt %d tokens in %.3f s (%.1f tokens/s)\n",
               r.stats.prefill_tokens, r.stats.prefill_seconds,
               per_second(r.stats.prefill_tokens, r.stats.prefill_seconds));
  // The first generated token comes out of the prefill; the decode rate counts the rest.
  const int decoded = std::max(0, r.stats.generated_tokens - 1);
  std::fprintf(stderr, "kuiper: generated %d tokens, decode %.1f tokens/s\n",
               r.stats.generated_tokens, per_second(decoded, r.stats.decode_seconds));
  return 0;
}

int run(int argc, char** argv) {
  auto parsed = options_or_exit_code("llama_infer", argc, argv, parse_options, usage);
  if (const int* exit_code = std::get_if<int>(&parsed)) return *exit_code;
  Options& o = std::get<Options>(parsed);
  if (!o.seed_given)
    o.sampler.seed = uint64_t(std::chrono::system_clock::now().time_since_epoch().count());
  Session s = open_session(o);
  return o.chat ? chat(o, s) : generate(o, s);
}

}  // namespace
}  // namespace kuiper::demo

int main(int argc, char** argv) {
  return kuiper::demo::guarded_main("llama_infer", argc, argv, kuiper::demo::run);
}
