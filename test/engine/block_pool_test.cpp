#include "kuiper/engine/block_pool.h"

#include <gtest/gtest.h>

#include "kuiper/base/error.h"

namespace kuiper::engine {
namespace {

TEST(BlockPool, HandsOutTheLowestFreeBlocksAndTakesThemBack) {
  BlockPool pool(4);
  std::vector<int32_t> a, b;
  ASSERT_TRUE(pool.allocate(2, a));
  ASSERT_TRUE(pool.allocate(1, b));
  EXPECT_EQ(a, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(b, (std::vector<int32_t>{2}));
  EXPECT_EQ(pool.used(), 3);
  EXPECT_FALSE(pool.allocate(2, b));  // all or nothing
  EXPECT_EQ(b.size(), 1u);
  pool.release(a);
  EXPECT_TRUE(a.empty());
  ASSERT_TRUE(pool.allocate(3, b));
  EXPECT_EQ(b, (std::vector<int32_t>{2, 0, 1, 3}));
  EXPECT_EQ(pool.free(), 0);
}

TEST(BlockPool, ReleasingABlockTwiceIsAnError) {
  BlockPool pool(2);
  std::vector<int32_t> a;
  ASSERT_TRUE(pool.allocate(1, a));
  std::vector<int32_t> twice = {a[0], a[0]};
  EXPECT_THROW(pool.release(twice), Error);
}

}  // namespace
}  // namespace kuiper::engine
