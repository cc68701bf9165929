#include "kuiper/base/buffer.h"

#include "kuiper/base/allocator.h"
#include "test/test_util.h"

namespace kuiper::test {
namespace {

TEST(Buffer, OwnsAllocatedMemory) {
  const auto b = Buffer::allocate(100, Device::kCPU);
  EXPECT_TRUE(b->owns_memory());
  EXPECT_EQ(b->bytes(), 100u);
  EXPECT_NE(b->data(), nullptr);
}

TEST(Buffer, ViewKeepsItsOwnerAlive) {
  auto owner = std::make_shared<std::vector<int>>(10, 7);
  std::weak_ptr<std::vector<int>> watch = owner;
  auto view = Buffer::view(owner->data(), 40, Device::kCPU, owner);
  owner.reset();
  EXPECT_FALSE(watch.expired());
  EXPECT_FALSE(view->owns_memory());
  EXPECT_EQ(static_cast<int*>(view->data())[3], 7);
  view.reset();
  EXPECT_TRUE(watch.expired());
}

TEST(Allocator, CpuMemoryIsAlignedAndCopiesWork) {
  Allocator& a = allocator_for(Device::kCPU);
  EXPECT_EQ(a.device(), Device::kCPU);
  void* p = a.allocate(3);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  const char src[3] = {1, 2, 3};
  copy_bytes(p, Device::kCPU, src, Device::kCPU, 3);
  EXPECT_EQ(static_cast<char*>(p)[2], 3);
  a.deallocate(p, 3);
}

TEST(Allocator, CudaWithoutCudaIsAClearError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present";
  try {
    Buffer::allocate(16, Device::kCUDA);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kuiper::test
