// Paged attention against the contiguous kernels it replaces, on the CUDA kernels alone:
//  - decoding: a batch of B sequences (1, 8, 64), each one row at context L (256, 2048), through
//    the block tables of a shuffled block pool in one paged_attention call, beside B calls of
//    the contiguous attention (one a sequence, each over its own cache: what serving B sequences
//    took before);
//  - prefill: one 512-row chunk from position 0 in one call of each.
// Shapes: TinyLlama-1.1B (32 heads, 4 KV heads, head_dim 64) and Llama-3.1-8B (32/8/128).
// Each configuration's calls are captured in a CUDA graph, 10 times over (as 10 layers), and the
// graph replayed; times are medians of 7 event-timed runs of 20 replays, per call.
// --many-rows instead sweeps the decode kernel's configurations (kernels/cuda/attention.h:
// cluster, warps, keys a stage, the tiled kernel, the tensor cores) for a serving batch: 64
// rows of Llama-3.1-8B's shape at contexts 128-256, where a step's attention is ~16% of its
// time.
// Usage: paged_attention_bench [--dtype fp16|bf16|fp32] [--block 16|32] [--quick] [--many-rows]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/attention.h"
#include "kernels/kernels.h"
#include "kuiper/base/cuda/check.h"
#include "kuiper/base/cuda_graph.h"
#include "kuiper/base/device_context.h"

namespace {

using namespace kuiper;
using kernels::AttentionShape;

constexpr int kLayers = 10;  // calls a graph
bool quick = false;

// Median microseconds a call of what `record` queues (kLayers calls).
double time_us(const DeviceContext& ctx, const std::function<void()>& record) {
  record();  // outside the capture: scratch grows, modules load
  ctx.synchronize();
  const CudaGraph graph(ctx, [&] {
    for (int l = 0; l < kLayers; ++l) record();
  });
  auto stream = static_cast<cudaStream_t>(ctx.cuda_stream());
  cudaEvent_t start, stop;
  KUIPER_CUDA_CHECK(cudaEventCreate(&start));
  KUIPER_CUDA_CHECK(cudaEventCreate(&stop));
  const int replays = quick ? 5 : 20;
  for (int i = 0; i < 3; ++i) graph.launch();
  std::vector<double> runs;
  for (int rep = 0; rep < (quick ? 3 : 7); ++rep) {
    KUIPER_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < replays; ++i) graph.launch();
    KUIPER_CUDA_CHECK(cudaEventRecord(stop, stream));
    KUIPER_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    KUIPER_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    runs.push_back(1e3 * double(ms) / (replays * kLayers));
  }
  KUIPER_CUDA_CHECK(cudaEventDestroy(start));
  KUIPER_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

// A CUDA tensor of small random values (a 4 MB host pattern repeated: contents do not change
// the timing, but NaN or zeros could).
Tensor random_cuda(DType dtype, Shape shape, std::mt19937& rng) {
  Tensor t(dtype, shape, Device::kCUDA);
  Tensor block(dtype, {std::min<int64_t>(t.numel(), int64_t(1) << 21)});
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (int64_t i = 0; i < block.numel(); ++i) {
    const float v = dist(rng);
    if (dtype == DType::kF32) block.span<float>()[i] = v;
    else if (dtype == DType::kF16) block.span<f16>()[i] = to_f16(v);
    else block.span<bf16>()[i] = to_bf16(v);
  }
  char* dst = static_cast<char*>(t.raw_data());
  for (size_t off = 0; off < t.bytes(); off += block.bytes())
    KUIPER_CUDA_CHECK(cudaMemcpy(dst + off, block.raw_data(), std::min(block.bytes(), t.bytes() - off),
                                 cudaMemcpyHostToDevice));
  return t;
}

Tensor ints_cuda(const std::vector<int32_t>& v, Shape shape) {
  Tensor host(DType::kI32, shape);
  std::copy(v.begin(), v.end(), host.span<int32_t>().begin());
  return host.to(Device::kCUDA);
}

// B sequences, sequence s with rows[s] rows ending at position lengths[s] - 1, over a shuffled
// pool of blocks just large enough.
struct PagedSetup {
  kernels::PagedCache cache;
  kernels::BatchRows rows;
  PagedSetup(const std::vector<int>& lengths, const std::vector<int>& rows_per_seq, int block,
             int64_t kv_width, DType type, std::mt19937& rng) {
    const int n_seqs = int(lengths.size());
    const int max_len = *std::max_element(lengths.begin(), lengths.end());
    const int max_blocks = (max_len + block - 1) / block;
    std::vector<int32_t> pool(size_t(n_seqs) * max_blocks);
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), rng);
    std::vector<int32_t> tables(pool.size(), -1), pos, slots, seqs, starts;
    size_t next = 0;
    for (int s = 0; s < n_seqs; ++s) {
      for (int j = 0; j * block < lengths[s]; ++j) tables[size_t(s) * max_blocks + j] = pool[next++];
      starts.push_back(int32_t(pos.size()));
      for (int p = lengths[s] - rows_per_seq[s]; p < lengths[s]; ++p) {
        pos.push_back(p);
        slots.push_back(tables[size_t(s) * max_blocks + p / block] * block + p % block);
        seqs.push_back(s);
      }
    }
    starts.push_back(int32_t(pos.size()));
    const int64_t n = int64_t(pos.size());
    cache.block_size = block;
    cache.k = random_cuda(type, {int64_t(pool.size()) * block, kv_width}, rng);
    cache.v = random_cuda(type, {int64_t(pool.size()) * block, kv_width}, rng);
    rows = {ints_cuda(pos, {n}),          ints_cuda(slots, {n}),
            ints_cuda(seqs, {n}),         ints_cuda(starts, {n_seqs + 1}),
            ints_cuda(tables, {n_seqs, max_blocks}), max_len};
  }
};

void bench_shape(const char* name, const AttentionShape& shape, DType type, int block,
                 const DeviceContext& ctx) {
  const auto& r = kernels::registry();
  const int64_t q_width = int64_t(shape.n_heads) * shape.head_dim;
  const int64_t kv_width = int64_t(shape.n_kv_heads) * shape.head_dim;
  std::mt19937 rng(5);
  for (int context : {256, 2048}) {
    for (int batch : {1, 8, 64}) {
      const PagedSetup paged(std::vector<int>(size_t(batch), context),
                             std::vector<int>(size_t(batch), 1), block, kv_width, type, rng);
      const Tensor q = random_cuda(DType::kF32, {batch, q_width}, rng);
      const Tensor out(DType::kF32, {batch, q_width}, Device::kCUDA);
      const double paged_us = time_us(ctx, [&] {
        r.paged_attention.find(Device::kCUDA, type)(q, paged.cache, paged.rows, shape, out, Tensor(), ctx);
      });
      // Before: one contiguous cache and one call a sequence.
      std::vector<Tensor> ks, vs, qs, outs;
      for (int s = 0; s < batch; ++s) {
        ks.push_back(random_cuda(type, {context, kv_width}, rng));
        vs.push_back(random_cuda(type, {context, kv_width}, rng));
        qs.push_back(q.rows(s, s + 1));
        outs.push_back(out.rows(s, s + 1));
      }
      const Tensor position = ints_cuda({context - 1}, {1});
      const double old_us = time_us(ctx, [&] {
        for (int s = 0; s < batch; ++s)
          r.attention.find(Device::kCUDA, type)(qs[size_t(s)], ks[size_t(s)], vs[size_t(s)],
                                                position, shape, outs[size_t(s)], ctx);
      });
      std::printf("decode  %-9s %s block %d  batch %2d context %4d: paged %8.1f us   contiguous "
                  "(%2d calls) %8.1f us\n",
                  name, std::string(dtype_name(type)).c_str(), block, batch, context, paged_us, batch, old_us);
      std::fflush(stdout);
    }
  }
  constexpr int kPrompt = 512;
  const PagedSetup paged({kPrompt}, {kPrompt}, block, kv_width, type, rng);
  const Tensor q = random_cuda(DType::kF32, {kPrompt, q_width}, rng);
  const Tensor out(DType::kF32, {kPrompt, q_width}, Device::kCUDA);
  const double paged_us = time_us(ctx, [&] {
    r.paged_attention.find(Device::kCUDA, type)(q, paged.cache, paged.rows, shape, out, Tensor(), ctx);
  });
  const Tensor k = random_cuda(type, {kPrompt, kv_width}, rng);
  const Tensor v = random_cuda(type, {kPrompt, kv_width}, rng);
  std::vector<int32_t> positions(kPrompt);
  std::iota(positions.begin(), positions.end(), 0);
  const Tensor pos = ints_cuda(positions, {kPrompt});
  const double old_us = time_us(ctx, [&] {
    r.attention.find(Device::kCUDA, type)(q, k, v, pos, shape, out, ctx);
  });
  std::printf("prefill %-9s %s block %d  %d rows:                paged %8.1f us   contiguous "
              "          %8.1f us\n",
              name, std::string(dtype_name(type)).c_str(), block, kPrompt, paged_us, old_us);
  std::fflush(stdout);
}

// The decode kernel's configurations for 64 rows of the 8B shape: us a call and the rate the
// keys and values are read at (each row reads its context's once).
void sweep_many_rows(DType type, int block, const DeviceContext& ctx) {
  namespace kc = kernels::cuda;
  const AttentionShape shape{32, 8, 128};
  const auto& r = kernels::registry();
  const int64_t q_width = int64_t(shape.n_heads) * shape.head_dim;
  const int64_t kv_width = int64_t(shape.n_kv_heads) * shape.head_dim;
  std::mt19937 rng(6);
  constexpr int kBatch = 64;
  const kc::AttentionDecodeConfig before = kc::attention_decode_config();
  for (int context : {128, 192, 256}) {
    const PagedSetup paged(std::vector<int>(kBatch, context), std::vector<int>(kBatch, 1), block,
                           kv_width, type, rng);
    const Tensor q = random_cuda(DType::kF32, {kBatch, q_width}, rng);
    const Tensor out(DType::kF32, {kBatch, q_width}, Device::kCUDA);
    const double bytes = 2.0 * kBatch * context * double(storage_bytes(type, kv_width));
    auto run = [&](const kc::AttentionDecodeConfig& c, const std::string& label) {
      kc::set_attention_decode_config(c);
      const double us = time_us(ctx, [&] {
        r.paged_attention.find(Device::kCUDA, type)(q, paged.cache, paged.rows, shape, out, Tensor(), ctx);
      });
      std::printf("many-rows llama8b %s batch %d context %d %-28s %7.2f us %6.0f GB/s\n",
                  std::string(dtype_name(type)).c_str(), kBatch, context, label.c_str(), us,
                  bytes / us * 1e-3);
      std::fflush(stdout);
    };
    run(before, "default");
    run({kc::AttentionDecodeConfig::kAuto, 0, 0, -1, 0, 1, 2}, "tensor cores, 2 warps");
    run({kc::AttentionDecodeConfig::kAuto, 0, 0, -1, 0, 1, 4}, "tensor cores, 4 warps");
    run({kc::AttentionDecodeConfig::kSplit, 0, 0, -1, 0, 0}, "tiled");
    for (int cluster : {1, 2, 4})
      for (int warps : {4, 8, 16})
        for (int stage : {32, 64, 128}) {
          const std::string label = "cluster " + std::to_string(cluster) + " warps " +
                                    std::to_string(warps) + " stage " + std::to_string(stage);
          run({kc::AttentionDecodeConfig::kCluster, cluster, warps, 0, stage, 0}, label);
        }
  }
  kc::set_attention_decode_config(before);
}

}  // namespace

int main(int argc, char** argv) {
  DType type = DType::kF16;
  int block = 16;
  bool many_rows = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else if (std::strcmp(argv[i], "--many-rows") == 0) many_rows = true;
    else if (std::strcmp(argv[i], "--block") == 0 && i + 1 < argc) block = std::atoi(argv[++i]);
    else if (std::strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) {
      const std::string t = argv[++i];
      type = t == "fp32" ? DType::kF32 : t == "bf16" ? DType::kBF16 : DType::kF16;
    } else {
      std::fprintf(stderr, "usage: %s [--dtype fp16|bf16|fp32] [--block N] [--quick] [--many-rows]\n",
                   argv[0]);
      return 2;
    }
  }
  try {
    const DeviceContext ctx(Device::kCUDA);
    if (many_rows) {
      sweep_many_rows(type, block, ctx);
      return 0;
    }
    bench_shape("tinyllama", {32, 4, 64}, type, block, ctx);
    bench_shape("llama8b", {32, 8, 128}, type, block, ctx);
  } catch (const Error& e) {
    std::fprintf(stderr, "paged_attention_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
