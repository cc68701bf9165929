#include "server/api.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

namespace kuiper::server {
namespace {

using nlohmann::json;

// OpenAI allows four; a few more cost nothing.
constexpr size_t kMaxStopStrings = 16;

std::string_view type_name(const json& v) {
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

ApiError wrong_type(std::string_view name, std::string_view expected, const json& v) {
  return invalid_request("invalid_type",
                         str_cat("'", name, "' must be ", expected, ", not ", type_name(v)),
                         std::string(name));
}

ApiError unsupported(std::string_view name, std::string_view why) {
  return invalid_request("unsupported_value", str_cat("'", name, "': ", why), std::string(name));
}

// A request's fields (or a message's, named "messages[i]." + name in errors); null counts as
// absent, as clients send it for "not given".
class Fields {
 public:
  explicit Fields(const json& object, std::string prefix = {})
      : object_(object), prefix_(std::move(prefix)) {}

  const json* find(std::string_view name) const {
    const auto it = object_.find(name);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  const json& require(std::string_view name) const {
    const json* v = find(name);
    if (!v) throw invalid_request("missing_field", str_cat("'", param(name), "' is required"), param(name));
    return *v;
  }

  std::optional<double> number(std::string_view name) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (!v->is_number()) throw wrong_type(param(name), "a number", *v);
    return v->get<double>();
  }
  std::optional<int64_t> integer(std::string_view name) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (v->is_number_integer()) return v->get<int64_t>();
    // 16.0 is an integer to a JavaScript client.
    if (v->is_number_float() && std::nearbyint(v->get<double>()) == v->get<double>() &&
        std::abs(v->get<double>()) < 9.0e15)
      return int64_t(v->get<double>());
    throw wrong_type(param(name), "an integer", *v);
  }
  std::optional<bool> boolean(std::string_view name) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) throw wrong_type(param(name), "a boolean", *v);
    return v->get<bool>();
  }
  std::optional<std::string> string(std::string_view name) const {
    const json* v = find(name);
    if (!v) return std::nullopt;
    if (!v->is_string()) throw wrong_type(param(name), "a string", *v);
    return v->get<std::string>();
  }

  std::string param(std::string_view name) const { return str_cat(prefix_, name); }

 private:
  const json& object_;
  std::string prefix_;
};

json parse_object(std::string_view body) {
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::exception& e) {  // a syntax error, or a number beyond double (1e999)
    throw invalid_request("invalid_json", str_cat("the request body is not valid JSON: ", e.what()));
  }
  if (!doc.is_object())
    throw invalid_request("invalid_json", str_cat("the request body must be a JSON object, not ",
                                                  type_name(doc)));
  return doc;
}

// A message's content: a string, or an array of text parts (what newer clients send).
std::string message_content(const json& content, std::string_view param) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) throw wrong_type(param, "a string or an array of text parts", content);
  std::string text;
  for (const json& part : content) {
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") ||
        !part["text"].is_string())
      throw unsupported(param, "only text parts ({\"type\": \"text\", \"text\": ...}) are supported");
    text += part["text"].get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> parse_messages(const Fields& f) {
  const json& messages = f.require("messages");
  if (!messages.is_array()) throw wrong_type("messages", "an array", messages);
  if (messages.empty()) throw invalid_request("invalid_value", "'messages' is empty", "messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string at = str_cat("messages[", i, "]");
    if (!messages[i].is_object()) throw wrong_type(at, "an object", messages[i]);
    const Fields m(messages[i], at + ".");
    const std::string role = m.string("role").value_or("");
    if (role.empty()) m.require("role");  // absent: says so
    const std::string r = role == "developer" ? "system" : role;  // OpenAI's newer name for it
    if (r != "system" && r != "user" && r != "assistant")
      throw invalid_request("invalid_value",
                            str_cat("'", m.param("role"), "' is '", role,
                                    "'; supported roles are system, developer, user and assistant"),
                            m.param("role"));
    if (m.find("tool_calls") || m.find("function_call"))
      throw unsupported(at, "tool calls are not supported");
    const json& content = m.require("content");
    out.push_back({r, message_content(content, m.param("content"))});
  }
  return out;
}

// `prompt`: a string, an array of one string, or an array of token ids.
void parse_prompt(const Fields& f, CompletionRequest& r) {
  const json& prompt = f.require("prompt");
  if (prompt.is_string()) {
    r.prompt = prompt.get<std::string>();
    return;
  }
  if (!prompt.is_array()) throw wrong_type("prompt", "a string or an array", prompt);
  if (!prompt.empty() && std::all_of(prompt.begin(), prompt.end(),
                                     [](const json& v) { return v.is_number_integer(); })) {
    for (const json& id : prompt) {
      const auto v = id.get<int64_t>();
      if (v < 0 || v > INT32_MAX)
        throw invalid_request("invalid_value", str_cat("'prompt' holds token id ", v), "prompt");
      r.prompt_ids.push_back(int32_t(v));
    }
    return;
  }
  if (prompt.size() == 1 && prompt[0].is_string()) {
    r.prompt = prompt[0].get<std::string>();
    return;
  }
  throw unsupported("prompt", "one prompt per request: a string, [string] or an array of token ids");
}

std::vector<std::string> parse_stop(const Fields& f) {
  const json* stop = f.find("stop");
  if (!stop) return {};
  std::vector<std::string> out;
  if (stop->is_string()) {
    out.push_back(stop->get<std::string>());
  } else if (stop->is_array()) {
    for (const json& s : *stop) {
      if (!s.is_string()) throw wrong_type("stop", "a string or an array of strings", s);
      out.push_back(s.get<std::string>());
    }
  } else {
    throw wrong_type("stop", "a string or an array of strings", *stop);
  }
  if (out.size() > kMaxStopStrings)
    throw unsupported("stop", str_cat("at most ", kMaxStopStrings, " stop strings, got ", out.size()));
  std::erase(out, std::string());  // an empty stop string would stop before the first token
  return out;
}

// Options of the API that change the output in ways we do not implement: refused rather than
// silently ignored.
void refuse_unsupported(const Fields& f) {
  if (const auto n = f.integer("n"); n && *n != 1) throw unsupported("n", "only n = 1 is supported");
  if (const auto best_of = f.integer("best_of"); best_of && *best_of != 1)
    throw unsupported("best_of", "only best_of = 1 is supported");
  if (f.boolean("echo").value_or(false)) throw unsupported("echo", "echo is not supported");
  for (const char* penalty : {"presence_penalty", "frequency_penalty"})
    if (f.number(penalty).value_or(0.0) != 0.0) throw unsupported(penalty, "penalties are not supported");
  // Chat asks with true, completions with a count.
  if (const json* logprobs = f.find("logprobs");
      logprobs && ((logprobs->is_boolean() && logprobs->get<bool>()) ||
                   (logprobs->is_number() && logprobs->get<double>() != 0)))
    throw unsupported("logprobs", "log probabilities are not supported");
  if (f.integer("top_logprobs").value_or(0) != 0)
    throw unsupported("top_logprobs", "log probabilities are not supported");
  if (const json* bias = f.find("logit_bias"); bias && !(bias->is_object() && bias->empty()))
    throw unsupported("logit_bias", "logit_bias is not supported");
  for (const char* tools : {"tools", "functions"})
    if (const json* t = f.find(tools); t && !(t->is_array() && t->empty()))
      throw unsupported(tools, "tools are not supported");
  if (const json* format = f.find("response_format");
      format && !(format->is_object() && format->value("type", json()) == "text"))
    throw unsupported("response_format", "only {\"type\": \"text\"} is supported");
  if (const auto suffix = f.string("suffix"); suffix && !suffix->empty())
    throw unsupported("suffix", "suffix is not supported");
}

void parse_sampling(const Fields& f, CompletionRequest& r) {
  SamplerOptions& s = r.params.sampling;
  s = {.temperature = 1.f, .top_p = 1.f, .top_k = 0, .seed = 0};
  if (const auto t = f.number("temperature")) {
    if (!(*t >= 0 && *t <= 2))
      throw invalid_request("invalid_value", str_cat("'temperature' must be in [0, 2], got ", *t), "temperature");
    s.temperature = float(*t);
  }
  if (const auto p = f.number("top_p")) {
    if (!(*p > 0 && *p <= 1))
      throw invalid_request("invalid_value", str_cat("'top_p' must be in (0, 1], got ", *p), "top_p");
    s.top_p = float(*p);
  }
  if (const auto k = f.integer("top_k")) {
    if (*k < 0 || *k > INT32_MAX)
      throw invalid_request("invalid_value", str_cat("'top_k' must be >= 0, got ", *k), "top_k");
    s.top_k = int(*k);
  }
  if (const auto seed = f.integer("seed")) {
    s.seed = uint64_t(*seed);
  } else {
    s.seed = std::random_device{}();
  }
}

void parse_max_tokens(const Fields& f, CompletionRequest& r) {
  // The chat API's newer name wins over the older one.
  const char* name = f.find("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  const auto n = f.integer(name);
  if (!n) return;
  if (*n < 1 || *n > INT32_MAX)
    throw invalid_request("invalid_value", str_cat("'", name, "' must be at least 1, got ", *n), name);
  r.params.max_tokens = int(*n);
  r.max_tokens_given = true;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json envelope(const ReplyInfo& info, std::string_view object) {
  return {{"id", info.id}, {"object", object}, {"created", info.created}, {"model", info.model}};
}

std::string_view chunk_object(const ReplyInfo& info) {
  return info.endpoint == Endpoint::kChat ? "chat.completion.chunk" : "text_completion";
}

// One choice of a stream chunk: chat has a delta, completions the text itself.
json chunk_choice(const ReplyInfo& info, json delta_or_text, json finish_reason) {
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", std::move(finish_reason)}};
  choice[info.endpoint == Endpoint::kChat ? "delta" : "text"] = std::move(delta_or_text);
  return choice;
}

// What goes to a client. Replacing invalid UTF-8 (with U+FFFD) instead of throwing: an error
// message may quote the bytes of a body that was not valid JSON.
std::string text_of(const json& data) {
  return data.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string event(const json& data) { return str_cat("data: ", text_of(data), "\n\n"); }

std::string chunk_event(const ReplyInfo& info, json choice) {
  json chunk = envelope(info, chunk_object(info));
  chunk["choices"] = json::array({std::move(choice)});
  return event(chunk);
}

json error_json(const ApiError& e) {
  return {{"error",
           {{"message", e.what()},
            {"type", e.type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.code}}}};
}

}  // namespace

std::string error_body(const ApiError& e) { return text_of(error_json(e)); }

CompletionRequest parse_completion_request(std::string_view body, Endpoint endpoint) {
  const json doc = parse_object(body);
  const Fields f(doc);
  CompletionRequest r;
  r.endpoint = endpoint;
  if (const json* model = f.find("model"); model && !model->is_string())
    throw wrong_type("model", "a string", *model);
  if (endpoint == Endpoint::kChat) r.messages = parse_messages(f);
  else parse_prompt(f, r);
  refuse_unsupported(f);
  parse_sampling(f, r);
  parse_max_tokens(f, r);
  r.params.stop_strings = parse_stop(f);
  r.stream = f.boolean("stream").value_or(false);
  if (const json* options = f.find("stream_options")) {
    if (!options->is_object()) throw wrong_type("stream_options", "an object", *options);
    r.include_usage = Fields(*options).boolean("include_usage").value_or(false);
  }
  return r;
}

std::string_view openai_finish_reason(engine::FinishReason reason) {
  return reason == engine::FinishReason::kLength ? "length" : "stop";
}

std::string reply_json(const ReplyInfo& info, std::string_view text, engine::FinishReason reason,
                       const Usage& usage) {
  const bool chat = info.endpoint == Endpoint::kChat;
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", openai_finish_reason(reason)}};
  if (chat) choice["message"] = {{"role", "assistant"}, {"content", text}};
  else choice["text"] = text;
  json reply = envelope(info, chat ? "chat.completion" : "text_completion");
  reply["choices"] = json::array({std::move(choice)});
  reply["usage"] = usage_json(usage);
  return text_of(reply);
}

std::string first_chunk_event(const ReplyInfo& info) {
  return chunk_event(info, chunk_choice(info, {{"role", "assistant"}, {"content", ""}}, nullptr));
}

std::string text_chunk_event(const ReplyInfo& info, std::string_view text) {
  json content = info.endpoint == Endpoint::kChat ? json{{"content", text}} : json(text);
  return chunk_event(info, chunk_choice(info, std::move(content), nullptr));
}

std::string finish_chunk_event(const ReplyInfo& info, engine::FinishReason reason) {
  json empty = info.endpoint == Endpoint::kChat ? json::object() : json("");
  return chunk_event(info, chunk_choice(info, std::move(empty), openai_finish_reason(reason)));
}

std::string usage_chunk_event(const ReplyInfo& info, const Usage& usage) {
  json chunk = envelope(info, chunk_object(info));
  chunk["choices"] = json::array();
  chunk["usage"] = usage_json(usage);
  return event(chunk);
}

std::string error_event(const ApiError& e) { return event(error_json(e)); }

std::string models_json(std::string_view name, int64_t created, int context_length) {
  const json model = {{"id", name},
                      {"object", "model"},
                      {"created", created},
                      {"owned_by", "kuiper"},
                      {"context_length", context_length}};
  return text_of(json{{"object", "list"}, {"data", json::array({model})}});
}

}  // namespace kuiper::server
