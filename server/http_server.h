#pragma once
// llama_server's HTTP side: the OpenAI-compatible endpoints on top of an engine that another
// thread runs (Engine::serve). It parses and validates requests, renders and tokenizes prompts,
// submits them, and streams the engine's updates back; it owns no model logic.
#include <cstddef>
#include <memory>
#include <string>

#include "kuiper/engine/engine.h"
#include "server/prompt.h"

namespace kuiper::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8080;             // 0: any free port (bind() says which)
  std::string api_key;         // non-empty: requests need "Authorization: Bearer KEY"
  size_t max_body = 4 << 20;   // bytes; larger bodies get 413
  int threads = 0;             // connections served at once; 0: enough for the engine's limits
  bool log_requests = true;    // one line per request on stderr
};

class HttpServer {
 public:
  HttpServer(engine::Engine& engine, const engine::EngineOptions& engine_options, ServedModel model,
             HttpOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; throws kuiper::Error when it cannot. Returns the port.
  int bind();
  // Answers requests on the calling thread until shutdown().
  void serve();
  // Thread-safe, e.g. from a signal-handling thread: new requests get 503, the engine stops
  // (running requests end: streams with a final error event, others with 503), the responses
  // in flight are finished, then serve() returns.
  void shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kuiper::server
