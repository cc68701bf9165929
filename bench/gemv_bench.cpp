// Memory-bandwidth benchmark of the CUDA decode kernels.
//  1. The ceiling: a large device-to-device copy (bytes read + bytes written per second).
//  2. Every GEMV variant of kernels/cuda/matmul.cu on TinyLlama's matrix shapes, fp32/fp16/bf16
//     weights, rotating over enough copies of the matrix that L2 (50-60 MB on an H100/H200) cannot
//     serve them: GB/s of weights streamed.
//  3. A TinyLlama-1.1B-shaped decoding step (22 layers, dim 2048, hidden 5632, 32 heads, 4 KV
//     heads, vocab 32000; random weights) made of the registered kernels, captured in a CUDA graph
//     and replayed: the tokens/s the kernels allow before any model code, and the GEMVs alone.
//     Also with wq|wk|wv and w1|w3 concatenated into one matrix each (one GEMV instead of three
//     and two), which a model can do for decoding at load time.
//  4. A prefill of 512 positions through the same layers (the cuBLAS path and causal attention).
// Usage: gemv_bench [--quick] [--model-only]. Times are medians of repeated event-timed runs.
// KUIPER_CUDA_PDL=0 in the environment turns programmatic dependent launch off, for comparison.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/gemv.h"
#include "kernels/kernels.h"
#include "kuiper/base/cuda/allocator.h"
#include "kuiper/base/cuda/check.h"
#include "kuiper/base/device_context.h"

namespace {

using namespace kuiper;
using kernels::registry;

bool quick = false, model_only = false;

// Median milliseconds per call of fn, timed with events over `calls` back-to-back calls.
double time_ms(const DeviceContext& ctx, int calls, const std::function<void(int)>& fn) {
  auto stream = static_cast<cudaStream_t>(ctx.cuda_stream());
  cudaEvent_t start, stop;
  KUIPER_CUDA_CHECK(cudaEventCreate(&start));
  KUIPER_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < std::max(3, calls / 10); ++i) fn(i);  // warm-up
  std::vector<double> runs;
  for (int rep = 0; rep < (quick ? 3 : 7); ++rep) {
    KUIPER_CUDA_CHECK(cudaEventRecord(start, stream));
    for (int i = 0; i < calls; ++i) fn(i);
    KUIPER_CUDA_CHECK(cudaEventRecord(stop, stream));
    KUIPER_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    KUIPER_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    runs.push_back(double(ms) / calls);
  }
  KUIPER_CUDA_CHECK(cudaEventDestroy(start));
  KUIPER_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

// Fills a CUDA tensor with uniform values in [-scale, scale): a random host block of 16 MiB
// repeated (contents do not change the timing, zeros could).
void fill_random(const Tensor& t, float scale, const DeviceContext& ctx) {
  static std::vector<float> block = [] {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> dist(-1.f, 1.f);
    std::vector<float> v(size_t(4) << 20);
    for (float& x : v) x = dist(rng);
    return v;
  }();
  const size_t elem = dtype_size(t.dtype()), per_block = block.size();
  std::vector<char> host(per_block * elem);
  for (size_t i = 0; i < per_block; ++i) {
    const float v = block[i] * scale;
    switch (t.dtype()) {
      case DType::kF32: std::memcpy(&host[i * 4], &v, 4); break;
      case DType::kF16: { const f16 h = to_f16(v); std::memcpy(&host[i * 2], &h, 2); break; }
      case DType::kBF16: { const bf16 h = to_bf16(v); std::memcpy(&host[i * 2], &h, 2); break; }
      default: fail("fill_random: ", dtype_name(t.dtype()));
    }
  }
  char* dst = static_cast<char*>(t.raw_data());
  for (size_t off = 0; off < t.bytes(); off += host.size())
    KUIPER_CUDA_CHECK(cudaMemcpy(dst + off, host.data(), std::min(host.size(), t.bytes() - off),
                                 cudaMemcpyHostToDevice));
  ctx.synchronize();
}

double copy_bandwidth(const DeviceContext& ctx) {
  const size_t bytes = size_t(1) << 30;
  Tensor a(DType::kF32, {int64_t(bytes / 4)}, Device::kCUDA), b(a.dtype(), a.shape(), Device::kCUDA);
  fill_random(a, 1.f, ctx);
  auto stream = static_cast<cudaStream_t>(ctx.cuda_stream());
  const double ms = time_ms(ctx, 10, [&](int) {
    KUIPER_CUDA_CHECK(cudaMemcpyAsync(b.raw_data(), a.raw_data(), bytes, cudaMemcpyDeviceToDevice,
                                      stream));
  });
  return 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
}

void gemv_sweep(const DeviceContext& ctx) {
  struct MatrixShape {
    const char* name;
    int64_t out, in;
  };
  const MatrixShape shapes[] = {{"w1/w3 5632x2048", 5632, 2048}, {"w2 2048x5632", 2048, 5632},
                          {"wq/wo 2048x2048", 2048, 2048}, {"wk/wv 256x2048", 256, 2048},
                          {"cls 32000x2048", 32000, 2048}};
  const auto variants = kernels::cuda::gemv_variants();
  std::printf("\n== GEMV, weights streamed from HBM (GB/s; * = the default variant)\n");
  std::printf("%-6s %-18s", "dtype", "shape");
  for (const auto& v : variants) {  // rows/warp, unroll, warps/block, warps/row (a: auto), p: pipelined
    char name[32];
    std::snprintf(name, sizeof name, "r%du%dw%d%c%s", v.rows_per_warp, v.unroll,
                  v.warps_per_block, v.warps_per_row == 0 ? 'a' : char('0' + v.warps_per_row),
                  v.pipelined ? "p" : "");
    std::printf(" %9s", name);
  }
  std::printf("   us(default)\n");
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (const MatrixShape& s : shapes) {
      const size_t bytes = size_t(s.out * s.in) * dtype_size(dtype);
      // Enough copies that together they are 4-5x an H100/H200's L2: each call reads from HBM.
      const int copies = int(std::max<size_t>(2, (size_t(256) << 20) / bytes + 1));
      std::vector<Tensor> ws;
      for (int c = 0; c < copies; ++c) {
        ws.emplace_back(dtype, kuiper::Shape{s.out, s.in}, Device::kCUDA);
        fill_random(ws.back(), 0.05f, ctx);
      }
      Tensor x(DType::kF32, {1, s.in}, Device::kCUDA), y(DType::kF32, {1, s.out}, Device::kCUDA);
      fill_random(x, 1.f, ctx);
      std::printf("%-6s %-18s", std::string(dtype_name(dtype)).c_str(), s.name);
      double default_us = 0;
      for (int v = 0; v < int(variants.size()); ++v) {
        const double ms = time_ms(ctx, quick ? 20 : 100, [&](int i) {
          kernels::cuda::gemv_with_variant(v, x, ws[size_t(i % copies)], Tensor(), y, ctx);
        });
        const bool is_default = v == kernels::cuda::gemv_default_variant(dtype);
        if (is_default) default_us = ms * 1e3;
        std::printf(" %8.0f%s", double(bytes) / (ms * 1e-3) / 1e9, is_default ? "*" : " ");
      }
      std::printf("   %7.2f\n", default_us);
    }
  }
}

// TinyLlama-1.1B's shape, random weights, built from the registered CUDA kernels.
struct TinyLlama {
  static constexpr int64_t kLayers = 22, kDim = 2048, kHidden = 5632, kHeads = 32, kKvHeads = 4,
                           kHeadDim = 64, kVocab = 32000, kMaxSeq = 2048;
  struct Layer {
    Tensor attn_norm, ffn_norm, wq, wk, wv, wo, w1, w2, w3, k_cache, v_cache;
    Tensor wqkv, w13;  // wq, wk, wv and w1, w3 are row views of these
  };

  TinyLlama(DType wtype, const DeviceContext& ctx) : wtype(wtype) {
    auto weight = [&](int64_t out, int64_t in) {
      Tensor t(wtype, {out, in}, Device::kCUDA);
      fill_random(t, 0.02f, ctx);
      return t;
    };
    auto norm = [&] {
      Tensor t(DType::kF32, {kDim}, Device::kCUDA);
      fill_random(t, 1.f, ctx);
      return t;
    };
    for (int l = 0; l < kLayers; ++l) {
      Layer L;
      L.attn_norm = norm();
      L.ffn_norm = norm();
      constexpr int64_t q_rows = kHeads * kHeadDim, kv_rows = kKvHeads * kHeadDim;
      L.wqkv = weight(q_rows + 2 * kv_rows, kDim);
      L.wq = L.wqkv.rows(0, q_rows);
      L.wk = L.wqkv.rows(q_rows, q_rows + kv_rows);
      L.wv = L.wqkv.rows(q_rows + kv_rows, q_rows + 2 * kv_rows);
      L.wo = weight(kDim, kHeads * kHeadDim);
      L.w13 = weight(2 * kHidden, kDim);
      L.w1 = L.w13.rows(0, kHidden);
      L.w3 = L.w13.rows(kHidden, 2 * kHidden);
      L.w2 = weight(kDim, kHidden);
      L.k_cache = Tensor(DType::kF32, {kMaxSeq, kKvHeads * kHeadDim}, Device::kCUDA);
      L.v_cache = Tensor(DType::kF32, {kMaxSeq, kKvHeads * kHeadDim}, Device::kCUDA);
      fill_random(L.k_cache, 1.f, ctx);
      fill_random(L.v_cache, 1.f, ctx);
      layers.push_back(std::move(L));
    }
    final_norm = norm();
    classifier = weight(kVocab, kDim);
    cos_sin = Tensor(DType::kF32, {kMaxSeq, kHeadDim / 2, 2}, Device::kCUDA);
    fill_random(cos_sin, 1.f, ctx);
  }

  size_t decode_weight_bytes() const {
    size_t b = classifier.bytes();
    for (const Layer& L : layers)
      for (const Tensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w1, &L.w2, &L.w3}) b += t->bytes();
    return b;
  }

  struct Activations {
    Tensor x, h, q, k, v, att, g, u, logits, next, positions;
    Tensor qkv, gu;  // n == 1: q, k, v and g, u are views of these (outputs of the concatenations)
    explicit Activations(int64_t n) {
      auto t = [&](int64_t width) { return Tensor(DType::kF32, {n, width}, Device::kCUDA); };
      x = t(kDim), h = t(kDim), att = t(kHeads * kHeadDim);
      if (n == 1) {
        auto part = [](const Tensor& whole, int64_t begin, int64_t end) {
          return whole.reshape({whole.numel()}).rows(begin, end).reshape({1, end - begin});
        };
        constexpr int64_t qw = kHeads * kHeadDim, kvw = kKvHeads * kHeadDim;
        qkv = t(qw + 2 * kvw), gu = t(2 * kHidden);
        q = part(qkv, 0, qw), k = part(qkv, qw, qw + kvw), v = part(qkv, qw + kvw, qw + 2 * kvw);
        g = part(gu, 0, kHidden), u = part(gu, kHidden, 2 * kHidden);
      } else {
        q = t(kHeads * kHeadDim), k = t(kKvHeads * kHeadDim), v = t(kKvHeads * kHeadDim);
        g = t(kHidden), u = t(kHidden);
      }
      logits = Tensor(DType::kF32, {1, kVocab}, Device::kCUDA);
      next = Tensor(DType::kI32, {1}, Device::kCUDA);
      positions = Tensor(DType::kI32, {n}, Device::kCUDA);
    }
  };

  // All layers for the rows of `a` (their positions already in a.positions); gemv_only keeps
  // only the matrix products, to separate their time from the small kernels'; concat (n == 1)
  // multiplies by wqkv and w13 instead of their parts.
  void forward(const Activations& a, const DeviceContext& ctx, bool gemv_only = false,
               bool concat = false) const {
    const auto& r = registry();
    constexpr Device kCuda = Device::kCUDA;
    constexpr DType kF32 = DType::kF32;
    const auto matmul = r.matmul.find(kCuda, wtype);
    const int64_t n = a.x.dim(0);
    for (const Layer& L : layers) {
      if (!gemv_only) r.rmsnorm.find(kCuda, kF32)(a.x, L.attn_norm, 1e-5f, a.h, ctx);
      if (concat) {
        matmul(a.h, L.wqkv, Tensor(), a.qkv, ctx);
      } else {
        matmul(a.h, L.wq, Tensor(), a.q, ctx);
        matmul(a.h, L.wk, Tensor(), a.k, ctx);
        matmul(a.h, L.wv, Tensor(), a.v, ctx);
      }
      if (!gemv_only) {
        r.rope.find(kCuda, kF32)(a.q, a.positions, cos_sin, kHeadDim, ctx);
        r.rope.find(kCuda, kF32)(a.k, a.positions, cos_sin, kHeadDim, ctx);
        r.scatter_rows.find(kCuda, kF32)(a.k, a.positions, L.k_cache, ctx);
        r.scatter_rows.find(kCuda, kF32)(a.v, a.positions, L.v_cache, ctx);
        r.attention.find(kCuda, kF32)(a.q, L.k_cache, L.v_cache, a.positions,
                                      {kHeads, kKvHeads, kHeadDim}, a.att, ctx);
      }
      matmul(a.att, L.wo, Tensor(), a.h, ctx);
      if (!gemv_only) {
        r.add.find(kCuda, kF32)(a.x, a.h, a.x, ctx);
        r.rmsnorm.find(kCuda, kF32)(a.x, L.ffn_norm, 1e-5f, a.h, ctx);
      }
      if (concat) {
        matmul(a.h, L.w13, Tensor(), a.gu, ctx);
      } else {
        matmul(a.h, L.w1, Tensor(), a.g, ctx);
        matmul(a.h, L.w3, Tensor(), a.u, ctx);
      }
      if (!gemv_only) r.swiglu.find(kCuda, kF32)(a.g, a.u, a.g, ctx);
      matmul(a.g, L.w2, Tensor(), a.h, ctx);
      if (!gemv_only) r.add.find(kCuda, kF32)(a.x, a.h, a.x, ctx);
    }
    const Tensor last_x = a.x.rows(n - 1, n), last_h = a.h.rows(n - 1, n);
    if (!gemv_only) r.rmsnorm.find(kCuda, kF32)(last_x, final_norm, 1e-5f, last_h, ctx);
    matmul(last_h, classifier, Tensor(), a.logits, ctx);
    if (!gemv_only) r.argmax.find(kCuda, kF32)(a.logits, a.next, ctx);
  }

  DType wtype;
  std::vector<Layer> layers;
  Tensor final_norm, classifier, cos_sin;
};

void set_positions(const Tensor& positions, int32_t first, const DeviceContext& ctx) {
  std::vector<int32_t> p(size_t(positions.numel()));
  for (size_t i = 0; i < p.size(); ++i) p[i] = first + int32_t(i);
  KUIPER_CUDA_CHECK(cudaMemcpyAsync(positions.raw_data(), p.data(), p.size() * 4,
                                    cudaMemcpyHostToDevice,
                                    static_cast<cudaStream_t>(ctx.cuda_stream())));
  ctx.synchronize();
}

void model_bench(DType wtype, const DeviceContext& ctx, double copy_gbs) {
  const TinyLlama model(wtype, ctx);
  auto stream = static_cast<cudaStream_t>(ctx.cuda_stream());
  const double gb = double(model.decode_weight_bytes()) / 1e9;
  std::printf("\n== TinyLlama-1.1B shape, %s weights (%.2f GB read per token)\n",
              std::string(dtype_name(wtype)).c_str(), gb);

  const TinyLlama::Activations one(1);
  fill_random(one.x, 1.f, ctx);
  struct Config {
    bool gemv_only, concat;
    int32_t pos;
  };
  const Config configs[] = {{true, false, 512}, {true, true, 512},   {false, false, 16},
                            {false, false, 512}, {false, false, 2000}, {false, true, 16},
                            {false, true, 512},  {false, true, 2000}};
  for (const Config& c : configs) {
    set_positions(one.positions, c.pos, ctx);
    model.forward(one, ctx, c.gemv_only, c.concat);  // warm-up outside the capture (workspace)
    ctx.synchronize();
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    KUIPER_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    model.forward(one, ctx, c.gemv_only, c.concat);
    KUIPER_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    KUIPER_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    const double ms = time_ms(ctx, quick ? 10 : 50, [&](int) {
      KUIPER_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    });
    std::printf("decode step (graph) %-11s %-13s at position %4d: %6.3f ms = %5.0f tokens/s, "
                "weights at %4.0f GB/s (%2.0f%% of the copy)\n",
                c.gemv_only ? "GEMVs only" : "all kernels", c.concat ? "concatenated" : "separate",
                c.pos, ms, 1e3 / ms, gb / (ms * 1e-3), 100.0 * gb / (ms * 1e-3) / copy_gbs);
    KUIPER_CUDA_CHECK(cudaGraphExecDestroy(exec));
    KUIPER_CUDA_CHECK(cudaGraphDestroy(graph));
  }

  const int64_t n = 512;
  const TinyLlama::Activations many(n);
  fill_random(many.x, 1.f, ctx);
  set_positions(many.positions, 0, ctx);
  const double ms = time_ms(ctx, quick ? 2 : 5, [&](int) { model.forward(many, ctx); });
  std::printf("prefill of %lld positions (eager): %7.2f ms = %6.0f tokens/s\n", (long long)n, ms,
              double(n) * 1e3 / ms);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    quick = quick || std::strcmp(argv[i], "--quick") == 0;
    model_only = model_only || std::strcmp(argv[i], "--model-only") == 0;
  }
  try {
    const DeviceContext ctx(Device::kCUDA);
    cudaDeviceProp prop{};
    KUIPER_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s, %d SMs, %.0f MiB, L2 %.0f MiB\n", prop.name, prop.multiProcessorCount,
                double(prop.totalGlobalMem) / (1 << 20), double(prop.l2CacheSize) / (1 << 20));
    const double copy_gbs = copy_bandwidth(ctx);
    std::printf("device-to-device copy of 1 GiB: %.0f GB/s (read + write)\n", copy_gbs);
    if (!model_only) gemv_sweep(ctx);
    for (DType wtype : {DType::kF16, DType::kF32, DType::kBF16}) model_bench(wtype, ctx, copy_gbs);
    const CudaMemoryStats s = cuda_allocator().stats();
    std::printf("\nallocator: peak in use %.2f GB, reserved %.2f GB, %zu cudaMalloc calls\n",
                double(s.peak_bytes_in_use) / 1e9, double(s.bytes_reserved) / 1e9, s.driver_allocs);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gemv_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
