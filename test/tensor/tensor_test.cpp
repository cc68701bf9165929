#include "kuiper/tensor/tensor.h"

#include "test/test_util.h"

namespace kuiper::test {
namespace {

TEST(Tensor, AllocatesShapeAndStrides) {
  Tensor t(DType::kF16, {2, 3, 4});
  EXPECT_EQ(t.ndim(), 3);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.bytes(), 48u);
  EXPECT_EQ(t.stride(0), 12);
  EXPECT_EQ(t.stride(1), 4);
  EXPECT_EQ(t.stride(-1), 1);
  EXPECT_EQ(t.dim(-1), 4);
  EXPECT_EQ(t.device(), Device::kCPU);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u) << "CPU memory is 64-byte aligned";
  EXPECT_EQ(t.describe(), "fp16[2, 3, 4] on cpu");
}

TEST(Tensor, CopiesShareMemory) {
  Tensor a(DType::kF32, {4});
  Tensor b = a;
  b.span<float>()[2] = 5.f;
  EXPECT_EQ(a.span<float>()[2], 5.f);
}

TEST(Tensor, RowsAndReshapeAreViews) {
  Tensor t(DType::kI32, {4, 3});
  for (int i = 0; i < 12; ++i) t.span<int32_t>()[i] = i;
  const Tensor mid = t.rows(1, 3);
  EXPECT_EQ(mid.shape(), (Shape{2, 3}));
  EXPECT_EQ(mid.span<int32_t>()[0], 3);
  const Tensor flat = mid.reshape({6});
  EXPECT_EQ(flat.span<int32_t>()[5], 8);
  EXPECT_THROW(t.rows(3, 5), Error);
  EXPECT_THROW(t.reshape({5}), Error);
}

TEST(Tensor, TypedAccessChecksTheDtype) {
  Tensor t(DType::kF32, {2});
  EXPECT_THROW(t.data<int32_t>(), Error);
  EXPECT_NO_THROW(t.data<float>());
}

TEST(Tensor, ViewsOfABufferAreBoundsChecked) {
  auto buffer = Buffer::allocate(64, Device::kCPU);
  EXPECT_NO_THROW(Tensor::view(buffer, 32, DType::kF32, {8}));
  EXPECT_THROW(Tensor::view(buffer, 36, DType::kF32, {8}), Error);
}

TEST(Tensor, CopyFromAndToDevice) {
  Tensor a(DType::kF32, {3});
  for (int i = 0; i < 3; ++i) a.span<float>()[i] = float(i) + 0.5f;
  const Tensor b = a.to(Device::kCPU);
  EXPECT_NE(a.raw_data(), b.raw_data());
  EXPECT_EQ(b.span<float>()[2], 2.5f);
  EXPECT_THROW(Tensor(DType::kF32, {4}).copy_from(a), Error);
}

TEST(Shape, RejectsTooManyOrNegativeDims) {
  EXPECT_THROW(Shape({1, 2, 3, 4, 5}), Error);
  EXPECT_THROW(Shape({-1}), Error);
  EXPECT_EQ(Shape({}).numel(), 1);
}

}  // namespace
}  // namespace kuiper::test
