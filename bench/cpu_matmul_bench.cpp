// The CPU decode projections alone: the registered matmul and gated_matmul on TinyLlama-1.1B's
// shapes (q/k/v as one three-output call, wo, gated w1/w3, w2; dim 2048, hidden 5632, 4 KV heads
// of 64) at 1 to 8 positions, as a decoding step of that many sequences calls them, over copies
// of the weights that together are larger than the last-level cache. Prints per position count
// the milliseconds of one layer's projections (fastest and median of the repeats), the
// multiply-adds per second and the weights' GB/s.
// Usage: cpu_matmul_bench [--dtype fp16|fp32|bf16] [-t THREADS] [--positions 1,2,8] [--repeat N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/vec.h"
#include "kuiper/base/error.h"

namespace kuiper {
namespace {

struct Layer {
  Weight wq, wk, wv, wo, w1, w3, w2;
};

Tensor random_tensor(DType dtype, const Shape& shape, std::mt19937& rng) {
  const Tensor t(dtype, shape);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  kernels::cpu::with_float_type(dtype, [&]<class T>(T) {
    for (T& v : t.span<T>()) v = kernels::cpu::from_float<T>(u(rng));
  });
  return t;
}

int run(int argc, char** argv) {
  DType dtype = DType::kF16;
  int threads = 0, repeat = 20;
  std::vector<int64_t> positions{1, 2, 4, 8};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      KUIPER_CHECK(i + 1 < argc, a, " needs a value");
      return argv[++i];
    };
    if (a == "--dtype") {
      const auto t = dtype_from_name(value());
      KUIPER_CHECK(t.has_value(), "--dtype takes fp16, fp32 or bf16");
      dtype = *t;
    } else if (a == "-t") threads = std::stoi(value());
    else if (a == "--repeat") repeat = std::stoi(value());
    else if (a == "--positions") {
      positions.clear();
      std::stringstream s(value());
      for (std::string p; std::getline(s, p, ',');) positions.push_back(std::stoll(p));
    } else fail("unknown argument '", a, "'");
  }
  if (threads > 0) kernels::cpu::set_threads(threads);
  constexpr int64_t kDim = 2048, kHidden = 5632, kKv = 256;
  std::mt19937 rng(1);
  // 88 MB (fp16) a layer: more than a 32 MB L3 even before the next layer.
  std::vector<Layer> layers(4);
  for (Layer& l : layers)
    l = {random_tensor(dtype, {kDim, kDim}, rng), random_tensor(dtype, {kKv, kDim}, rng),
         random_tensor(dtype, {kKv, kDim}, rng), random_tensor(dtype, {kDim, kDim}, rng),
         random_tensor(dtype, {kHidden, kDim}, rng), random_tensor(dtype, {kHidden, kDim}, rng),
         random_tensor(dtype, {kDim, kHidden}, rng)};
  const double weights = double(layers[0].wq.bytes() + layers[0].wk.bytes() + layers[0].wv.bytes() +
                                layers[0].wo.bytes() + layers[0].w1.bytes() + layers[0].w3.bytes() +
                                layers[0].w2.bytes());
  const double macs = double(kDim) * (kDim + 2 * kKv + kDim + 3 * kHidden);
  const auto& reg = kernels::registry();
  const DeviceContext& cpu = DeviceContext::cpu();
  std::printf("%s, %d threads: one layer's projections (%.1f MB of weights)\n",
              std::string(dtype_name(dtype)).c_str(), kernels::cpu::threads(), weights / 1e6);
  std::printf("%9s %10s %10s %12s %10s\n", "positions", "min ms", "median ms", "GMAC/s (min)", "GB/s");
  for (const int64_t n : positions) {
    const Tensor x = random_tensor(DType::kF32, {n, kDim}, rng), h = random_tensor(DType::kF32, {n, kHidden}, rng);
    const Tensor q(DType::kF32, {n, kDim}), k(DType::kF32, {n, kKv}), v(DType::kF32, {n, kKv});
    const Tensor y(DType::kF32, {n, kDim}), g(DType::kF32, {n, kHidden});
    std::vector<double> times;
    for (int r = 0; r < repeat + 1; ++r) {
      const Layer& l = layers[size_t(r) % layers.size()];
      const auto start = std::chrono::steady_clock::now();
      const kernels::MatmulOutput qkv[] = {{l.wq, {}, q}, {l.wk, {}, k}, {l.wv, {}, v}};
      reg.matmul.find(Device::kCPU, dtype)(kernels::MatmulInput{x, {}, 0.f}, std::span(qkv), false, cpu);
      const kernels::MatmulOutput o[] = {{l.wo, {}, y}};
      reg.matmul.find(Device::kCPU, dtype)(kernels::MatmulInput{q, {}, 0.f}, std::span(o), true, cpu);
      reg.gated_matmul.find(Device::kCPU, dtype)(kernels::MatmulInput{x, {}, 0.f}, l.w1, l.w3, g, Tensor(), cpu);
      const kernels::MatmulOutput down[] = {{l.w2, {}, y}};
      reg.matmul.find(Device::kCPU, dtype)(kernels::MatmulInput{h, {}, 0.f}, std::span(down), true, cpu);
      if (r > 0) times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(times.begin(), times.end());
    const double best = times.front(), median = times[times.size() / 2];
    std::printf("%9lld %10.3f %10.3f %12.1f %10.1f\n", static_cast<long long>(n), best * 1e3, median * 1e3,
                macs * double(n) / best / 1e9, weights / best / 1e9);
  }
  return 0;
}

}  // namespace
}  // namespace kuiper

int main(int argc, char** argv) {
  try {
    return kuiper::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cpu_matmul_bench: error: %s\n", e.what());
    return 1;
  }
}
