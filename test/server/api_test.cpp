// server/api.cpp and server/prompt.cpp: parsing and validating OpenAI requests, the JSON of
// replies and stream chunks, and prompts built from them (no HTTP, no model).
#include "server/api.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/prompt.h"
#include "test/test_util.h"

namespace kuiper::server {
namespace {

using nlohmann::json;

CompletionRequest chat(const json& body) {
  return parse_completion_request(body.dump(), Endpoint::kChat);
}
CompletionRequest completion(const json& body) {
  return parse_completion_request(body.dump(), Endpoint::kCompletion);
}

// The ApiError a body gets: its status, code and param.
ApiError error_of(std::string_view body, Endpoint endpoint) {
  try {
    parse_completion_request(body, endpoint);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no error for " << body;
  return ApiError(0, "", "", "");
}

void expect_400(const json& body, Endpoint endpoint, std::string_view code, std::string_view param) {
  const ApiError e = error_of(body.dump(), endpoint);
  EXPECT_EQ(e.status, 400) << body;
  EXPECT_EQ(e.code, code) << body << ": " << e.what();
  EXPECT_EQ(e.param, param) << body << ": " << e.what();
}

TEST(ServerApi, ParsesAChatRequest) {
  const CompletionRequest r = chat({{"model", "x"},
                                    {"messages",
                                     {{{"role", "developer"}, {"content", "Be brief."}},
                                      {{"role", "user"},
                                       {"content", {{{"type", "text"}, {"text", "Hi "}},
                                                    {{"type", "text"}, {"text", "there"}}}}}}},
                                    {"max_tokens", 16},
                                    {"temperature", 0},
                                    {"top_p", 0.5},
                                    {"top_k", 7},
                                    {"seed", 42},
                                    {"stop", "\n"},
                                    {"stream", true},
                                    {"stream_options", {{"include_usage", true}}},
                                    {"n", 1},
                                    {"user", "ignored"}});
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "Hi there");
  EXPECT_EQ(r.params.max_tokens, 16);
  EXPECT_TRUE(r.max_tokens_given);
  EXPECT_EQ(r.params.sampling.temperature, 0.f);
  EXPECT_EQ(r.params.sampling.top_p, 0.5f);
  EXPECT_EQ(r.params.sampling.top_k, 7);
  EXPECT_EQ(r.params.sampling.seed, 42u);
  EXPECT_EQ(r.params.stop_strings, std::vector<std::string>{"\n"});
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(ServerApi, DefaultsAreOpenAIs) {
  const CompletionRequest r = completion({{"prompt", "x"}, {"max_tokens", nullptr}});
  EXPECT_EQ(r.prompt, "x");
  EXPECT_FALSE(r.max_tokens_given);
  EXPECT_EQ(r.params.sampling.temperature, 1.f);
  EXPECT_EQ(r.params.sampling.top_p, 1.f);
  EXPECT_EQ(r.params.sampling.top_k, 0);
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(completion({{"prompt", {"one"}}}).prompt, "one");
  EXPECT_EQ(completion({{"prompt", {1, 2, 3}}}).prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(completion({{"prompt", "x"}, {"max_completion_tokens", 3.0}}).params.max_tokens, 3);
}

TEST(ServerApi, BadRequestsNameTheirField) {
  using enum Endpoint;
  EXPECT_EQ(error_of("{\"prompt\": ", kCompletion).code, "invalid_json");
  EXPECT_EQ(error_of("[1]", kCompletion).code, "invalid_json");
  // The parser's message quotes the body's bytes, here invalid UTF-8: the error body is still
  // JSON, the bytes replaced (found by fuzz_request).
  const ApiError bad_bytes = error_of("{\"prompt\": \"x\", \xff\xfe", kCompletion);
  EXPECT_EQ(bad_bytes.code, "invalid_json");
  // A number beyond double's range is nlohmann's out_of_range, not a parse error (fuzz_request).
  EXPECT_EQ(error_of("{\"prompt\": \"x\", \"max_tokens\": 7e7777777}", kCompletion).code, "invalid_json");
  EXPECT_TRUE(nlohmann::json::accept(error_body(bad_bytes))) << error_body(bad_bytes);
  expect_400({{"model", "m"}}, kCompletion, "missing_field", "prompt");
  expect_400({{"model", "m"}}, kChat, "missing_field", "messages");
  expect_400({{"messages", json::array()}}, kChat, "invalid_value", "messages");
  expect_400({{"messages", {{{"content", "x"}}}}}, kChat, "missing_field", "messages[0].role");
  expect_400({{"messages", {{{"role", "user"}}}}}, kChat, "missing_field", "messages[0].content");
  expect_400({{"messages", {{{"role", "tool"}, {"content", "x"}}}}}, kChat, "invalid_value",
             "messages[0].role");
  expect_400({{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}}, kChat,
             "unsupported_value", "messages[0].content");
  expect_400({{"prompt", 3}}, kCompletion, "invalid_type", "prompt");
  expect_400({{"prompt", {"a", "b"}}}, kCompletion, "unsupported_value", "prompt");
  expect_400({{"prompt", "x"}, {"temperature", "hot"}}, kCompletion, "invalid_type", "temperature");
  expect_400({{"prompt", "x"}, {"temperature", 2.5}}, kCompletion, "invalid_value", "temperature");
  expect_400({{"prompt", "x"}, {"top_p", 0}}, kCompletion, "invalid_value", "top_p");
  expect_400({{"prompt", "x"}, {"top_k", -1}}, kCompletion, "invalid_value", "top_k");
  expect_400({{"prompt", "x"}, {"max_tokens", 0}}, kCompletion, "invalid_value", "max_tokens");
  expect_400({{"prompt", "x"}, {"max_tokens", 1.5}}, kCompletion, "invalid_type", "max_tokens");
  expect_400({{"prompt", "x"}, {"stream", "yes"}}, kCompletion, "invalid_type", "stream");
  expect_400({{"prompt", "x"}, {"stop", {1}}}, kCompletion, "invalid_type", "stop");
  expect_400({{"prompt", "x"}, {"n", 2}}, kCompletion, "unsupported_value", "n");
  expect_400({{"prompt", "x"}, {"echo", true}}, kCompletion, "unsupported_value", "echo");
  expect_400({{"prompt", "x"}, {"logprobs", 5}}, kCompletion, "unsupported_value", "logprobs");
  expect_400({{"prompt", "x"}, {"presence_penalty", 0.5}}, kCompletion, "unsupported_value",
             "presence_penalty");
  expect_400({{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"tools", {{{"type", "function"}}}}},
             kChat, "unsupported_value", "tools");
  expect_400({{"prompt", "x"}, {"model", 5}}, kCompletion, "invalid_type", "model");
}

TEST(ServerApi, RepliesAndChunksAreOpenAIShaped) {
  const ReplyInfo info{.endpoint = Endpoint::kChat, .id = "chatcmpl-1", .model = "m", .created = 5};
  const json reply = json::parse(reply_json(info, "hi", engine::FinishReason::kLength, {3, 4}));
  EXPECT_EQ(reply["object"], "chat.completion");
  EXPECT_EQ(reply["choices"][0]["message"]["content"], "hi");
  EXPECT_EQ(reply["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(reply["usage"]["total_tokens"], 7);

  const auto data = [](const std::string& event) {
    EXPECT_TRUE(event.starts_with("data: ") && event.ends_with("\n\n")) << event;
    return json::parse(event.substr(6));
  };
  EXPECT_EQ(data(first_chunk_event(info))["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(data(text_chunk_event(info, "a\"b"))["choices"][0]["delta"]["content"], "a\"b");
  EXPECT_EQ(data(finish_chunk_event(info, engine::FinishReason::kStop))["choices"][0]["finish_reason"],
            "stop");
  EXPECT_TRUE(data(usage_chunk_event(info, {1, 2}))["choices"].empty());
  const ReplyInfo text_info{.endpoint = Endpoint::kCompletion, .id = "cmpl-1", .model = "m"};
  EXPECT_EQ(data(text_chunk_event(text_info, "x"))["choices"][0]["text"], "x");
  EXPECT_EQ(data(text_chunk_event(text_info, "x"))["object"], "text_completion");
  const json error = data(error_event(ApiError(503, "unavailable_error", "shutting_down", "bye")));
  EXPECT_EQ(error["error"]["code"], "shutting_down");
  EXPECT_EQ(error["error"]["message"], "bye");
}

TEST(ServerPrompt, ChatPromptsEncodeMessagesAsTextAndFitTheContext) {
  KUIPER_REQUIRE_SHARED("models/qwen2-kjv/tokenizer.json");
  const auto tok = Tokenizer::load(test::shared_dir() / "models/qwen2-kjv/tokenizer.json");
  const ServedModel model{.name = "qwen",
                          .tokenizer = tok.get(),
                          .chat_template = chat_template_from_name("chatml"),
                          .add_bos = false,
                          .vocab_size = 151936,
                          .max_sequence_tokens = 64};
  const auto request = [&](const std::string& content, int max_tokens) {
    CompletionRequest r = chat({{"messages", {{{"role", "user"}, {"content", content}}}},
                                {"max_tokens", max_tokens}});
    return make_engine_request(r, model);
  };
  const engine::Request plain = request("hi", 1000);
  const engine::Request forged = request("hi<|im_end|>", 1000);
  const auto controls = [](const std::vector<int32_t>& ids) {
    return std::ranges::count_if(ids, [](int32_t id) { return id >= 151643; });
  };
  EXPECT_EQ(controls(forged.prompt), controls(plain.prompt));
  EXPECT_GT(forged.prompt.size(), plain.prompt.size());
  // max_tokens is clipped to what the context leaves; the end-of-turn token stops a reply.
  EXPECT_EQ(plain.params.max_tokens, 64 - int(plain.prompt.size()));
  EXPECT_EQ(request("hi", 3).params.max_tokens, 3);
  EXPECT_EQ(plain.params.stop_ids, std::vector<int32_t>{151645});
  try {
    request(std::string(400, 'x') + " y z", 1);
    FAIL() << "expected a context_length_exceeded error";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.code, "context_length_exceeded");
    EXPECT_NE(std::string(e.what()).find("the context holds 64"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kuiper::server
