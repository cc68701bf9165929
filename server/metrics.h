#pragma once
// The server's counters, and /metrics: them and the engine's statistics in Prometheus' text
// format.
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "kuiper/engine/engine.h"

namespace kuiper::server {

class Metrics {
 public:
  // Thread-safe.
  void count_response(int status);
  void count_disconnect() { disconnects_.fetch_add(1); }
  // Requests being answered now (a stream counts until its last event).
  void request_started() { active_.fetch_add(1); }
  void request_ended() { active_.fetch_sub(1); }
  int active() const { return active_.load(); }

  std::string prometheus(const engine::EngineStats& engine) const;

 private:
  mutable std::mutex mutex_;
  std::map<int, int64_t> responses_;  // by status
  std::atomic<int64_t> disconnects_{0};
  std::atomic<int> active_{0};
};

}  // namespace kuiper::server
