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
#include "kernels/kernels.h"
#include "kuiper/base/allocator.h"
#include "kuiper/base/error.h"
#include "kuiper/engine/engine.h"
#include "kuiper/model/llama_model.h"
#ifdef KUIPER_WITH_CUDA
#include "kernels/cuda/gemv.h"
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
  int parallel = 0;  // > 0: that many sequences at once through the engine
  int tensor_parallel = 1;  // ranks: GPUs on CUDA, threads on the CPU
  DType kv_dtype = DType::kF32;
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
    else if (a == "--parallel") o.parallel = std::stoi(value());
    else if (a == "-tp" || a == "--tensor-parallel") o.tensor_parallel = std::stoi(value());
    else if (a == "--kv-type") {
      const auto t = dtype_from_name(value());
      KUIPER_CHECK(t.has_value(), "--kv-type takes fp32, fp16 or bf16");
      o.kv_dtype = *t;
    }
    else if (!a.starts_with("-") && o.model.empty()) o.model = a;
    else fail("unknown argument '", a, "'");
  }
  KUIPER_CHECK(!o.model.empty(),
               "usage: llama_bench MODEL [--device cpu|cuda] [-t N] [--prompt N] [--decode N] "
               "[--repeat N] [--no-mmap] [--parallel N] [--kv-type fp32|fp16|bf16] "
               "[-tp|--tensor-parallel N (GPUs on cuda; threads on the cpu, to test the split)]");
  return o;
}

double seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p / 100.0 * double(v.size())))];
}

std::vector<int32_t> random_prompt(int n, int vocab, std::mt19937& rng) {
  std::vector<int32_t> prompt(static_cast<size_t>(n));
  for (int32_t& t : prompt) t = int32_t(rng() % uint32_t(vocab));
  return prompt;
}

// --parallel N: N requests of `prompt` random tokens submitted at once to the engine, each
// generating `decode` tokens (end-of-sequence ignored), as llama.cpp's llama-batched-bench
// runs them. Decode figures count from the moment every sequence has its first token.
// The collectives of one decode step of `rows` sequences timed alone, beside the step's time.
void report_collectives(LlamaModel& model, int64_t rows, double step_s) {
  if (model.tensor_parallel() == 1) return;
  const double s = model.collective_seconds_per_step(rows, 20);
  std::printf("ranks    %d: all-reduce (2 a block) + logits gather %.3f ms per step of %lld "
              "sequence(s) when run alone, %.0f%% of the step\n",
              model.tensor_parallel(), s * 1e3, static_cast<long long>(rows), 100.0 * s / step_s);
}

// A decoding step of n sequences (one token each, at `position`) through forward_batch alone,
// without the engine: ms a step when 20 are called back to back (the device's time plus the
// upload of each step's index, which waits for the step before) and when each is followed by
// the argmax and its copy to the host, as the engine waits for its picks. Against the engine's
// step: what its own host work between steps costs.
void report_step_times(LlamaModel& model, int n, int32_t position) {
  const int per_seq = (position + 1 + model.kv_block_size() - 1) / model.kv_block_size();
  if (int64_t(n) * per_seq > model.kv_blocks()) return;
  std::vector<int32_t> blocks(size_t(n) * per_seq), tokens(size_t(n), 1);
  for (size_t i = 0; i < blocks.size(); ++i) blocks[i] = int32_t(i);
  std::vector<SequenceChunk> chunks;
  for (int s = 0; s < n; ++s)
    chunks.push_back({std::span(tokens).subspan(size_t(s), 1), position,
                      std::span(blocks).subspan(size_t(s) * per_seq, size_t(per_seq)), true});
  const DeviceContext& ctx = model.device_context();
  const Tensor picks(DType::kI32, {n}, model.device());
  std::vector<int32_t> host(static_cast<size_t>(n));
  auto time_steps = [&](bool wait_for_picks) {
    constexpr int kSteps = 20;
    model.forward_batch(chunks);  // warm: the graph of this size exists after the first
    ctx.synchronize();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kSteps; ++i) {
      const Tensor logits = model.forward_batch(chunks);
      if (!wait_for_picks) continue;
      kernels::registry().argmax.find(model.device(), DType::kF32)(logits, picks, ctx);
      copy_bytes(host.data(), Device::kCPU, picks.raw_data(), model.device(),
                 size_t(n) * sizeof(int32_t), &ctx);
    }
    ctx.synchronize();
    return seconds(start) / kSteps * 1e3;
  };
  const double queued = time_steps(false), waited = time_steps(true);
  std::printf("step     %d sequences at position %d: %.3f ms queued back to back, %.3f ms with "
              "each step's picks copied back\n", n, position, queued, waited);
}

void run_parallel(const BenchOptions& o, LlamaModel& model) {
  const int n = o.parallel;
  std::mt19937 rng(1);
  struct Timing {
    std::chrono::steady_clock::time_point first, last;
    int tokens = 0;
  };
  std::vector<double> aggregate, ttft_ms, per_seq;
  size_t peak_blocks = 0;
  for (int r = 0; r <= o.repeat; ++r) {  // round 0 warms up (pages, graphs of every size)
    engine::Engine eng(model, {.max_running = n, .token_budget = model.max_batch()});
    std::vector<Timing> t(static_cast<size_t>(n));
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      engine::Request q;
      q.prompt = random_prompt(o.prompt, model.config().vocab_size, rng);
      q.params.max_tokens = o.decode;
      q.params.ignore_eos = true;
      q.on_update = [&t, i](const engine::Update& u) {
        const auto now = std::chrono::steady_clock::now();
        if (t[size_t(i)].tokens == 0) t[size_t(i)].first = now;
        t[size_t(i)].tokens += int(u.tokens.size());
        t[size_t(i)].last = now;
      };
      eng.submit(std::move(q));
    }
    while (eng.step()) peak_blocks = std::max(peak_blocks, size_t(eng.stats().kv_blocks_used));
    if (r == 0) continue;
    auto all_first = t[0].first, all_last = t[0].last;
    int decoded = 0;
    for (const Timing& s : t) {
      all_first = std::max(all_first, s.first);
      all_last = std::max(all_last, s.last);
      decoded += s.tokens - 1;
      ttft_ms.push_back(std::chrono::duration<double, std::milli>(s.first - start).count());
    }
    const double decode_s = std::chrono::duration<double>(all_last - all_first).count();
    aggregate.push_back(decoded / decode_s);
    for (const Timing& s : t)
      per_seq.push_back((s.tokens - 1) /
                        std::chrono::duration<double>(s.last - s.first).count());
  }
  const double kv_mib = double(peak_blocks) * model.kv_block_size() *
                        double(model.kv_bytes_per_token()) / (1 << 20);
  std::printf("parallel %d sequences x (%d prompt + %d new tokens), kv %s\n", n, o.prompt, o.decode,
              std::string(dtype_name(model.kv_dtype())).c_str());
  std::printf("decode   aggregate %.1f tokens/s; per sequence median %.1f tokens/s\n",
              median(aggregate), median(per_seq));
  std::printf("step     engine %.3f ms (sequences / aggregate tokens/s)\n",
              1e3 * n / median(aggregate));
  report_step_times(model, n, o.prompt + o.decode / 2);
  report_collectives(model, n, n / median(aggregate));
  std::printf("ttft     median %.2f ms, p99 %.2f ms (all %d submitted at once)\n",
              median(ttft_ms), percentile(ttft_ms, 99), n);
  std::printf("kv       peak %zu blocks of %d, %.1f MiB (%.1f KiB per token)\n", peak_blocks,
              model.kv_block_size(), kv_mib, double(model.kv_bytes_per_token()) / 1024);
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
  mo.kv_dtype = o.kv_dtype;
  mo.tensor_parallel = o.tensor_parallel;
  if (o.parallel > 0) {
    mo.max_sequences = o.parallel;
    mo.max_batch = std::max(512, o.parallel);
    mo.kv_blocks = o.parallel * ((mo.context + mo.kv_block_size - 1) / mo.kv_block_size);
  }
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
  if (model->tensor_parallel() > 1) std::printf(", %d tensor-parallel ranks", model->tensor_parallel());
  std::printf("; loaded in %.2f s; weights read per token %.1f MB%s\n", load_s, weight_bytes / 1e6,
              model->tensor_parallel() > 1 ? " (by each rank)" : "");

  if (o.parallel > 0) {
    run_parallel(o, *model);
    return 0;
  }
  std::mt19937 rng(1);
  const std::vector<int32_t> prompt = random_prompt(o.prompt, c.vocab_size, rng);

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
  report_collectives(*model, 1, decode_s / o.decode);
#ifdef KUIPER_WITH_CUDA
  if (o.device == Device::kCUDA) {
    // KUIPER_CUDA_GEMV_TRACE=1: the GEMV launches of one more decoding step, stamped.
    if (kernels::cuda::gemv_trace_reset()) {
      next = model->forward_greedy({&next, 1}, o.prompt + o.decode - 1);
      kernels::cuda::gemv_trace_dump();
    }
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
