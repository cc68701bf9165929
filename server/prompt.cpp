#include "server/prompt.h"

namespace kuiper::server {
namespace {

std::vector<int32_t> chat_prompt(const CompletionRequest& r, const ServedModel& model) {
  if (!model.chat_template)
    throw invalid_request("no_chat_template",
                          "the model has no chat template; use /v1/completions, or start the "
                          "server with --template NAME");
  try {
    return model.chat_template->render_with_contents(r.messages, 0, true)
        .encode(*model.tokenizer, model.add_bos);
  } catch (const Error& e) {  // e.g. Llama 2's turns must alternate user/assistant
    throw invalid_request("invalid_value", e.what(), "messages");
  }
}

std::vector<int32_t> completion_prompt(const CompletionRequest& r, const ServedModel& model) {
  if (r.prompt_ids.empty()) return model.tokenizer->encode(r.prompt, model.add_bos);
  for (const int32_t id : r.prompt_ids)
    if (id >= model.vocab_size)
      throw invalid_request("invalid_value",
                            str_cat("'prompt' holds token id ", id, ", outside the vocabulary of ",
                                    model.vocab_size),
                            "prompt");
  return r.prompt_ids;
}

}  // namespace

engine::Request make_engine_request(const CompletionRequest& r, const ServedModel& model) {
  engine::Request out;
  out.prompt = r.endpoint == Endpoint::kChat ? chat_prompt(r, model) : completion_prompt(r, model);
  const int n = int(out.prompt.size());
  const std::string_view param = r.endpoint == Endpoint::kChat ? "messages" : "prompt";
  if (n == 0) throw invalid_request("invalid_value", "the prompt has no tokens", std::string(param));
  // The engine needs room for the prompt and at least one new token.
  if (n >= model.max_sequence_tokens)
    throw invalid_request("context_length_exceeded",
                          str_cat("the prompt has ", n, " tokens but the context holds ",
                                  model.max_sequence_tokens,
                                  " (prompt and at least one new token; see -c/--ctx-size)"),
                          std::string(param));
  out.params = r.params;
  const int room = model.max_sequence_tokens - n;
  out.params.max_tokens = r.max_tokens_given ? std::min(r.params.max_tokens, room) : room;
  if (r.endpoint == Endpoint::kChat) {
    if (const auto eot = model.tokenizer->token_id(model.chat_template->end_of_turn()))
      out.params.stop_ids.push_back(*eot);
  }
  return out;
}

}  // namespace kuiper::server
