// kuiper/base/cuda/allocator.cpp: pooling, best fit, the large-block waste rule, release under
// pressure, the out-of-memory retry and error, statistics, and concurrent use.
//
// Each test runs on an allocator of its own (make_cuda_caching_allocator), so the counters start
// at zero whatever other tests left in the process's allocator.
#include "kuiper/base/cuda/allocator.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

constexpr size_t kKiB = 1024, kMiB = 1024 * 1024;

class CudaAllocatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device: CUDA test skipped";
    allocator_ = make_cuda_caching_allocator();
  }
  CudaAllocator& a() { return *allocator_; }
  size_t new_driver_allocs() { return a().stats().driver_allocs; }
  size_t new_driver_frees() { return a().stats().driver_frees; }

  std::unique_ptr<CudaAllocator> allocator_;
};

TEST_F(CudaAllocatorTest, FreedBlocksAreReusedWithoutTheDriver) {
  void* large = a().allocate(3 * kMiB);
  void* small = a().allocate(1000);
  EXPECT_EQ(new_driver_allocs(), 2u);
  a().deallocate(large, 3 * kMiB);
  a().deallocate(small, 1000);
  EXPECT_EQ(a().allocate(3 * kMiB), large);
  EXPECT_EQ(a().allocate(1000), small);
  EXPECT_EQ(new_driver_allocs(), 2u);
  a().deallocate(large, 3 * kMiB);
  a().deallocate(small, 1000);
  EXPECT_EQ(a().allocate(0), nullptr);
}

TEST_F(CudaAllocatorTest, SmallBlocksAreCarvedFromOneSegment) {
  std::vector<char*> blocks;
  for (int i = 0; i < 4; ++i) blocks.push_back(static_cast<char*>(a().allocate(256 * kKiB)));
  EXPECT_EQ(new_driver_allocs(), 1u);  // one 2 MiB segment holds all four
  const auto [lo, hi] = std::minmax_element(blocks.begin(), blocks.end());
  EXPECT_EQ(size_t(*hi - *lo), 3 * 256 * kKiB);
  for (char* p : blocks) EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 512, 0u);
  for (char* p : blocks) a().deallocate(p, 256 * kKiB);
  // All freed: the segment is whole again and goes back to the driver.
  a().release_cached();
  EXPECT_EQ(new_driver_frees(), 1u);
}

TEST_F(CudaAllocatorTest, SmallRequestsTakeTheBestFit) {
  // Idle blocks of 100, 300 and 200 KiB, kept apart by live separators.
  void* b100 = a().allocate(100 * kKiB);
  void* s1 = a().allocate(512);
  void* b300 = a().allocate(300 * kKiB);
  void* s2 = a().allocate(512);
  void* b200 = a().allocate(200 * kKiB);
  void* s3 = a().allocate(512);
  a().deallocate(b100, 100 * kKiB);
  a().deallocate(b300, 300 * kKiB);
  a().deallocate(b200, 200 * kKiB);
  void* p150 = a().allocate(150 * kKiB);
  EXPECT_EQ(p150, b200);
  void* p250 = a().allocate(250 * kKiB);
  EXPECT_EQ(p250, b300);
  void* p90 = a().allocate(90 * kKiB);
  EXPECT_EQ(p90, b100);
  EXPECT_EQ(new_driver_allocs(), 1u);
  for (void* p : {s1, s2, s3}) a().deallocate(p, 512);
  a().deallocate(p150, 150 * kKiB);
  a().deallocate(p250, 250 * kKiB);
  a().deallocate(p90, 90 * kKiB);
}

TEST_F(CudaAllocatorTest, LargeRequestsTakeTheBestFitThatWastesUnderOneMiB) {
  void* b3 = a().allocate(3 * kMiB);
  void* b5 = a().allocate(5 * kMiB);
  void* b4 = a().allocate(4 * kMiB);
  a().deallocate(b3, 3 * kMiB);
  a().deallocate(b5, 5 * kMiB);
  a().deallocate(b4, 4 * kMiB);
  EXPECT_EQ(new_driver_allocs(), 3u);
  void* p = a().allocate(3900 * kKiB);  // 4 MiB wastes 0.1 MiB, 5 MiB would waste 1.1
  EXPECT_EQ(p, b4);
  void* q = a().allocate(2560 * kKiB);  // 3 MiB wastes 0.5 MiB
  EXPECT_EQ(q, b3);
  EXPECT_EQ(new_driver_allocs(), 3u);
  void* r = a().allocate(3584 * kKiB);  // only 5 MiB is left: 1.5 MiB of waste, so a new block
  EXPECT_NE(r, b5);
  EXPECT_EQ(new_driver_allocs(), 4u);
  EXPECT_EQ(a().stats().bytes_cached, 5 * kMiB);
  a().deallocate(p, 3900 * kKiB);
  a().deallocate(q, 2560 * kKiB);
  a().deallocate(r, 3584 * kKiB);
}

TEST_F(CudaAllocatorTest, SmallPoolOverOneGiBIdleIsReleasedBeforeGrowing) {
  std::vector<void*> blocks;
  for (int i = 0; i < 1100; ++i) blocks.push_back(a().allocate(kMiB));  // two per segment
  EXPECT_EQ(new_driver_allocs(), 550u);
  EXPECT_EQ(a().stats().bytes_in_use, 1100 * kMiB);
  for (void* p : blocks) a().deallocate(p, kMiB);
  EXPECT_GT(a().stats().small_bytes_cached, size_t(1) << 30);
  EXPECT_EQ(new_driver_frees(), 0u);
  // The next request that needs the driver first returns the idle small segments.
  void* large = a().allocate(4 * kMiB);
  EXPECT_EQ(new_driver_frees(), 550u);
  EXPECT_LT(a().stats().small_bytes_cached, size_t(1) << 30);
  a().deallocate(large, 4 * kMiB);
}

TEST_F(CudaAllocatorTest, FailedDriverAllocationReleasesTheCacheAndRetriesOnce) {
  a().set_reserved_limit(64 * kMiB);
  void* p40 = a().allocate(40 * kMiB);
  a().deallocate(p40, 40 * kMiB);  // cached: 40 + 50 would pass the limit
  void* p50 = a().allocate(50 * kMiB);
  EXPECT_EQ(a().stats().retries, 1u);
  EXPECT_EQ(new_driver_frees(), 1u);
  // Nothing idle left to release: the second failure is the error, naming the request.
  try {
    a().allocate(30 * kMiB);
    ADD_FAILURE() << "allocating past the limit did not throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("CUDA out of memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("31457280 bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("allocator limit"), std::string::npos) << msg;
  }
  EXPECT_EQ(a().stats().retries, 2u);
  a().deallocate(p50, 50 * kMiB);
}

TEST_F(CudaAllocatorTest, MoreThanTheCardHasIsAClearError) {
  const size_t terabyte = size_t(1) << 40;
  try {
    a().allocate(terabyte);
    ADD_FAILURE() << "allocating 1 TiB did not throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("CUDA out of memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1099511627776 bytes"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1.00 TiB"), std::string::npos) << msg;
    EXPECT_NE(msg.find("device free"), std::string::npos) << msg;
  }
  // The failure leaves the runtime usable.
  void* p = a().allocate(kMiB);
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  a().deallocate(p, kMiB);
}

TEST_F(CudaAllocatorTest, StatsCountBytesInUseCachedAndPeak) {
  void* small = a().allocate(1000);  // rounded up to 1024
  void* large = a().allocate(3 * kMiB);
  CudaMemoryStats s = a().stats();
  EXPECT_EQ(s.bytes_in_use, 1024 + 3 * kMiB);
  EXPECT_EQ(s.peak_bytes_in_use, 1024 + 3 * kMiB);
  EXPECT_EQ(s.bytes_reserved, 2 * kMiB + 3 * kMiB);  // a small segment and the large block
  a().deallocate(large, 3 * kMiB);
  s = a().stats();
  EXPECT_EQ(s.bytes_in_use, 1024u);
  EXPECT_EQ(s.peak_bytes_in_use, 1024 + 3 * kMiB);
  EXPECT_EQ(s.bytes_cached, 2 * kMiB - 1024 + 3 * kMiB);
  EXPECT_EQ(s.small_bytes_cached, 2 * kMiB - 1024);
  EXPECT_EQ(s.bytes_reserved, s.bytes_in_use + s.bytes_cached);
  a().reset_peak();
  EXPECT_EQ(a().stats().peak_bytes_in_use, 1024u);
  a().deallocate(small, 1000);
  a().release_cached();
  s = a().stats();
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_EQ(s.bytes_cached, 0u);
  EXPECT_EQ(s.bytes_reserved, 0u);
  EXPECT_EQ(s.driver_allocs, s.driver_frees);
}

TEST_F(CudaAllocatorTest, ConcurrentUseKeepsBlocksApartAndCountsRight) {
  constexpr int kThreads = 8, kRounds = 20, kLive = 64;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::vector<std::pair<char*, size_t>>> live(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        std::mt19937 rng(unsigned(round * kThreads + t));
        for (int i = 0; i < kLive; ++i) {
          // Mostly small, some large, some freed again at once.
          const size_t bytes = rng() % 8 == 0 ? kMiB + rng() % (3 * kMiB) : 1 + rng() % (200 * kKiB);
          char* p = static_cast<char*>(a().allocate(bytes));
          if (rng() % 4 == 0) a().deallocate(p, bytes);
          else live[size_t(t)].emplace_back(p, bytes);
        }
      });
    for (auto& th : threads) th.join();
    std::vector<std::pair<char*, size_t>> all;
    for (const auto& l : live) all.insert(all.end(), l.begin(), l.end());
    std::sort(all.begin(), all.end());
    for (size_t i = 1; i < all.size(); ++i)
      ASSERT_LE(all[i - 1].first + all[i - 1].second, all[i].first) << "blocks overlap";
    threads.clear();
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        for (auto [p, bytes] : live[size_t(t)]) a().deallocate(p, bytes);
      });
    for (auto& th : threads) th.join();
  }
  const CudaMemoryStats s = a().stats();
  EXPECT_EQ(s.bytes_in_use, 0u);
  EXPECT_EQ(s.bytes_reserved, s.bytes_cached);
}

}  // namespace
}  // namespace kuiper::test
