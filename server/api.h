#pragma once
// The OpenAI API's completion requests and replies as data: parsing and validating a request
// body, and writing the JSON of replies and stream chunks. No HTTP, no model.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kuiper/engine/engine.h"
#include "kuiper/tokenizer/chat_template.h"
#include "server/api_error.h"

namespace kuiper::server {

enum class Endpoint { kChat, kCompletion };  // /v1/chat/completions, /v1/completions

struct CompletionRequest {
  Endpoint endpoint = Endpoint::kChat;
  std::vector<ChatMessage> messages;  // kChat
  std::string prompt;                 // kCompletion: text, special tokens parsed
  std::vector<int32_t> prompt_ids;    // kCompletion with a prompt of token ids
  // max_tokens absent: up to the end of the context (as OpenAI's chat API). Sampling defaults
  // are OpenAI's: temperature 1, top_p 1, top_k off; no seed: a random one.
  engine::GenerationParams params;
  bool max_tokens_given = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
};

// Parses a request body for `endpoint`. Throws ApiError (400) for malformed JSON, missing or
// wrongly typed fields and values we do not support (n > 1, unknown roles, logprobs, tools...).
// Fields we do not know are ignored, as most OpenAI-compatible servers do.
CompletionRequest parse_completion_request(std::string_view body, Endpoint endpoint);

// What a reply says about itself.
struct ReplyInfo {
  Endpoint endpoint = Endpoint::kChat;
  std::string id;     // "chatcmpl-..." or "cmpl-..."
  std::string model;  // the served model's name
  int64_t created = 0;  // Unix seconds
};

struct Usage {
  int prompt_tokens = 0;
  int completion_tokens = 0;
};

// "stop" or "length"; the other reasons never reach a reply (see http_server.cpp).
std::string_view openai_finish_reason(engine::FinishReason reason);

// The whole reply of a request that did not stream.
std::string reply_json(const ReplyInfo& info, std::string_view text, engine::FinishReason reason,
                       const Usage& usage);

// One server-sent event of a stream: "data: {chunk}\n\n". The first chunk of a chat stream
// carries the role; the last one has a finish_reason and no text.
std::string first_chunk_event(const ReplyInfo& info);  // chat only: delta {"role": "assistant"}
std::string text_chunk_event(const ReplyInfo& info, std::string_view text);
std::string finish_chunk_event(const ReplyInfo& info, engine::FinishReason reason);
// stream_options.include_usage: a chunk with no choices and the usage.
std::string usage_chunk_event(const ReplyInfo& info, const Usage& usage);
// GET /v1/models: the one model served.
std::string models_json(std::string_view name, int64_t created, int context_length);

// An error in the middle of a stream (the status went out long ago), then the stream ends.
std::string error_event(const ApiError& e);
inline constexpr std::string_view kDoneEvent = "data: [DONE]\n\n";

}  // namespace kuiper::server
