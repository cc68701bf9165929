#pragma once
// Hands a request's updates from the engine thread to the HTTP thread that answers it.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>

#include "kuiper/engine/engine.h"

namespace kuiper::server {

class PendingReply {
 public:
  // What arrived since the last take().
  struct News {
    std::string text;
    bool finished = false;
    engine::FinishReason reason = engine::FinishReason::kStop;
    std::string error;
    int prompt_tokens = 0;
    int completion_tokens = 0;
  };

  // The engine thread's callback: never blocks for long.
  void push(const engine::Update& u) {
    {
      std::lock_guard lock(mutex_);
      news_.text += u.text;
      news_.finished = u.finished;
      news_.reason = u.reason;
      news_.error = u.error;
      news_.prompt_tokens = u.prompt_tokens;
      news_.completion_tokens = u.completion_tokens;
      fresh_ = true;
    }
    arrived_.notify_one();
  }

  // Waits up to `timeout` for news; nullopt when none came.
  std::optional<News> take(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    if (!arrived_.wait_for(lock, timeout, [&] { return fresh_; })) return std::nullopt;
    fresh_ = false;
    News out = news_;
    news_.text.clear();
    return out;
  }

 private:
  std::mutex mutex_;
  std::condition_variable arrived_;
  News news_;
  bool fresh_ = false;
};

}  // namespace kuiper::server
