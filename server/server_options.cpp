#include "server/server_options.h"

#include <tuple>

#include "demo/command_line.h"

namespace kuiper::server {

std::string server_usage(const std::string& program) {
  return "usage: " + program + R"( MODEL TOKENIZER [options]

Serves a model converted by tools/export.py through an OpenAI-compatible HTTP API:
POST /v1/chat/completions, POST /v1/completions (both with "stream": true), GET /v1/models,
GET /health, GET /metrics. Concurrent requests are decoded together by the batching engine.

      --host ADDR       address to listen on (default 127.0.0.1, this machine only)
      --port N          port (default 8080; 0: any free port, printed on stderr)
      --api-key KEY     require "Authorization: Bearer KEY" (all but /health)
      --device D        cpu or cuda (default cpu)
  -c, --ctx-size N      tokens one request may hold, prompt and reply (default: the model's,
                        at most 4096)
      --parallel N      requests decoded together (default 64)
      --queue N         requests waiting beyond those before new ones get 503 (default 64)
  -b, --batch-size N    tokens one engine step takes, the running requests' next tokens and
                        prompt chunks (default 512; at least --parallel)
      --kv-type T       KV cache type: fp32 (default), fp16 or bf16
  -t, --threads N       CPU threads (default: all cores)
  -tp, --tensor-parallel N
                        split the model over N ranks (default 1): N GPUs with --device cuda
                        (NCCL), N threads on the CPU (for testing the split, not for speed)
      --max-body BYTES  largest request body; larger ones get 413 (default 4194304)
      --http-threads N  connections served at once (default: parallel + queue + 16)
      --template NAME   chat template: llama2, zephyr, llama3, chatml (default: from the model)
      --alias NAME      the model's name in /v1/models and replies (default: the file's name)
      --no-mmap         read the weights into memory instead of mapping the file
      --quiet           no log line per request
  -h, --help            this help
)";
}

ServerOptions parse_server_options(std::span<char* const> args) {
  ServerOptions o;
  bool quiet = false;
  demo::OptionTable table;
  table.flags = {{"-h", &o.help}, {"--help", &o.help}, {"--no-mmap", &o.model.no_mmap},
                 {"--quiet", &quiet}};
  auto& m = table.valued;
  const auto number = [](std::string_view opt, std::string_view v) {
    return demo::parse_number<int>(opt, v);
  };
  m["--host"] = [&](auto, auto v) { o.http.host = v; };
  m["--port"] = [&](auto opt, auto v) { o.http.port = number(opt, v); };
  m["--api-key"] = [&](auto, auto v) { o.http.api_key = v; };
  m["--device"] = [&](auto, auto v) { o.model.device = demo::parse_device(v); };
  m["-c"] = m["--ctx-size"] = m["--ctx"] = [&](auto opt, auto v) { o.model.context = number(opt, v); };
  m["--parallel"] = [&](auto opt, auto v) { o.engine.max_running = number(opt, v); };
  m["--queue"] = [&](auto opt, auto v) { o.engine.max_waiting = number(opt, v); };
  m["-b"] = m["--batch-size"] = [&](auto opt, auto v) { o.engine.token_budget = number(opt, v); };
  m["--kv-type"] = [&](auto, auto v) {
    const auto t = dtype_from_name(v);
    KUIPER_CHECK(t, "unknown --kv-type '", v, "'");
    o.kv_type = *t;
  };
  m["-t"] = m["--threads"] = [&](auto opt, auto v) { o.model.threads = number(opt, v); };
  m["-tp"] = m["--tensor-parallel"] = [&](auto opt, auto v) {
    o.model.tensor_parallel = number(opt, v);
  };
  m["--max-body"] = [&](auto opt, auto v) { o.http.max_body = demo::parse_number<size_t>(opt, v); };
  m["--http-threads"] = [&](auto opt, auto v) { o.http.threads = number(opt, v); };
  m["--template"] = [&](auto, auto v) { o.chat_template = v; };
  m["--alias"] = [&](auto, auto v) { o.alias = v; };
  const std::vector<std::string_view> positional = demo::parse_command_line(args, table);
  if (o.help) return o;
  std::tie(o.model.model_path, o.model.tokenizer_path) = demo::model_and_tokenizer(positional);
  o.http.log_requests = !quiet;
  KUIPER_CHECK(o.http.port >= 0 && o.http.port <= 65535, "--port must be in [0, 65535], got ",
               o.http.port);
  KUIPER_CHECK(o.model.context >= 0, "--ctx-size must be >= 0, got ", o.model.context);
  KUIPER_CHECK(o.engine.max_running >= 1, "--parallel must be >= 1, got ", o.engine.max_running);
  KUIPER_CHECK(o.engine.max_waiting >= 0, "--queue must be >= 0, got ", o.engine.max_waiting);
  KUIPER_CHECK(o.engine.token_budget >= 1, "--batch-size must be >= 1, got ",
               o.engine.token_budget);
  KUIPER_CHECK(o.model.threads >= 0, "--threads must be >= 0, got ", o.model.threads);
  KUIPER_CHECK(o.model.tensor_parallel >= 1, "--tensor-parallel must be >= 1, got ",
               o.model.tensor_parallel);
  KUIPER_CHECK(o.http.max_body > 0, "--max-body must be positive");
  KUIPER_CHECK(o.http.threads >= 0, "--http-threads must be >= 0, got ", o.http.threads);
  KUIPER_CHECK(o.kv_type == DType::kF32 || o.kv_type == DType::kF16 || o.kv_type == DType::kBF16,
               "--kv-type must be fp32, fp16 or bf16, not ", dtype_name(o.kv_type));
  o.model.kv_dtype = o.kv_type;
  o.model.max_sequences = o.engine.max_running;
  o.engine.token_budget = std::max(o.engine.token_budget, o.engine.max_running);
  o.model.max_batch = o.engine.token_budget;  // the forward pass holds a whole step
  return o;
}

}  // namespace kuiper::server
