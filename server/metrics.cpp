#include "server/metrics.h"

#include "kuiper/base/error.h"

namespace kuiper::server {
namespace {

void metric(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            auto value) {
  out += str_cat("# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n", name, " ", value, "\n");
}

}  // namespace

void Metrics::count_response(int status) {
  std::lock_guard lock(mutex_);
  ++responses_[status];
}

std::string Metrics::prometheus(const engine::EngineStats& e) const {
  std::string out =
      "# HELP kuiper_http_responses_total HTTP responses sent, by status code.\n"
      "# TYPE kuiper_http_responses_total counter\n";
  {
    std::lock_guard lock(mutex_);
    for (const auto& [status, n] : responses_)
      out += str_cat("kuiper_http_responses_total{status=\"", status, "\"} ", n, "\n");
  }
  metric(out, "kuiper_http_requests_active", "gauge", "HTTP requests being answered.", active_.load());
  metric(out, "kuiper_client_disconnects_total", "counter",
         "Streams whose client went away before the end; their requests were cancelled.",
         disconnects_.load());
  metric(out, "kuiper_prompt_tokens_total", "counter", "Prompt tokens taken in by the engine.",
         e.prompt_tokens);
  metric(out, "kuiper_generated_tokens_total", "counter", "Tokens generated.", e.generated_tokens);
  metric(out, "kuiper_sequences_running", "gauge", "Sequences being decoded.", e.running);
  metric(out, "kuiper_sequences_waiting", "gauge", "Requests queued for the engine.", e.waiting);
  metric(out, "kuiper_kv_blocks_used", "gauge", "KV cache blocks in use.", e.kv_blocks_used);
  metric(out, "kuiper_kv_blocks_total", "gauge", "KV cache blocks in the pool.", e.kv_blocks_total);
  metric(out, "kuiper_preemptions_total", "counter",
         "Sequences whose cache was dropped to make room (recomputed later).", e.preemptions);
  return out;
}

}  // namespace kuiper::server
