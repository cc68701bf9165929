// CPU ranks as threads: the collectives' results on every rank, and a failing rank unblocking
// the others.
#include <gtest/gtest.h>

#include <atomic>
#include <numeric>

#include "kuiper/parallel/communicator.h"
#include "kuiper/parallel/rank_threads.h"

namespace kuiper {
namespace {

void run_ranks(int size, const std::function<void(Communicator&)>& work) {
  auto comms = make_thread_communicators(size);
  RankThreads threads(size, Device::kCPU);
  threads.run([&](int r) { work(*comms[size_t(r)]); }, [&] { comms[0]->abort(); });
}

TEST(ThreadCommunicator, AllReduceSumGivesEveryRankTheSameSum) {
  for (const int size : {1, 2, 3, 4}) {
    std::vector<std::vector<float>> results(static_cast<size_t>(size));
    run_ranks(size, [&](Communicator& c) {
      EXPECT_EQ(c.size(), size);
      Tensor t(DType::kF32, {3, 5});
      auto v = t.span<float>();
      for (size_t i = 0; i < v.size(); ++i) v[i] = float(i) + 100.f * float(c.rank());
      c.all_reduce_sum(t, DeviceContext::cpu());
      results[size_t(c.rank())].assign(v.begin(), v.end());
    });
    for (size_t i = 0; i < 15; ++i) {
      // sum over ranks r of (i + 100 r)
      const float expected = float(size) * float(i) + 100.f * float(size * (size - 1) / 2);
      for (int r = 0; r < size; ++r)
        EXPECT_EQ(results[size_t(r)][i], expected) << "size " << size << " rank " << r << " at " << i;
    }
  }
}

TEST(ThreadCommunicator, AllGatherColumnsPutsTheShardsSideBySide) {
  const int size = 3, rows = 2, cols = 4;
  std::vector<std::vector<float>> results(size);
  run_ranks(size, [&](Communicator& c) {
    Tensor shard(DType::kF32, {rows, cols}), out(DType::kF32, {rows, size * cols});
    auto v = shard.span<float>();
    for (int i = 0; i < rows * cols; ++i) v[size_t(i)] = float(c.rank() * 100 + i);
    c.all_gather_columns(shard, out, DeviceContext::cpu());
    results[size_t(c.rank())].assign(out.span<float>().begin(), out.span<float>().end());
  });
  for (int r = 0; r < size; ++r)
    for (int row = 0; row < rows; ++row)
      for (int k = 0; k < size * cols; ++k)
        EXPECT_EQ(results[size_t(r)][size_t(row * size * cols + k)],
                  float((k / cols) * 100 + row * cols + k % cols))
            << "rank " << r << " row " << row << " column " << k;
}

TEST(ThreadCommunicator, ARankThatFailsUnblocksTheOthersAndItsErrorIsRethrown) {
  std::atomic<int> unblocked = 0;
  try {
    run_ranks(4, [&](Communicator& c) {
      Tensor t(DType::kF32, {1});
      if (c.rank() == 2) fail("rank 2 could not go on");
      try {
        c.all_reduce_sum(t, DeviceContext::cpu());
      } catch (const RankFailed&) {
        ++unblocked;
        throw;
      }
    });
    FAIL() << "no error";
  } catch (const RankFailed& e) {
    FAIL() << "rethrew another rank's RankFailed: " << e.what();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "rank 2 could not go on");
  }
  EXPECT_EQ(unblocked, 3);
}

TEST(ThreadCommunicator, OneRankIsANoOp) {
  auto comms = make_communicators(Device::kCPU, 1);
  ASSERT_EQ(comms.size(), 1u);
  Tensor t(DType::kF32, {2});
  t.span<float>()[0] = 1.5f;
  comms[0]->all_reduce_sum(t, DeviceContext::cpu());
  EXPECT_EQ(t.span<float>()[0], 1.5f);
  comms[0]->all_gather_columns(t.reshape({1, 2}), t.reshape({1, 2}), DeviceContext::cpu());
  EXPECT_EQ(t.span<float>()[0], 1.5f);
}

}  // namespace
}  // namespace kuiper
