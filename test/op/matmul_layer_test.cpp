// MatmulLayer over weights of different storages (llama.cpp's Q4_K_M files keep some layers' v
// projection in Q6_K beside Q4_K q and k): one kernel call per storage, each output exactly what a
// layer of that weight alone computes, norm prologue and residual accumulate included.
#include "kuiper/op/layers.h"

#include "kuiper/base/device_context.h"
#include "test/test_util.h"

namespace kuiper::test {
namespace {

class MatmulLayerOnDevice : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    if (GetParam() == Device::kCUDA && cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

// A copy on d (CPU tensors are copied too, so that outputs never share memory).
Tensor on(Device d, const Tensor& t, const DeviceContext& ctx) { return t.empty() ? t : t.to(d, &ctx); }
Weight on(Device d, const Weight& w, const DeviceContext& ctx) {
  return {on(d, w.values, ctx), on(d, w.scales, ctx)};
}

TEST_P(MatmulLayerOnDevice, MixedStoragesGiveEachWeightsOwnResult) {
  const Device d = GetParam();
  DeviceContext ctx(d);
  std::mt19937 rng(7);
  constexpr int64_t kIn = 256, kRows = 5;
  // q4_k, q8_0, q4_k again, fp32: three storages, the first one's call taking two outputs.
  std::vector<Weight> weights;
  for (auto [dtype, rows] : {std::pair{DType::kQ4_K, 7}, {DType::kQ8_0, 3}, {DType::kQ4_K, 4}, {DType::kF32, 6}})
    weights.push_back(on(d, random_weight(dtype, rows, kIn, rng), ctx));
  Tensor x(DType::kF32, {kRows, kIn}), norm(DType::kF32, {kIn});
  fill_uniform(x, rng);
  fill_uniform(norm, rng, 0.5f, 1.5f);
  const ProjectionOptions options{on(d, norm, ctx), 1e-5f, true};
  const Tensor x_on_d = on(d, x, ctx);
  // The outputs start from random values, as a residual stream would.
  std::vector<Tensor> starts, together;
  for (const Weight& w : weights) {
    starts.emplace_back(DType::kF32, Shape{kRows, w.rows()});
    fill_uniform(starts.back(), rng);
    together.push_back(on(d, starts.back(), ctx));
  }
  MatmulLayer("mixed", weights, {}, options).forward({x_on_d}, std::span<const Tensor>(together), ctx);
  for (size_t i = 0; i < weights.size(); ++i) {
    const Tensor alone = on(d, starts[i], ctx);
    MatmulLayer("one", {weights[i]}, {}, options).forward({x_on_d}, {alone}, ctx);
    const Tensor got = on(Device::kCPU, together[i], ctx), want = on(Device::kCPU, alone, ctx);
    ctx.synchronize();
    EXPECT_EQ(max_rel_diff(got, want), 0.f) << weights[i].describe();
  }
}

TEST(MatmulLayer, WeightsOfDifferentInputSizesAreRefused) {
  std::mt19937 rng(1);
  EXPECT_THROW(MatmulLayer("qkv", {random_weight(DType::kF32, 4, 64, rng), random_weight(DType::kF32, 4, 32, rng)}),
               Error);
}

INSTANTIATE_TEST_SUITE_P(Devices, MatmulLayerOnDevice, ::testing::Values(Device::kCPU, Device::kCUDA),
                         [](const auto& info) { return std::string(device_name(info.param)); });

}  // namespace
}  // namespace kuiper::test
