#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "kuiper/base/device.h"

namespace kuiper {

// The threads of a tensor-parallel group in one process: rank 0 runs on the calling thread,
// ranks 1 .. size-1 on threads of their own that live as long as this object (on CUDA each is
// bound to GPU `rank` before it runs anything, so all of a rank's memory, streams and kernels
// sit on its GPU). With one rank there are no threads and run() is a plain call.
class RankThreads {
 public:
  RankThreads(int size, Device device);
  ~RankThreads();
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;

  int size() const { return int(workers_.size()) + 1; }
  // Runs work(rank) on every rank at once and returns when all have returned. A rank that throws
  // calls on_failure() at once, on its thread (it must unblock ranks waiting for it in a
  // collective), and run() rethrows the lowest rank's error, preferring a rank's own failure to
  // another's RankFailed.
  void run(const std::function<void(int rank)>& work, const std::function<void()>& on_failure);

 private:
  void serve(int rank, Device device);

  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* work_ = nullptr;  // the current round's
  const std::function<void()>* on_failure_ = nullptr;
  uint64_t round_ = 0;  // incremented for every run(); workers run each round once
  int pending_ = 0;     // workers still running the current round
  bool stopping_ = false;
  std::vector<std::exception_ptr> errors_;  // per rank, of the current round
  std::vector<std::thread> workers_;
};

}  // namespace kuiper
