// llama_bench MODEL [options]: prefill and decode speed of a model file, with the weight bytes
// each decoded token reads and the bandwidth that implies. On CUDA it also measures the card's
// device-to-device copy bandwidth in the same run and reports peak GPU memory.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"
#include "kuiper/base/error.h"
#include "kuiper/model/llama_model.h"
#ifdef KUIPER_WITH_CUDA
#include "kuiper/base/cuda/allocator.h"
#endif

namespace kuiper {
namespace {

struct BenchOptions {
  std::string model;
  Device device = Device::kCPU;
  int threads = 0;
  int prompt = 128;
  int decode = 64;
  int repeat = 3;
  bool mmap = true;
};

BenchOptions parse(int argc, char** argv) {
  BenchOptions o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      KUIPER_CHECK(i + 1 < argc, a, " needs a value");
      return argv[++i];
    };
    if (a == "--device") o.device = device_from_name(value()).value_or(Device::kCPU);
    else if (a == "-t" || a == "--threads") o.threads = std::stoi(value());
    else if (a == "--prompt") o.prompt = std::stoi(value());
    else if (a == "--decode") o.decode = std::stoi(value());
    else if (a == "--repeat") o.repeat = std::stoi(value());
    else if (a == "--no-mmap") o.mmap = false;
    else if (!a.starts_with("-") && o.model.empty()) o.model = a;
    else fail("unknown argument '", a, "'");
  }
  KUIPER_CHECK(!o.model.empty(),
               "usage: llama_bench MODEL [--device cpu|cuda] [-t N] [--prompt N] [--decode N] "
               "[--repeat N] [--no-mmap]");
  return o;
}

double seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

#ifdef KUIPER_WITH_CUDA
// Bytes read plus bytes written per second by a large device-to-device copy.
double cuda_copy_bandwidth(const DeviceContext& ctx) {
  constexpr int64_t kBytes = int64_t(1) << 30;
  const Tensor a(DType::kI8, {kBytes}, Device::kCUDA), b(DType::kI8, {kBytes}, Device::kCUDA);
  b.copy_from(a, &ctx);  // warm-up
  ctx.synchronize();
  std::vector<double> times;
  for (int i = 0; i < 10; ++i) {
    const auto start = std::chrono::steady_clock::now();
    b.copy_from(a, &ctx);
    ctx.synchronize();
    times.push_back(seconds(start));
  }
  return 2.0 * double(kBytes) / median(times);
}
#endif

int run(int argc, char** argv) {
  const BenchOptions o = parse(argc, argv);
  if (o.threads > 0) kernels::cpu::set_threads(o.threads);
  ModelOptions mo;
  mo.device = o.device;
  mo.context = o.prompt + o.decode;
  mo.max_batch = std::max(o.prompt, 1);
  mo.mmap = o.mmap;
  const auto load_start = std::chrono::steady_clock::now();
  auto model = LlamaModel::load(o.model, mo);
  const double load_s = seconds(load_start);
  const ModelConfig& c = model->config();
  const double weight_bytes = double(model->weight_bytes_per_token());

  std::printf("model    %s: %s, %d layers, dim %d, hidden %d, heads %d/%d, vocab %d, %s\n",
              o.model.c_str(), c.architecture.c_str(), c.n_layers, c.dim, c.hidden_dim, c.n_heads,
              c.n_kv_heads, c.vocab_size, std::string(dtype_name(c.dtype)).c_str());
  std::printf("device   %s", std::string(device_name(o.device)).c_str());
  if (o.device == Device::kCPU) std::printf(", %d threads", kernels::cpu::threads());
  std::printf("; loaded in %.2f s; weights read per token %.1f MB\n", load_s, weight_bytes / 1e6);

  std::mt19937 rng(1);
  std::vector<int32_t> prompt(size_t(o.prompt));
  for (int32_t& t : prompt) t = int32_t(rng() % uint32_t(c.vocab_size));

  // Warm-up: page in the mapped weights, build kernels' caches, capture graphs.
  int32_t next = model->forward_greedy(prompt, 0);
  for (int i = 0; i < std::min(o.decode, 4); ++i) next = model->forward_greedy({&next, 1}, o.prompt + i);

  std::vector<double> prefill, decode;
  for (int r = 0; r < o.repeat; ++r) {
    auto start = std::chrono::steady_clock::now();
    next = model->forward_greedy(prompt, 0);
    prefill.push_back(seconds(start));
    start = std::chrono::steady_clock::now();
    for (int i = 0; i < o.decode; ++i) next = model->forward_greedy({&next, 1}, o.prompt + i);
    decode.push_back(seconds(start));
  }
  const double prefill_s = median(prefill), decode_s = median(decode);
  const double decode_tps = o.decode / decode_s;
  std::printf("prefill  %d tokens in %.2f ms: %.1f tokens/s\n", o.prompt, prefill_s * 1e3,
              o.prompt / prefill_s);
  std::printf("decode   %d tokens, %.3f ms/token: %.1f tokens/s, weights streamed at %.1f GB/s\n",
              o.decode, decode_s * 1e3 / o.decode, decode_tps, decode_tps * weight_bytes / 1e9);
#ifdef KUIPER_WITH_CUDA
  if (o.device == Device::kCUDA) {
    // Read before the copy test below, whose 2 GiB of buffers would count too.
    std::printf("cuda     peak GPU memory in use %.1f MiB (weights, KV cache, activations, scratch)\n",
                double(cuda_allocator().stats().peak_bytes_in_use) / (1 << 20));
    const double copy = cuda_copy_bandwidth(model->device_context());
    std::printf("cuda     device-to-device copy %.1f GB/s (read + written); decode reaches %.0f%% of it\n",
                copy / 1e9, 100.0 * decode_tps * weight_bytes / copy);
  }
#endif
  return 0;
}

}  // namespace
}  // namespace kuiper

int main(int argc, char** argv) {
  try {
    return kuiper::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llama_bench: error: %s\n", e.what());
    return 1;
  }
}
