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
// so the keys are split across up to kMaxSplits blocks. Each writes an unnormalized partial
// result with its running max and sum to the workspace and counts itself done on a counter; the
// last block of a (row, KV head) merges the partials (weights exp(m_s - max)) and resets the
// counter, so one launch does it all. The number of splits depends only on the shapes (not on
// the position), so a CUDA graph captured once serves every step: each block reads the sequence
// length from positions on the device and blocks beyond it return at once. Prefill rows give
// enough blocks without splitting.
//
// A position outside the cache cannot throw on the device: that row's output is NaN.
#include <climits>
#include <cmath>
#include <cstdlib>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace kuiper::kernels::cuda {
namespace {

constexpr int kThreads = 256;
// A block's time is a chain of memory latencies and dependent steps, so the split size trades
// the blocks' work against the merge's: at least kMinChunk keys a split (KUIPER_CUDA_ATTN_CHUNK
// overrides it, for measurements) and at most kMaxSplits splits. On TinyLlama's shape (H200,
// 4 KV heads) 32 keys beat 16 and 64 at position 512 (17 splits), and 32 splits of ~63 keys beat
// 63 splits of 32 at position 2000 (NOTES.md).
constexpr int kMinChunk = 32;
constexpr int kMaxSplits = 32;
constexpr int kMaxTile = 64;
constexpr size_t kSharedLimit = 48 * 1024;  // no opt-in needed below this

struct Params {
  int n_heads, n_kv_heads, head_dim, group;
  int max_seq, splits, tile, min_chunk;
  float scale;
  bool vec16;  // cache rows of a head allow 16-byte loads
};

__device__ __forceinline__ int seq_len(int32_t pos, int max_seq) {
  return pos >= 0 && pos < max_seq ? pos + 1 : 0;
}
__device__ __forceinline__ int split_chunk(int len, int splits, int min_chunk) {
  return max(min_chunk, (len + splits - 1) / splits);
}

int min_chunk() {
  static const int chunk = [] {
    const char* env = std::getenv("KUIPER_CUDA_ATTN_CHUNK");
    const int v = env != nullptr ? std::atoi(env) : 0;
    return v > 0 ? v : kMinChunk;
  }();
  return chunk;
}

size_t shared_floats(int group, int head_dim, int tile) {
  return 2 * size_t(group) * head_dim           // queries, accumulators
         + 2 * size_t(tile) * (head_dim + 1)    // key and value tiles, padded rows
         + size_t(group) * tile + 3 * group;    // scores; max, sum, rescale per head
}

// Loads each thread issues before it uses any (tiles, queries, partial results): the block's
// phases are chains of memory latencies, so each should cost about one.
constexpr int kBatch = 4;

// Widens one load unit of the cache (16 bytes, or one element) to fp32.
template <class CT>
__device__ __forceinline__ void widen(const uint4& v, float* out) {
  unpack16<CT>(v, out);
}
template <class CT>
__device__ __forceinline__ void widen(const CT& v, float* out) {
  out[0] = to_f32(v);
}

// Rows [t0, t0 + count) of one KV head's keys and values into padded shared tiles, loaded in
// units U: uint4 (16-byte loads, when the head's row allows them; each thread then widens 4 or 8
// elements) or CT (one element). Each thread issues a batch of key and value loads before it
// stores any.
template <class CT, class U>
__device__ __forceinline__ void load_tiles(float* ks, float* vs, const CT* k_base,
                                           const CT* v_base, int t0, int count, int D,
                                           int row_stride) {
  constexpr int kPer = sizeof(U) / sizeof(CT);  // elements a unit
  const int per_row = D / kPer, total = count * per_row;
  for (int i0 = threadIdx.x; i0 < total; i0 += kBatch * blockDim.x) {
    U kv[kBatch], vv[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = i0 + b * blockDim.x;
      if (i < total) {
        const int r = i / per_row, c = i - r * per_row;
        const int64_t offset = int64_t(t0 + r) * row_stride + c * kPer;
        kv[b] = *reinterpret_cast<const U*>(k_base + offset);
        vv[b] = *reinterpret_cast<const U*>(v_base + offset);
      }
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = i0 + b * blockDim.x;
      if (i >= total) break;
      const int r = i / per_row, c = i - r * per_row;
      float f[kPer];
      widen<CT>(kv[b], f);
#pragma unroll
      for (int k = 0; k < kPer; ++k) ks[r * (D + 1) + c * kPer + k] = f[k];
      widen<CT>(vv[b], f);
#pragma unroll
      for (int k = 0; k < kPer; ++k) vs[r * (D + 1) + c * kPer + k] = f[k];
    }
  }
}

template <class CT>
__global__ void __launch_bounds__(kThreads)
    attention_kernel(Params p, const float* q, const CT* k_cache, const CT* v_cache,
                     const int32_t* positions, float* out, float* part_ml, float* part_o,
                     int* done) {
  allow_dependent_launch();
  grid_dependency_wait();
  extern __shared__ float smem[];
  const int G = p.group, D = p.head_dim, tile = p.tile;
  float* q_s = smem;
  float* acc = q_s + G * D;
  float* ks = acc + G * D;
  float* vs = ks + tile * (D + 1);
  float* sc = vs + tile * (D + 1);
  float* m_s = sc + G * tile;
  float* l_s = m_s + G;
  float* alpha = l_s + G;
  __shared__ bool last;

  const int row = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, warps = blockDim.x >> 5;
  const int len = seq_len(positions[row], p.max_seq);
  const int chunk = split_chunk(len, p.splits, p.min_chunk);
  const int begin = split * chunk, end = min(len, begin + chunk);
  const int q_width = p.n_heads * D, kv_width = p.n_kv_heads * D;
  float* out_group = out + int64_t(row) * q_width + kvh * G * D;  // the group's heads, contiguous
  if (begin >= end) {
    if (len == 0 && split == 0)  // no keys at all: the position was outside the cache
      for (int i = tid; i < G * D; i += blockDim.x) out_group[i] = __int_as_float(0x7fc00000);
    return;  // other empty splits: the merge knows which splits had keys
  }

  // The queries: a first batch in registers, stored once the first tile's loads are out too.
  const float* q_row = q + int64_t(row) * q_width + kvh * G * D;
  float qv[kBatch];
#pragma unroll
  for (int b = 0; b < kBatch; ++b) {
    const int i = tid + b * blockDim.x;
    qv[b] = i < G * D ? q_row[i] : 0.f;
  }
  for (int i = tid + kBatch * blockDim.x; i < G * D; i += blockDim.x) q_s[i] = q_row[i] * p.scale;
  for (int i = tid; i < G * D; i += blockDim.x) acc[i] = 0.f;
  for (int g = tid; g < G; g += blockDim.x) {
    m_s[g] = -INFINITY;
    l_s[g] = 0.f;
  }
  const CT* k_base = k_cache + kvh * D;
  const CT* v_base = v_cache + kvh * D;

  for (int t0 = begin; t0 < end; t0 += tile) {
    const int cnt = min(tile, end - t0);
    __syncthreads();  // the previous tile's readers are done with ks, vs and sc
    if (p.vec16) load_tiles<CT, uint4>(ks, vs, k_base, v_base, t0, cnt, D, kv_width);
    else load_tiles<CT, CT>(ks, vs, k_base, v_base, t0, cnt, D, kv_width);
    if (t0 == begin) {
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int i = tid + b * blockDim.x;
        if (i < G * D) q_s[i] = qv[b] * p.scale;
      }
    }
    __syncthreads();
    for (int i = tid; i < G * cnt; i += blockDim.x) {
      const int g = i / cnt, r = i - g * cnt;
      const float* qg = q_s + g * D;
      const float* kr = ks + r * (D + 1);
      float s = 0.f;
      for (int d = 0; d < D; ++d) s = fmaf(qg[d], kr[d], s);
      sc[g * tile + r] = s;
    }
    __syncthreads();
    for (int g = warp; g < G; g += warps) {  // online softmax, one warp per head
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
      __syncwarp();  // every lane has read m_s[g] before lane 0 replaces it
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
      for (int r = 0; r < cnt; ++r) o = fmaf(pg[r], vs[r * (D + 1) + d], o);
      acc[i] = o;
    }
  }

  if (p.splits == 1) {
    for (int i = tid; i < G * D; i += blockDim.x) out_group[i] = acc[i] / l_s[i / D];
    return;
  }

  // Partials of this split: slot (row, head, split).
  const int64_t first = (int64_t(row) * p.n_heads + kvh * G) * p.splits;  // head kvh*G, split 0
  for (int i = tid; i < G * D; i += blockDim.x) {
    const int g = i / D, d = i - g * D;
    const int64_t slot = first + int64_t(g) * p.splits + split;
    part_o[slot * D + d] = acc[i];
    if (d == 0) {
      part_ml[2 * slot] = m_s[g];
      part_ml[2 * slot + 1] = l_s[g];
    }
  }
  // Count this split done; the last one to arrive merges (threadfence reduction).
  const int active = (len + chunk - 1) / chunk;
  __threadfence();
  __syncthreads();
  if (tid == 0) {
    int* counter = done + row * p.n_kv_heads + kvh;
    last = atomicAdd(counter, 1) == active - 1;
    if (last) *counter = 0;  // ready for the next launch (all splits have counted)
  }
  __syncthreads();
  if (!last) return;
  __threadfence();

  // Merge: weight[g][s] = exp(m_s - max_s m_s) in the key tile's memory, then the weighted sum.
  // Each lane holds the (max, sum) of up to kMaxSplits / 32 of its warp's head's splits.
  float* weight = ks;  // G * active <= G * kMaxSplits floats fit: checked on the host
  static_assert(kMaxSplits % 32 == 0);
  constexpr int kPerLane = kMaxSplits / 32;
  for (int g = warp; g < G; g += warps) {
    const float* ml = part_ml + 2 * (first + int64_t(g) * p.splits);
    float ms[kPerLane], ls[kPerLane];
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      const int s = lane + 32 * k;
      ms[k] = s < active ? __ldcg(ml + 2 * s) : -INFINITY;
      ls[k] = s < active ? __ldcg(ml + 2 * s + 1) : 0.f;
    }
    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) m = fmaxf(m, ms[k]);
    m = warp_max(m);
    float total = 0.f;
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      const int s = lane + 32 * k;
      if (s < active) {
        const float w = expf(ms[k] - m);
        weight[g * active + s] = w;
        total += w * ls[k];
      }
    }
    total = warp_sum(total);
    if (lane == 0) alpha[g] = 1.f / total;
  }
  __syncthreads();
  constexpr int kMergeBatch = 4 * kBatch;  // partial results in flight per thread
  for (int i = tid; i < G * D; i += blockDim.x) {
    const int g = i / D, d = i - g * D;
    const float* o = part_o + (first + int64_t(g) * p.splits) * D + d;
    float sum = 0.f;
    for (int s0 = 0; s0 < active; s0 += kMergeBatch) {
      float v[kMergeBatch];
#pragma unroll
      for (int k = 0; k < kMergeBatch; ++k)
        v[k] = s0 + k < active ? __ldcg(o + int64_t(s0 + k) * D) : 0.f;
#pragma unroll
      for (int k = 0; k < kMergeBatch; ++k)
        if (s0 + k < active) sum = fmaf(weight[g * active + s0 + k], v[k], sum);
    }
    out_group[i] = sum * alpha[g];
  }
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

  const bool vec16 = D % int(16 / sizeof(T)) == 0 && aligned16(k_cache.raw_data()) &&
                     aligned16(v_cache.raw_data());
  Params p{H, KVH, D, H / KVH, int(max_seq), 1, kMaxTile, min_chunk(), 1.f / std::sqrt(float(D)),
           vec16};
  // Split the keys while the rows and KV heads alone give fewer than two blocks per SM.
  const int64_t blocks = n * KVH, target = 2 * int64_t(sm_count());
  if (blocks < target) {
    const int64_t useful = std::max<int64_t>(1, (max_seq + p.min_chunk - 1) / p.min_chunk);
    p.splits = int(std::min<int64_t>({(target + blocks - 1) / blocks, useful, kMaxSplits}));
  }
  while (p.tile > 8 && shared_floats(p.group, D, p.tile) * sizeof(float) > kSharedLimit)
    p.tile /= 2;
  // The merge keeps a weight per (head, split) in the key tile's memory.
  p.splits = std::min(p.splits, p.tile * (D + 1) / p.group);
  const size_t shared = shared_floats(p.group, D, p.tile) * sizeof(float);
  KUIPER_CHECK(shared <= kSharedLimit, "attention: ", p.group,
               " query heads per KV head of head_dim ", D,
               " need more shared memory than a block has");

  float* part_ml = nullptr;
  float* part_o = nullptr;
  int* done = nullptr;
  if (p.splits > 1) {
    // Counters (n x KV heads, kept at zero between launches), then the partial results.
    const size_t slots = size_t(n) * H * p.splits;
    const size_t ml_floats = (2 * slots + 63) / 64 * 64;  // part_o starts 256-byte aligned
    Workspace ws = workspace(ctx, (ml_floats + slots * D) * sizeof(float));
    KUIPER_CHECK(size_t(n) * KVH * sizeof(int) <= kWorkspaceCounterBytes,
                 "attention: too many counters");
    done = ws.counters;
    part_ml = static_cast<float*>(ws.scratch);
    part_o = part_ml + ml_floats;
  }
  using CT = DeviceType<T>;
  launch_with(pdl_attention(), attention_kernel<CT>,
              dim3(unsigned(n), unsigned(KVH), unsigned(p.splits)), kThreads, shared,
              stream_of(ctx), p, q.data<float>(), reinterpret_cast<const CT*>(k_cache.data<T>()),
              reinterpret_cast<const CT*>(v_cache.data<T>()), positions.data<int32_t>(),
              out.data<float>(), part_ml, part_o, done);
}

template void attention<float>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const AttentionShape&, const Tensor&, const DeviceContext&);
template void attention<f16>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             const AttentionShape&, const Tensor&, const DeviceContext&);
template void attention<bf16>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const AttentionShape&, const Tensor&, const DeviceContext&);

}  // namespace kuiper::kernels::cuda
