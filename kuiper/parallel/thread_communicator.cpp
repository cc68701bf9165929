// Ranks as threads of one process: each collective publishes every rank's pointer, meets at a
// barrier, works on the shared memory, and meets again so that no rank reuses its buffer (or
// publishes the next one) before every rank has read it.
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "kuiper/parallel/communicator.h"

namespace kuiper {
namespace {

// std::barrier cannot be woken when a rank fails; this one can (abort()).
class AbortableBarrier {
 public:
  explicit AbortableBarrier(int size) : size_(size) {}

  void arrive_and_wait() {
    std::unique_lock lock(mu_);
    if (aborted_) throw RankFailed("another rank of the tensor-parallel group failed");
    const uint64_t generation = generation_;
    if (++waiting_ == size_) {
      waiting_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != generation || aborted_; });
    if (generation_ == generation)
      throw RankFailed("another rank of the tensor-parallel group failed");
  }

  void abort() {
    std::lock_guard lock(mu_);
    aborted_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  const int size_;
  int waiting_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
};

// What the ranks share: the barrier and each rank's published tensor.
struct ThreadGroup {
  explicit ThreadGroup(int size) : barrier(size), published(size_t(size)) {}
  AbortableBarrier barrier;
  std::vector<float*> published;
};

class ThreadCommunicator final : public Communicator {
 public:
  ThreadCommunicator(std::shared_ptr<ThreadGroup> group, int rank)
      : group_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return int(group_->published.size()); }

  // Rank r sums elements [r * n / size, (r + 1) * n / size) over the ranks, in rank order, and
  // writes the sum to every rank's tensor: each element is added once, in the same order on
  // every rank, so all ranks hold bit-identical results.
  void all_reduce_sum(const Tensor& t, const DeviceContext& ctx) override {
    const int64_t n = publish(t, ctx);
    const int ranks = size();
    const int64_t begin = n * rank_ / ranks, end = n * (rank_ + 1) / ranks;
    for (int64_t i = begin; i < end; ++i) {
      float sum = 0.f;
      for (const float* p : group_->published) sum += p[i];
      for (float* p : group_->published) p[i] = sum;
    }
    group_->barrier.arrive_and_wait();
  }

  void all_gather_columns(const Tensor& shard, const Tensor& out,
                          const DeviceContext& ctx) override {
    const int64_t rows = shard.dim(0), cols = shard.dim(1), ranks = size();
    KUIPER_CHECK(out.ndim() == 2 && out.dim(0) == rows && out.dim(1) == ranks * cols &&
                     out.dtype() == DType::kF32,
                 "all_gather_columns: ", out.describe(), " does not hold ", ranks, " shards ",
                 shard.describe());
    publish(shard, ctx);
    float* dst = out.data<float>();
    for (int64_t r = 0; r < ranks; ++r)
      for (int64_t row = 0; row < rows; ++row)
        std::memcpy(dst + row * ranks * cols + r * cols, group_->published[size_t(r)] + row * cols,
                    size_t(cols) * sizeof(float));
    group_->barrier.arrive_and_wait();
  }

  void abort() override { group_->barrier.abort(); }

 private:
  // Publishes t's memory and waits until every rank has published; returns its element count.
  int64_t publish(const Tensor& t, const DeviceContext& ctx) {
    KUIPER_CHECK(t.dtype() == DType::kF32 && t.device() == Device::kCPU && ctx.device() == Device::kCPU,
                 "CPU ranks exchange fp32 tensors on the CPU, got ", t.describe());
    group_->published[size_t(rank_)] = t.data<float>();
    group_->barrier.arrive_and_wait();
    return t.numel();
  }

  std::shared_ptr<ThreadGroup> group_;
  int rank_;
};

class SingleRankCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce_sum(const Tensor&, const DeviceContext&) override {}
  void all_gather_columns(const Tensor& shard, const Tensor& out,
                          const DeviceContext& ctx) override {
    if (shard.raw_data() != out.raw_data()) out.copy_from(shard, &ctx);
  }
};

}  // namespace

std::unique_ptr<Communicator> make_single_rank_communicator() {
  return std::make_unique<SingleRankCommunicator>();
}

std::vector<std::unique_ptr<Communicator>> make_thread_communicators(int size) {
  KUIPER_CHECK(size >= 1, "a group of ranks needs at least one, got ", size);
  auto group = std::make_shared<ThreadGroup>(size);
  std::vector<std::unique_ptr<Communicator>> ranks;
  for (int r = 0; r < size; ++r) ranks.push_back(std::make_unique<ThreadCommunicator>(group, r));
  return ranks;
}

std::vector<std::unique_ptr<Communicator>> make_communicators(Device device, int size) {
  KUIPER_CHECK(size >= 1, "tensor parallelism needs at least one rank, got ", size);
  if (size == 1) {
    std::vector<std::unique_ptr<Communicator>> one;
    one.push_back(make_single_rank_communicator());
    return one;
  }
  return device == Device::kCUDA ? make_nccl_communicators(size) : make_thread_communicators(size);
}

}  // namespace kuiper
