#pragma once
#include <span>
#include <string>

#include "demo/options.h"
#include "kuiper/base/dtype.h"
#include "kuiper/engine/engine.h"
#include "server/http_server.h"

namespace kuiper::server {

struct ServerOptions {
  demo::Options model;  // files, device, context, threads, mmap (what open_session reads)
  std::string chat_template;  // empty: the model file's
  std::string alias;          // empty: the model file's name
  DType kv_type = DType::kF32;
  engine::EngineOptions engine{.max_running = 64, .token_budget = 512, .max_waiting = 64};
  HttpOptions http;
  bool help = false;
};

// Parses argv. Throws kuiper::Error for unknown options, missing or malformed values.
ServerOptions parse_server_options(std::span<char* const> args);
std::string server_usage(const std::string& program);

}  // namespace kuiper::server
