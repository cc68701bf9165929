// Causal attention over the KV cache, for decoding (n == 1) and prefill (n > 1) alike:
//   out[i, h] = softmax(q[i, h] . K[0..p, g]^T / sqrt(head_dim)) . V[0..p, g],  p = positions[i]
//
// A block serves one query row, one KV head and one split of the keys, for all the query heads
// that share that KV head (grouped-query attention reads each key and value once per group). It
// walks its keys in tiles staged in shared memory (rows padded by one float, so that threads
// reading one column hit distinct banks): scores for every (head, key) of the tile, an online
// softmax update per head (one warp per head), then the weighted sum of the value tile into
// per-head accumulators. Any head_dim works (48, 64, 128, ...).
//
// Flash-decoding: a single query row (decoding) has too little work for one block per KV head,
// so the keys are split across up to kMaxSplits blocks, each writing an unnormalized partial
// result with its running max and sum to the workspace, and a second kernel combines them. The
// number of splits depends only on the shapes (not on the position), so a CUDA graph captured
// once serves every step: each block reads the sequence length from positions on the device and
// blocks beyond it return at once. Prefill rows give enough blocks without splitting.
//
// A position outside the cache cannot throw on the device: that row's output is NaN.
#include <climits>
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace kuiper::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMinChunk = 32;    // keys per split at least: fewer make the combine dominate
constexpr int kMaxSplits = 128;  // the combine kernel keeps one weight per split in shared memory
constexpr int kMaxTile = 64;
constexpr size_t kSharedLimit = 48 * 1024;  // no opt-in needed below this

struct Params {
  int n_heads, n_kv_heads, head_dim, group;
  int max_seq, splits, tile;
  float scale;
};

__device__ __forceinline__ int seq_len(int32_t pos, int max_seq) {
  return pos >= 0 && pos < max_seq ? pos + 1 : 0;
}
__device__ __forceinline__ int split_chunk(int len, int splits) {
  return max(kMinChunk, (len + splits - 1) / splits);
}

size_t shared_floats(int group, int head_dim, int tile) {
  return 2 * size_t(group) * head_dim           // queries, accumulators
         + size_t(tile) * (head_dim + 1)        // key or value tile, padded rows
         + size_t(group) * tile + 3 * group;    // scores; max, sum, rescale per head
}

template <class CT>
__global__ void __launch_bounds__(kThreads)
    attention_kernel(Params p, const float* q, const CT* k_cache, const CT* v_cache,
                     const int32_t* positions, float* out, float* part_ml, float* part_o) {
  extern __shared__ float smem[];
  const int G = p.group, D = p.head_dim, tile = p.tile;
  float* q_s = smem;
  float* acc = q_s + G * D;
  float* kv = acc + G * D;
  float* sc = kv + tile * (D + 1);
  float* m_s = sc + G * tile;
  float* l_s = m_s + G;
  float* alpha = l_s + G;

  const int row = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;
  const int len = seq_len(positions[row], p.max_seq);
  const int chunk = split_chunk(len, p.splits);
  const int begin = split * chunk, end = min(len, begin + chunk);
  const int q_width = p.n_heads * D, kv_width = p.n_kv_heads * D;
  if (begin >= end) {
    if (p.splits == 1)  // no keys at all: the position was outside the cache
      for (int i = tid; i < G * D; i += blockDim.x)
        out[int64_t(row) * q_width + kvh * G * D + i] = __int_as_float(0x7fc00000);
    return;  // with splits, the combine kernel knows which splits had keys
  }

  const float* q_row = q + int64_t(row) * q_width + kvh * G * D;  // the group's heads, contiguous
  for (int i = tid; i < G * D; i += blockDim.x) {
    q_s[i] = q_row[i] * p.scale;
    acc[i] = 0.f;
  }
  for (int g = tid; g < G; g += blockDim.x) {
    m_s[g] = -INFINITY;
    l_s[g] = 0.f;
  }
  const CT* k_base = k_cache + kvh * D;
  const CT* v_base = v_cache + kvh * D;

  for (int t0 = begin; t0 < end; t0 += tile) {
    const int cnt = min(tile, end - t0);
    __syncthreads();  // the previous tile's readers are done with kv and sc
    for (int i = tid; i < cnt * D; i += blockDim.x) {
      const int r = i / D, d = i - r * D;
      kv[r * (D + 1) + d] = to_f32(k_base[int64_t(t0 + r) * kv_width + d]);
    }
    __syncthreads();
    for (int i = tid; i < G * cnt; i += blockDim.x) {
      const int g = i / cnt, r = i - g * cnt;
      const float* qg = q_s + g * D;
      const float* kr = kv + r * (D + 1);
      float s = 0.f;
      for (int d = 0; d < D; ++d) s = fmaf(qg[d], kr[d], s);
      sc[g * tile + r] = s;
    }
    __syncthreads();
    // The keys are no longer needed: load the values while the warps update the softmax.
    for (int i = tid; i < cnt * D; i += blockDim.x) {
      const int r = i / D, d = i - r * D;
      kv[r * (D + 1) + d] = to_f32(v_base[int64_t(t0 + r) * kv_width + d]);
    }
    for (int g = warp; g < G; g += warps) {
      float* sg = sc + g * tile;
      float mx = -INFINITY;
      for (int r = lane; r < cnt; r += 32) mx = fmaxf(mx, sg[r]);
      const float m_old = m_s[g], m_new = fmaxf(m_old, warp_max(mx));
      float sum = 0.f;
      for (int r = lane; r < cnt; r += 32) {
        const float e = expf(sg[r] - m_new);
        sg[r] = e;
        sum += e;
      }
      sum = warp_sum(sum);
      if (lane == 0) {
        const float a = expf(m_old - m_new);  // 0 on the first tile (m_old = -inf)
        alpha[g] = a;
        l_s[g] = l_s[g] * a + sum;
        m_s[g] = m_new;
      }
    }
    __syncthreads();
    // Each thread owns the same accumulators in every tile, so no barrier guards acc.
    for (int i = tid; i < G * D; i += blockDim.x) {
      const int g = i / D, d = i - g * D;
      const float* pg = sc + g * tile;
      float o = acc[i] * alpha[g];
      for (int r = 0; r < cnt; ++r) o = fmaf(pg[r], kv[r * (D + 1) + d], o);
      acc[i] = o;
    }
  }

  for (int i = tid; i < G * D; i += blockDim.x) {
    const int g = i / D, d = i - g * D, h = kvh * G + g;
    if (p.splits == 1) {
      out[int64_t(row) * q_width + h * D + d] = acc[i] / l_s[g];
    } else {
      const int64_t slot = (int64_t(row) * p.n_heads + h) * p.splits + split;
      part_o[slot * D + d] = acc[i];
      if (d == 0) {
        part_ml[2 * slot] = m_s[g];
        part_ml[2 * slot + 1] = l_s[g];
      }
    }
  }
}

// Merges the splits of one (row, head): weights exp(m_s - max) rescale each partial sum.
__global__ void attention_combine_kernel(Params p, const int32_t* positions, const float* part_ml,
                                         const float* part_o, float* out) {
  __shared__ float weight[kMaxSplits];
  __shared__ float inv_total;
  const int h = blockIdx.x, row = blockIdx.y, D = p.head_dim;
  const int len = seq_len(positions[row], p.max_seq);
  const int chunk = split_chunk(len, p.splits);
  const int active = (len + chunk - 1) / chunk;
  float* out_h = out + (int64_t(row) * p.n_heads + h) * D;
  if (active == 0) {
    for (int d = threadIdx.x; d < D; d += blockDim.x) out_h[d] = __int_as_float(0x7fc00000);
    return;
  }
  const int64_t first = (int64_t(row) * p.n_heads + h) * p.splits;
  const float* ml = part_ml + 2 * first;
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    float m = -INFINITY;
    for (int s = lane; s < active; s += 32) m = fmaxf(m, ml[2 * s]);
    m = warp_max(m);
    float total = 0.f;
    for (int s = lane; s < active; s += 32) {
      const float w = expf(ml[2 * s] - m);
      weight[s] = w;
      total += w * ml[2 * s + 1];
    }
    total = warp_sum(total);
    if (lane == 0) inv_total = 1.f / total;
  }
  __syncthreads();
  const float* o = part_o + first * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float sum = 0.f;
    for (int s = 0; s < active; ++s) sum = fmaf(weight[s], o[int64_t(s) * D + d], sum);
    out_h[d] = sum * inv_total;
  }
}

int sm_count() {
  // Queried once: the process uses one device.
  static const int count = [] {
    int device = 0, n = 0;
    KUIPER_CUDA_CHECK(cudaGetDevice(&device));
    KUIPER_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    return n;
  }();
  return count;
}

}  // namespace

template <class T>
void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
               const Tensor& positions, const AttentionShape& shape, const Tensor& out,
               const DeviceContext& ctx) {
  const int H = shape.n_heads, KVH = shape.n_kv_heads, D = shape.head_dim;
  KUIPER_CHECK(H > 0 && KVH > 0 && D > 0 && H % KVH == 0, "attention: ", H, " heads do not share ",
               KVH, " KV heads evenly (head_dim ", D, ")");
  expect_tensor("attention", "queries", q, DType::kF32);
  expect_tensor("attention", "key cache", k_cache, dtype_of<T>());
  expect_tensor("attention", "value cache", v_cache, dtype_of<T>());
  expect_tensor("attention", "positions", positions, DType::kI32);
  expect_tensor("attention", "output", out, DType::kF32);
  const int64_t n = q.numel() / (int64_t(H) * D), max_seq = k_cache.dim(0);
  expect_numel("attention", "queries", q, n * H * D);
  expect_numel("attention", "output", out, n * H * D);
  expect_numel("attention", "positions", positions, n);
  expect_numel("attention", "key cache", k_cache, max_seq * KVH * D);
  expect_numel("attention", "value cache", v_cache, max_seq * KVH * D);
  KUIPER_CHECK(max_seq <= INT_MAX && n <= INT_MAX, "attention: sizes beyond int range");
  if (n == 0) return;

  Params p{H, KVH, D, H / KVH, int(max_seq), 1, kMaxTile, 1.f / std::sqrt(float(D))};
  // Split the keys while the rows and KV heads alone give fewer than two blocks per SM.
  const int64_t blocks = n * KVH, target = 2 * int64_t(sm_count());
  if (blocks < target) {
    const int64_t useful = std::max<int64_t>(1, (max_seq + kMinChunk - 1) / kMinChunk);
    p.splits = int(std::min<int64_t>({(target + blocks - 1) / blocks, useful, kMaxSplits}));
  }
  while (p.tile > 8 && shared_floats(p.group, D, p.tile) * sizeof(float) > kSharedLimit)
    p.tile /= 2;
  const size_t shared = shared_floats(p.group, D, p.tile) * sizeof(float);
  KUIPER_CHECK(shared <= kSharedLimit, "attention: ", p.group, " query heads per KV head of head_dim ",
               D, " need more shared memory than a block has");

  float* part_ml = nullptr;
  float* part_o = nullptr;
  if (p.splits > 1) {
    const size_t slots = size_t(n) * H * p.splits;
    const size_t ml_floats = (2 * slots + 63) / 64 * 64;  // part_o starts 256-byte aligned
    part_ml = static_cast<float*>(ctx.cuda_workspace((ml_floats + slots * D) * sizeof(float)));
    part_o = part_ml + ml_floats;
  }
  cudaStream_t stream = stream_of(ctx);
  using CT = DeviceType<T>;
  attention_kernel<CT><<<dim3(unsigned(n), unsigned(KVH), unsigned(p.splits)), kThreads, shared,
                         stream>>>(p, q.data<float>(),
                                   reinterpret_cast<const CT*>(k_cache.data<T>()),
                                   reinterpret_cast<const CT*>(v_cache.data<T>()),
                                   positions.data<int32_t>(), out.data<float>(), part_ml, part_o);
  KUIPER_CUDA_CHECK_LAUNCH();
  if (p.splits > 1) {
    attention_combine_kernel<<<dim3(unsigned(H), unsigned(n)), 128, 0, stream>>>(
        p, positions.data<int32_t>(), part_ml, part_o, out.data<float>());
    KUIPER_CUDA_CHECK_LAUNCH();
  }
}

template void attention<float>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const AttentionShape&, const Tensor&, const DeviceContext&);
template void attention<f16>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             const AttentionShape&, const Tensor&, const DeviceContext&);
template void attention<bf16>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const AttentionShape&, const Tensor&, const DeviceContext&);

}  // namespace kuiper::kernels::cuda
