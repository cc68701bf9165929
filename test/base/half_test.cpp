#include "kuiper/base/half.h"

#include <cmath>

#include "test/test_util.h"

namespace kuiper::test {
namespace {

TEST(Half, Fp16RoundTripsAndRounds) {
  for (float v : {0.f, 1.f, -2.5f, 65504.f, 6.1035156e-05f, 5.9604645e-08f, -0.f})
    EXPECT_EQ(to_float(to_f16(v)), v) << v;
  EXPECT_EQ(to_f16(1.f).bits, 0x3c00);
  EXPECT_EQ(to_f16(1.0004883f).bits, 0x3c00) << "ties round to even";
  EXPECT_TRUE(std::isinf(to_float(to_f16(1e6f))));
  EXPECT_TRUE(std::isnan(to_float(to_f16(NAN))));
}

TEST(Half, Bf16RoundTripsAndRounds) {
  for (float v : {0.f, 1.f, -3.f, 1e30f, -1e-30f}) EXPECT_NEAR(to_float(to_bf16(v)), v, std::fabs(v) / 128) << v;
  EXPECT_EQ(to_bf16(1.f).bits, 0x3f80);
  EXPECT_EQ(to_bf16(1.00390625f).bits, 0x3f80) << "ties round to even";
  EXPECT_TRUE(std::isnan(to_float(to_bf16(NAN))));
}

}  // namespace
}  // namespace kuiper::test
