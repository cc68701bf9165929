#include "kuiper/parallel/rank_threads.h"

#include <algorithm>

#include "kuiper/base/error.h"
#include "kuiper/parallel/communicator.h"

namespace kuiper {

RankThreads::RankThreads(int size, Device device) : errors_(size_t(std::max(size, 1))) {
  KUIPER_CHECK(size >= 1, "tensor parallelism needs at least one rank, got ", size);
  for (int r = 1; r < size; ++r) workers_.emplace_back([this, r, device] { serve(r, device); });
}

RankThreads::~RankThreads() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void RankThreads::serve(int rank, Device device) {
  std::exception_ptr bind_error;
  try {
    if (device == Device::kCUDA) bind_thread_to_cuda_device(rank);
  } catch (...) {
    bind_error = std::current_exception();
  }
  uint64_t seen = 0;
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || round_ != seen; });
    if (stopping_) return;
    seen = round_;
    const auto& work = *work_;
    const auto& on_failure = *on_failure_;
    lock.unlock();
    std::exception_ptr error = bind_error;
    if (!error) {
      try {
        work(rank);
      } catch (...) {
        error = std::current_exception();
      }
    }
    // At once, from the failing rank itself: the others may be waiting for it in a collective.
    if (error) on_failure();
    lock.lock();
    errors_[size_t(rank)] = error;
    if (--pending_ == 0) done_.notify_all();
  }
}

void RankThreads::run(const std::function<void(int)>& work,
                      const std::function<void()>& on_failure) {
  if (workers_.empty()) {
    work(0);
    return;
  }
  {
    std::lock_guard lock(mu_);
    work_ = &work;
    on_failure_ = &on_failure;
    pending_ = int(workers_.size());
    std::fill(errors_.begin(), errors_.end(), nullptr);
    ++round_;
  }
  wake_.notify_all();
  std::exception_ptr mine;
  try {
    work(0);
  } catch (...) {
    mine = std::current_exception();
    on_failure();
  }
  std::unique_lock lock(mu_);
  errors_[0] = mine;
  done_.wait(lock, [&] { return pending_ == 0; });
  std::exception_ptr first_own, first_any;
  for (const std::exception_ptr& e : errors_) {
    if (!e) continue;
    if (!first_any) first_any = e;
    try {
      std::rethrow_exception(e);
    } catch (const RankFailed&) {
    } catch (...) {
      if (!first_own) first_own = e;
    }
  }
  if (first_own) std::rethrow_exception(first_own);
  if (first_any) std::rethrow_exception(first_any);
}

}  // namespace kuiper
