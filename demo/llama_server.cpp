// llama_server MODEL TOKENIZER [options]: an OpenAI-compatible HTTP server on the batching
// engine (see server/ and README.md).
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "demo/command_line.h"
#include "demo/session.h"
#include "kuiper/engine/engine.h"
#include "kuiper/model/model_file.h"
#include "server/http_server.h"
#include "server/server_options.h"

namespace kuiper::server {
namespace {

// SIGINT and SIGTERM, handed to a thread: the handler only writes the signal's number into a
// pipe (any thread may take the signal, OpenBLAS's included), and wait() reads it.
class StopSignals {
 public:
  StopSignals() {
    KUIPER_CHECK(pipe(fds_) == 0, "cannot create a pipe for the signal handler");
    write_end_ = fds_[1];
    struct sigaction action {};
    action.sa_handler = [](int signal) {
      const char c = char(signal);
      [[maybe_unused]] const ssize_t n = write(write_end_, &c, 1);
    };
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
  }
  ~StopSignals() {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    close(fds_[0]);
    close(fds_[1]);
  }
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The signal that came, or 0 after wake().
  int wait() const {
    char c = 0;
    while (read(fds_[0], &c, 1) < 0 && errno == EINTR) {
    }
    return c;
  }
  void wake() const {
    const char c = 0;
    [[maybe_unused]] const ssize_t n = write(fds_[1], &c, 1);
  }

 private:
  static inline int write_end_ = -1;
  int fds_[2] = {-1, -1};
};

// The context LlamaModel gives a model for `requested` (0: its maximum, capped at 4096).
int context_of(const demo::Options& o) {
  if (o.context > 0) return o.context;
  const ModelFile file = ModelFile::open(o.model_path, FileBytes::Mode::kMap);
  return std::min(file.config().max_seq_len, 4096);
}

ServedModel served_model(const ServerOptions& o, const demo::Session& s, const engine::Engine& e) {
  const ModelConfig& c = s.model->config();
  const std::string template_name = o.chat_template.empty() ? c.chat_template : o.chat_template;
  return ServedModel{
      .name = o.alias.empty() ? std::filesystem::path(o.model.model_path).stem().string() : o.alias,
      .tokenizer = s.tokenizer.get(),
      .chat_template = template_name.empty() ? std::nullopt
                                             : std::optional(chat_template_from_name(template_name)),
      .add_bos = c.add_bos && c.bos_id >= 0,
      .vocab_size = c.vocab_size,
      .max_sequence_tokens = e.max_sequence_tokens()};
}

int run(int argc, char** argv) {
  auto parsed = demo::options_or_exit_code("llama_server", argc, argv, parse_server_options, server_usage);
  if (const int* exit_code = std::get_if<int>(&parsed)) return *exit_code;
  ServerOptions& o = std::get<ServerOptions>(parsed);
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not end the process
  StopSignals stop_signals;
  // The cache has room for --parallel sequences of the whole context each.
  const int context = context_of(o.model);
  o.model.context = context;
  const int block = ModelOptions{}.kv_block_size;
  o.model.kv_blocks = o.engine.max_running * ((context + block - 1) / block);
  demo::Session session = demo::open_session(o.model);
  demo::report_loaded(o.model, session);
  engine::Engine engine(*session.model, *session.tokenizer, o.engine);
  HttpServer server(engine, o.engine, served_model(o, session, engine), o.http);
  const int port = server.bind();
  std::fprintf(stderr, "llama_server: listening on http://%s:%d (context %d tokens, %d in parallel)\n",
               o.http.host.c_str(), port, engine.max_sequence_tokens(), o.engine.max_running);

  std::thread on_signal([&] {
    const int signal = stop_signals.wait();
    if (signal == 0) return;  // serve() ended by itself
    std::fprintf(stderr, "llama_server: %s: finishing the requests in flight\n",
                 signal == SIGINT ? "SIGINT" : "SIGTERM");
    server.shutdown();
  });
  server.serve();
  stop_signals.wake();
  on_signal.join();
  std::fprintf(stderr, "llama_server: stopped\n");
  return 0;
}

}  // namespace
}  // namespace kuiper::server

int main(int argc, char** argv) {
  return kuiper::demo::guarded_main("llama_server", argc, argv, kuiper::server::run);
}
