#include "server/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "server/api.h"
#include "server/metrics.h"
#include "server/pending_reply.h"

namespace kuiper::server {
namespace {

using Clock = std::chrono::steady_clock;
using httplib::Request;
using httplib::Response;

// A stream that has had nothing to say for this long sends an SSE comment: clients ignore it,
// and a client that went away makes the write fail, which cancels its request even while it
// waits in the queue.
constexpr auto kQuietStream = std::chrono::milliseconds(1000);
// How long shutdown() lets the responses in flight finish.
constexpr auto kShutdownGrace = std::chrono::seconds(10);
constexpr int kListenBacklog = 512;
// Longer than clients keep an idle connection (httpx, under the openai client: 5 s), so that it is
// always the client that closes one: a server closing first races a client reusing it, and that
// request fails. shutdown() may wait this long for idle connections to go.
constexpr time_t kKeepAliveSeconds = 10;

// httplib listens with a backlog of 5: in a burst of clients connecting at once the others'
// SYNs are dropped and retried a second later. Listening again on the bound socket raises it.
class Listener : public httplib::Server {
 public:
  void raise_backlog(int n) { ::listen(svr_sock_, n); }
};

// The request this thread answers. httplib answers a request on one thread from routing to its
// log line, streams included, so the logger finds here what the handler and the stream wrote.
struct RequestLog {
  Clock::time_point start{};
  int prompt_tokens = 0;
  int completion_tokens = 0;
};
thread_local RequestLog t_log;

ApiError shutting_down() {
  return ApiError(503, "unavailable_error", "shutting_down", "the server is shutting down");
}

ApiError refusal(const engine::Refused& r) {
  switch (r.kind) {
    case engine::Refused::Kind::kInvalid: return invalid_request("invalid_value", r.what());
    case engine::Refused::Kind::kTooLong: return invalid_request("context_length_exceeded", r.what());
    case engine::Refused::Kind::kQueueFull:
      return ApiError(503, "unavailable_error", "queue_full", r.what());
  }
  return ApiError(500, "server_error", "internal_error", r.what());
}

// A request that ended without a reply: the server stopped it, or the engine failed.
ApiError unfinished(const PendingReply::News& n) {
  if (n.reason == engine::FinishReason::kCancelled) return shutting_down();
  return ApiError(500, "server_error", "engine_error", n.error.empty() ? "generation failed" : n.error);
}

bool replied(const PendingReply::News& n) {
  return n.reason == engine::FinishReason::kStop || n.reason == engine::FinishReason::kLength;
}

void send_error(Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.status == 503) res.set_header("Retry-After", "1");
  if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
  res.set_content(error_body(e), "application/json");
}

// Compares without stopping at the first difference, so timing does not give the key away.
bool same_key(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// The requests whose replies are being sent, so that shutdown() can end them and wait for them.
class InFlightRequests {
 public:
  explicit InFlightRequests(Metrics& m) : metrics_(m) {}

  void add(engine::RequestId id) {
    std::lock_guard lock(mutex_);
    ids_.insert(id);
    metrics_.request_started();
  }
  void remove(engine::RequestId id) {
    std::lock_guard lock(mutex_);
    ids_.erase(id);
    metrics_.request_ended();
  }
  std::vector<engine::RequestId> ids() const {
    std::lock_guard lock(mutex_);
    return {ids_.begin(), ids_.end()};
  }
  bool empty() const {
    std::lock_guard lock(mutex_);
    return ids_.empty();
  }

 private:
  Metrics& metrics_;
  mutable std::mutex mutex_;
  std::unordered_set<engine::RequestId> ids_;
};

// One request's membership of InFlightRequests, for as long as its reply is being sent.
class InFlight {
 public:
  InFlight(InFlightRequests& all, engine::RequestId id) : all_(all), id_(id) { all_.add(id_); }
  ~InFlight() { all_.remove(id_); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  InFlightRequests& all_;
  engine::RequestId id_;
};

// One streamed reply: the provider httplib calls until it says done.
struct EventStream {
  std::shared_ptr<PendingReply> pending;
  ReplyInfo info;
  bool include_usage = false;
  bool started = false;
  std::shared_ptr<InFlight> in_flight;

  // False when the client is gone (a write failed).
  bool write(httplib::DataSink& sink) {
    const auto put = [&](const std::string& event) { return sink.write(event.data(), event.size()); };
    if (!started) {
      started = true;
      if (info.endpoint == Endpoint::kChat && !put(first_chunk_event(info))) return false;
    }
    const auto news = pending->take(kQuietStream);
    if (!news) return put(": waiting\n\n");
    t_log.completion_tokens = news->completion_tokens;
    if (!news->text.empty() && !put(text_chunk_event(info, news->text))) return false;
    if (!news->finished) return true;
    const bool ok =
        replied(*news)
            ? put(finish_chunk_event(info, news->reason)) &&
                  (!include_usage ||
                   put(usage_chunk_event(info, {news->prompt_tokens, news->completion_tokens})))
            : put(error_event(unfinished(*news)));
    if (!ok || !put(std::string(kDoneEvent))) return false;
    sink.done();
    return true;
  }
};

}  // namespace

struct HttpServer::Impl {
  engine::Engine& engine;
  ServedModel model;
  HttpOptions options;
  int threads;
  Listener http;
  Metrics metrics;
  InFlightRequests in_flight{metrics};
  std::thread engine_thread;
  std::mutex admission;  // submit() against shutdown(): nothing is submitted after the stop
  bool draining = false;
  std::atomic<uint64_t> replies{0};
  std::atomic<bool> served{false};  // serve() has returned
  const int64_t started_at = std::time(nullptr);

  Impl(engine::Engine& e, const engine::EngineOptions& eo, ServedModel m, HttpOptions o)
      : engine(e),
        model(std::move(m)),
        options(std::move(o)),
        // Every running and waiting request holds a connection's thread; a few more answer
        // /health and /metrics meanwhile and keep idle keep-alive connections.
        threads(options.threads > 0 ? options.threads : eo.max_running + eo.max_waiting + 16) {
    routes();
  }

  // Wraps a handler: authentication, and errors as OpenAI's error bodies.
  Listener::Handler guarded(bool authenticate, std::function<void(const Request&, Response&)> f) {
    return [this, authenticate, f = std::move(f)](const Request& req, Response& res) {
      try {
        if (authenticate) check_key(req);
        f(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      } catch (const std::exception& e) {
        send_error(res, ApiError(500, "server_error", "internal_error", e.what()));
      }
    };
  }

  void check_key(const Request& req) const {
    if (options.api_key.empty()) return;
    const std::string header = req.get_header_value("Authorization");
    if (header.empty())
      throw ApiError(401, "authentication_error", "missing_api_key",
                     "this server needs an API key: send the header Authorization: Bearer KEY");
    if (!same_key(header, "Bearer " + options.api_key))
      throw ApiError(401, "authentication_error", "invalid_api_key", "the API key is not valid");
  }

  void routes() {
    http.new_task_queue = [n = threads] {
      return new httplib::ThreadPool(size_t(n));  // httplib owns and deletes it
    };
    http.set_payload_max_length(options.max_body);
    http.set_keep_alive_timeout(kKeepAliveSeconds);
    // While shutting down, clients are told not to come back on the same connection.
    http.set_post_routing_handler([this](const Request&, Response& res) {
      std::lock_guard lock(admission);
      if (draining) res.set_header("Connection", "close");
    });
    http.set_pre_routing_handler([](const Request&, Response&) {
      t_log = {.start = Clock::now()};
      return Listener::HandlerResponse::Unhandled;
    });
    http.set_logger([this](const Request& req, const Response& res) { log(req, res); });
    http.set_error_handler([this](const Request& req, Response& res) { fill_in_error(req, res); });
    http.set_exception_handler([](const Request&, Response& res, std::exception_ptr ep) {
      std::string what = "unknown error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      send_error(res, ApiError(500, "server_error", "internal_error", what));
    });

    http.Get("/health", [this](const Request&, Response& res) {
      std::lock_guard lock(admission);
      res.status = draining ? 503 : 200;
      res.set_content(draining ? R"({"status":"shutting down"})" : R"({"status":"ok"})",
                      "application/json");
    });
    http.Get("/metrics", guarded(true, [this](const Request&, Response& res) {
               res.set_content(metrics.prometheus(engine.stats()), "text/plain; version=0.0.4");
             }));
    http.Get("/v1/models", guarded(true, [this](const Request&, Response& res) {
               res.set_content(models_json(model.name, started_at, model.max_sequence_tokens),
                               "application/json");
             }));
    http.Post("/v1/chat/completions", guarded(true, [this](const Request& req, Response& res) {
                complete(req, res, Endpoint::kChat);
              }));
    http.Post("/v1/completions", guarded(true, [this](const Request& req, Response& res) {
                complete(req, res, Endpoint::kCompletion);
              }));
  }

  // Errors httplib itself answers (unknown path, body too large, malformed HTTP) get a JSON body
  // too; our own already have one.
  void fill_in_error(const Request& req, Response& res) const {
    if (!res.body.empty() || res.content_provider_) return;
    if (res.status == 404)
      return send_error(res, ApiError(404, "not_found_error", "not_found",
                                      str_cat("there is no endpoint ", req.method, " ", req.path)));
    if (res.status == 413)
      return send_error(res, ApiError(413, "invalid_request_error", "payload_too_large",
                                      str_cat("the request body is larger than ", options.max_body,
                                              " bytes (--max-body)")));
    send_error(res, ApiError(res.status, "invalid_request_error", "bad_request",
                             str_cat("the HTTP request was refused (status ", res.status, ")")));
  }

  void log(const Request& req, const Response& res) {
    metrics.count_response(res.status);
    if (options.log_requests) {
      const double seconds =
          t_log.start == Clock::time_point{}
              ? 0.0
              : std::chrono::duration<double>(Clock::now() - t_log.start).count();
      std::fprintf(stderr, "llama_server: %s %s %d tokens %d+%d %.3f s\n", req.method.c_str(),
                   req.path.c_str(), res.status, t_log.prompt_tokens, t_log.completion_tokens,
                   seconds);
    }
    t_log = {};
  }

  struct Submitted {
    engine::RequestId id;
    std::shared_ptr<InFlight> in_flight;
  };
  // Submits and counts the request as in flight (under one lock, so shutdown() sees it).
  Submitted submit(engine::Request request) {
    std::lock_guard lock(admission);
    if (draining) throw shutting_down();
    try {
      const engine::RequestId id = engine.submit(std::move(request));
      return {id, std::make_shared<InFlight>(in_flight, id)};
    } catch (const engine::Refused& e) {
      throw refusal(e);
    }
  }

  void complete(const Request& req, Response& res, Endpoint endpoint) {
    const CompletionRequest parsed = parse_completion_request(req.body, endpoint);
    engine::Request request = make_engine_request(parsed, model);
    t_log.prompt_tokens = int(request.prompt.size());
    auto pending = std::make_shared<PendingReply>();
    request.on_update = [pending](const engine::Update& u) { pending->push(u); };
    const Submitted submitted = submit(std::move(request));
    const ReplyInfo info{
        .endpoint = endpoint,
        .id = str_cat(endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-", started_at, "-", ++replies),
        .model = model.name,
        .created = std::time(nullptr)};
    if (!parsed.stream) return reply_whole(res, *pending, info);
    res.set_header("Cache-Control", "no-cache");
    auto stream = std::make_shared<EventStream>(EventStream{.pending = pending,
                                                            .info = info,
                                                            .include_usage = parsed.include_usage,
                                                            .in_flight = submitted.in_flight});
    res.set_chunked_content_provider(
        "text/event-stream",
        [stream](size_t, httplib::DataSink& sink) { return stream->write(sink); },
        // Not a success: the client went away (or never read a byte). Its cache blocks go back.
        [this, id = submitted.id, stream](bool success) {
          if (success) return;
          engine.cancel(id);
          metrics.count_disconnect();
        });
  }

  // A client that disconnects while a reply is generated is not noticed here (httplib gives a
  // handler no way to see it); max_tokens bounds the work.
  void reply_whole(Response& res, PendingReply& pending, const ReplyInfo& info) {
    std::string text;
    for (;;) {
      const auto news = pending.take(kQuietStream);
      if (!news) continue;
      text += news->text;
      t_log.completion_tokens = news->completion_tokens;
      if (!news->finished) continue;
      if (!replied(*news)) throw unfinished(*news);
      return res.set_content(
          reply_json(info, text, news->reason, {news->prompt_tokens, news->completion_tokens}),
          "application/json");
    }
  }

  void shutdown() {
    {
      std::lock_guard lock(admission);
      if (draining) return;
      draining = true;
      // Cancelled requests end at the engine's next step, however busy it is: streams with a
      // final error event, the others with 503.
      for (const engine::RequestId id : in_flight.ids()) engine.cancel(id);
      engine.stop();
    }
    const auto deadline = Clock::now() + kShutdownGrace;
    while (!in_flight.empty() && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    // A signal right after start: wait for listening to begin, or stop() would find nothing.
    while (!http.is_running() && !served && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    http.stop();
  }
};

HttpServer::HttpServer(engine::Engine& engine, const engine::EngineOptions& engine_options,
                       ServedModel model, HttpOptions options)
    : impl_(std::make_unique<Impl>(engine, engine_options, std::move(model), std::move(options))) {}

HttpServer::~HttpServer() {
  if (impl_->engine_thread.joinable()) {
    impl_->engine.stop();
    impl_->engine_thread.join();
  }
}

int HttpServer::bind() {
  Impl& s = *impl_;
  int port = s.options.port;
  if (port == 0) {
    port = s.http.bind_to_any_port(s.options.host);
    KUIPER_CHECK(port > 0, "cannot listen on ", s.options.host, " (any port)");
  } else {
    KUIPER_CHECK(s.http.bind_to_port(s.options.host, port), "cannot listen on ", s.options.host,
                 ":", port, " (in use, or not an address of this machine?)");
  }
  s.http.raise_backlog(kListenBacklog);
  return port;
}

void HttpServer::serve() {
  Impl& s = *impl_;
  // OpenMP's thread count (-t) belongs to the thread that set it: a new thread would use every
  // core, and its matmuls would spin against the rest of the machine.
  s.engine_thread = std::thread([&s, cpu_threads = kernels::cpu::threads()] {
    kernels::cpu::set_threads(cpu_threads);
    s.engine.serve();
  });
  s.http.listen_after_bind();
  s.served = true;
  s.engine.stop();
  s.engine_thread.join();
}

void HttpServer::shutdown() { impl_->shutdown(); }

}  // namespace kuiper::server
