// llama_server's request bodies: arbitrary bytes as the body of /v1/chat/completions or
// /v1/completions (the first byte picks which). A body must parse or be refused with an ApiError;
// what the server then writes (the error body, or a reply and stream chunks quoting the request's
// text) must be valid JSON whatever bytes the request held.
#include <nlohmann/json.hpp>
#include <string>

#include "server/api.h"
#include "test/fuzz/fuzz_util.h"

namespace {

using nlohmann::json;
using namespace kuiper::server;

// The server's JSON goes to clients: it must parse back. A throw here escapes to libFuzzer.
void expect_json(const std::string& text) {
  if (!json::accept(text)) std::abort();
}

void expect_event(const std::string& event) {
  constexpr std::string_view kData = "data: ";
  if (!event.starts_with(kData) || !event.ends_with("\n\n")) std::abort();
  expect_json(event.substr(kData.size(), event.size() - kData.size() - 2));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Endpoint endpoint = data[0] & 1 ? Endpoint::kCompletion : Endpoint::kChat;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    const CompletionRequest request = parse_completion_request(body, endpoint);
    // Text a reply may carry back: the prompt, the messages, the stop strings.
    std::string text = request.prompt;
    for (const auto& m : request.messages) text += m.role + m.content;
    for (const auto& s : request.params.stop_strings) text += s;
    const ReplyInfo info{endpoint, "id", text, 0};
    expect_json(reply_json(info, text, kuiper::engine::FinishReason::kStop, {1, 2}));
    expect_event(text_chunk_event(info, text));
    expect_event(finish_chunk_event(info, kuiper::engine::FinishReason::kLength));
    if (endpoint == Endpoint::kChat) expect_event(first_chunk_event(info));
  } catch (const ApiError& e) {
    if (e.status != 400) std::abort();  // a body is the client's fault or fine
    expect_json(error_body(e));
    expect_event(error_event(e));
  }
  return 0;
}
