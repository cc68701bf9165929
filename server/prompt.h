#pragma once
// A parsed request -> what the engine runs: prompt ids and generation parameters that fit the
// served model.
#include <optional>
#include <string>

#include "kuiper/engine/engine.h"
#include "kuiper/tokenizer/chat_template.h"
#include "kuiper/tokenizer/tokenizer.h"
#include "server/api.h"

namespace kuiper::server {

// What requests need to know about the model being served.
struct ServedModel {
  std::string name;  // what /v1/models lists and replies name
  const Tokenizer* tokenizer = nullptr;
  std::optional<ChatTemplate> chat_template;  // none: /v1/chat/completions is refused
  bool add_bos = true;
  int vocab_size = 0;
  int max_sequence_tokens = 0;  // prompt + generated, per request
};

// The engine request for `r` (on_update left empty). Chat messages are rendered with the
// model's template, their contents encoded as plain text; a completion prompt is encoded with
// special tokens parsed, as a raw prompt is. max_tokens is clipped to the context (finish_reason
// "length" at its end); chat replies also stop at the template's end-of-turn token. Throws
// ApiError (400) for a conversation the template cannot render, an empty prompt, token ids
// outside the vocabulary, or a prompt that leaves no room for one new token (naming both
// lengths).
engine::Request make_engine_request(const CompletionRequest& r, const ServedModel& model);

}  // namespace kuiper::server
