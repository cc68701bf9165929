// Causal attention over the KV cache, for decoding (n == 1) and prefill (n > 1) alike:
//   out[i, h] = softmax(q[i, h] . K[0..p, g]^T / sqrt(head_dim)) . V[0..p, g],  p = positions[i]
//
// Two kernels. Both serve, per block, the query heads that share one KV head (grouped-query
// attention reads each key and value once per group), and both read the sequence length from
// positions on the device, so a CUDA graph captured once serves every step. A position outside
// the cache cannot throw on the device: that row's output is NaN.
//
// The tiled kernel (prefill, and decoding where clusters are not available): a block serves one
// query row, one KV head and one split of the keys. It walks its keys in tiles staged in shared
// memory (rows padded by one float, so that threads reading one column hit distinct banks):
// scores for every (head, key) of the tile, an online softmax update per head (one warp per
// head), then the weighted sum of the value tile into per-head accumulators. Any head_dim works.
// A single query row has too little work for one block per KV head, so the keys are split across
// up to kMaxSplits blocks (flash-decoding); each writes an unnormalized partial result with its
// running max and sum to the workspace and counts itself done on a counter; the last block of a
// (row, KV head) merges the partials and resets the counter. The number of splits depends only
// on the shapes; blocks beyond the sequence return at once.
//
// The cluster kernel (few rows, compute capability 9.0+, 16-byte cache rows, up to 16 query heads
// a KV head and head_dim up to 128): a thread-block cluster of C blocks (up to 16) serves one
// (row, KV head); block b takes the b-th of C equal shares of the keys. Each block copies its
// keys and values into shared memory with cp.async, all of them in flight at once (two stages
// when a share outgrows a stage), while it stages the scaled queries. One warp (or `parts`
// warps, each a share of the 32-key slabs) serves one query head: lane i scores key i of each of
// its slabs (the query read from shared memory as a broadcast, the key row conflict-free thanks
// to a 16-byte pad), a warp-level online softmax, then the value rows weighted by the
// probabilities (shuffled from the lane that owns each key) into the lane's dims. Block b merges
// and writes the b-th 1/C slice of the group's outputs: each warp pushes its partial result
// (max, sum, unnormalized dims) straight into the receive buffers of the blocks that merge its
// dims (distributed shared memory stores), one cluster barrier, then each block merges from its
// own shared memory. No workspace, no counters, no global round trip, no remote loads. Where
// the launch's blocks fit one an SM, each block asks for enough shared memory to get an SM to
// itself (faster on TinyLlama's shape: NOTES.md). With one row, the merge also writes the
// output's int8 codes for wo's GEMV (kernels.h: PagedAttentionFn's out_codes), so that wo's
// blocks do not each quantize it again. kernels/cuda/attention.h overrides the choices.
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/codes.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/gemv_trace.cuh"
#include "kernels/cuda/key_rows.cuh"
#include "kernels/cuda/once_per_device.cuh"
#include "kernels/cuda/paged_prefill.h"
#include "kernels/paged_batch.h"

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
  int splits, tile, min_chunk;
  float scale;
  bool vec16;  // cache rows of a head allow 16-byte loads
};

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

// NaN in every element of a load unit: what a key outside the cache reads as.
template <class CT, class U>
__device__ __forceinline__ U nan_unit() {
  constexpr uint32_t word = sizeof(CT) == 4                       ? 0x7fc00000u
                            : std::is_same_v<CT, __half>           ? 0x7e007e00u
                                                                   : 0x7fc07fc0u;
  if constexpr (std::is_same_v<U, uint4>) {
    return make_uint4(word, word, word, word);
  } else {
    U u;
    memcpy(&u, &word, sizeof(U));
    return u;
  }
}

// Keys [t0, t0 + count) of one KV head's keys and values (key t at cache row row_of(t)) into
// padded shared tiles, loaded in units U: uint4 (16-byte loads, when the head's row allows them;
// each thread then widens 4 or 8 elements) or CT (one element). Each thread issues a batch of key
// and value loads before it stores any.
template <class CT, class U, class RowOf>
__device__ __forceinline__ void load_tiles(float* ks, float* vs, const CT* k_base,
                                           const CT* v_base, const RowOf& row_of, int t0,
                                           int count, int D, int row_stride) {
  constexpr int kPer = sizeof(U) / sizeof(CT);  // elements a unit
  const int per_row = D / kPer, total = count * per_row;
  for (int i0 = threadIdx.x; i0 < total; i0 += kBatch * blockDim.x) {
    U kv[kBatch], vv[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = i0 + b * blockDim.x;
      if (i < total) {
        const int r = i / per_row, c = i - r * per_row;
        const int64_t at = row_of(t0 + r);
        if (at >= 0) {
          kv[b] = *reinterpret_cast<const U*>(k_base + at * row_stride + c * kPer);
          vv[b] = *reinterpret_cast<const U*>(v_base + at * row_stride + c * kPer);
        } else {
          kv[b] = vv[b] = nan_unit<CT, U>();
        }
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

template <class CT, class Keys>
__global__ void __launch_bounds__(kThreads)
    attention_kernel(Params p, const float* q, const CT* k_cache, const CT* v_cache, Keys keys,
                     float* out, float* part_ml, float* part_o, int* done) {
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
  const int len = keys.length(row);
  if (len < 0) return;  // another kernel's row
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
  const auto row_of = keys.rows_of(row);

  for (int t0 = begin; t0 < end; t0 += tile) {
    const int cnt = min(tile, end - t0);
    __syncthreads();  // the previous tile's readers are done with ks, vs and sc
    if (p.vec16) load_tiles<CT, uint4>(ks, vs, k_base, v_base, row_of, t0, cnt, D, kv_width);
    else load_tiles<CT, CT>(ks, vs, k_base, v_base, row_of, t0, cnt, D, kv_width);
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

// ---- Decoding: one thread-block cluster per (row, KV head) ----

constexpr int kSlabs = 4;            // 32-key slabs a warp scores together in one round
constexpr int kMaxDecodeWarps = 16;  // warps a block, at most (the launch bound)
constexpr int kMaxCluster = 16;      // blocks a cluster, at most (16 is a non-portable size)
constexpr size_t kStageBudget = 96 * 1024;  // bytes of keys and values one stage holds, at most
// Shared memory a block asks for to have an SM to itself: two would need 2 x (116 + 1) KB, more
// than an H100/H200 SM's 228 KB.
constexpr size_t kSpreadShared = 116 * 1024;

struct DecodeParams {
  int n_heads, n_kv_heads, head_dim, group;
  int parts;       // warps a query head; the block has parts * group warps
  int stages;      // pipeline stages: 1, or 2 when a block's share can exceed one stage
  int stage_keys;  // keys a stage holds (a multiple of 32)
  int row_stride;  // bytes between cache rows in shared memory: the row's bytes + 16
  int units;       // 16-byte units in one head's cache row
  float scale;
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// The address of `local` (this block's shared memory) in block `rank` of the cluster.
__device__ __forceinline__ uint32_t cluster_address(const void* local, int rank) {
  uint32_t out;
  asm("mapa.shared::cluster.u32 %0, %1, %2;"
      : "=r"(out)
      : "r"(uint32_t(__cvta_generic_to_shared(local))), "r"(rank));
  return out;
}
__device__ __forceinline__ void store_cluster(uint32_t address, float v) {
  asm volatile("st.shared::cluster.f32 [%0], %1;" ::"r"(address), "f"(v) : "memory");
}
#endif

// Grid (C, KV heads, rows), clusters of (C, 1, 1); parts * group warps a block. DJ = ceil(D / 32)
// dims a lane (d = lane + 32 j).
template <class CT, int DJ, class Keys>
__device__ __forceinline__ void decode_attention(const DecodeParams& p, const float* q,
                                                 const CT* k_cache, const CT* v_cache,
                                                 const Keys& keys, float* out,
                                                 int8_t* out_codes, const FlagSync& sync,
                                                 unsigned long long* const trace[3]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  gemv_stamp(trace[0], kStartMin, true);
  __cluster_barrier_arrive_relaxed();  // this block has started (waited on before the pushes)
  allow_dependent_launch();
  extern __shared__ __align__(16) unsigned char decode_smem[];
  unsigned char* const smem = decode_smem;
  constexpr int kPer = 16 / sizeof(CT);  // elements a 16-byte unit
  const int G = p.group, D = p.head_dim, P = p.parts, E = G * D;
  const int C = gridDim.x, rank = blockIdx.x;  // a cluster spans x
  const int kvh = blockIdx.y, row = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t q_width = int64_t(p.n_heads) * D;
  const int slice = (E + C - 1) / C, e0 = min(E, rank * slice), e1 = min(E, e0 + slice);

  // Before the wait for the kernel before (the q/k/v projection, which writes the queries and
  // this step's keys and values): what only the host wrote, before the step's first kernel.
  // The row's length and the cache rows of the first stages' keys (positions, block tables),
  // which were a chain of round trips after the wait (NOTES.md).
  const int len = keys.length(row);
  const int chunk = (max(len, 0) + C - 1) / C;
  const int b0 = min(max(len, 0), rank * chunk), nkeys = min(max(len, 0), b0 + chunk) - b0;
  const int rounds = (nkeys + p.stage_keys - 1) / p.stage_keys;
  const int stage_bytes = 2 * p.stage_keys * p.row_stride;  // keys, then values
  float* q_s = reinterpret_cast<float*>(smem + p.stages * stage_bytes);
  float* recv_m = q_s + E;  // [C * parts][slice] each: the partials of this block's slice
  float* recv_l = recv_m + C * P * slice;
  float* recv_o = recv_l + C * P * slice;
  int* key_rows = reinterpret_cast<int*>(recv_o + C * P * slice);  // [stages * stage_keys]
  const auto row_of = len > 0 ? keys.rows_of(row) : decltype(keys.rows_of(row)){};
  const int located = min(nkeys, p.stages * p.stage_keys);
  for (int k = tid; k < located; k += blockDim.x) key_rows[k] = int(row_of(b0 + k));
  __syncthreads();  // key_rows are in
  dependency_wait(sync);
  gemv_stamp(trace[0], kWaitMin, true);
  if (len < 0) return;  // another kernel's row: the whole cluster returns
  float* out_group = out + row * q_width + int64_t(kvh) * E;  // the group's heads, contiguous
  if (len == 0) {  // the whole cluster returns here: its position is outside the cache
    const float nan = __int_as_float(0x7fc00000);  // codes too: their scales become NaN
    for (int base = e0 + (tid & ~31); base < e1; base += blockDim.x) {
      const int e = base + lane;
      if (e < e1) out_group[e] = nan;
      if (out_codes != nullptr)
        write_input_code(nan, 1.f, kvh * E + e, e < e1, p.n_heads * D, out_codes);
    }
    return;
  }
  // The queries into registers first (each thread at most DJ: E / threads <= D / 32), their
  // round trip under the copy loop's.
  const float* q_group = q + row * q_width + int64_t(kvh) * E;
  float q_in[DJ];
#pragma unroll
  for (int j = 0; j < DJ; ++j) {
    const int i = tid + j * int(blockDim.x);
    q_in[j] = i < E ? q_group[i] : 0.f;
  }

  const int64_t kv_stride = int64_t(p.n_kv_heads) * D;
  const CT* k_head = k_cache + int64_t(kvh) * D;
  const CT* v_head = v_cache + int64_t(kvh) * D;
  gemv_stamp(trace[2], kStartMin, true);
  // Round r's keys and values into stage r % stages, one commit group a round (empty past the
  // last, so that the group count stays uniform). Thread t copies 16-byte unit t, t + threads,
  // ... of the round's key rows, then the same of its value rows: (row, unit) steps along
  // without a division a copy (the loop's integer divisions were a quarter of the kernel's
  // instructions on Llama-3.1-8B's shape, ncu).
  const int units = p.units, first_row = tid / units, first_unit = tid - first_row * units;
  const int step_rows = int(blockDim.x) / units, step_units = int(blockDim.x) - step_rows * units;
  auto issue = [&](int r) {
    if (r < rounds) {
      unsigned char* st = smem + (r % p.stages) * stage_bytes;
      const int k0 = r * p.stage_keys, cnt = min(p.stage_keys, nkeys - k0);
      for (int half = 0; half < 2; ++half) {
        const CT* head = half ? v_head : k_head;
        unsigned char* rows = st + (half ? p.stage_keys : 0) * p.row_stride;
        for (int kr = first_row, u = first_unit; kr < cnt;) {
          unsigned char* dst = rows + kr * p.row_stride + u * 16;
          const int64_t at = r < p.stages ? key_rows[k0 + kr] : row_of(b0 + k0 + kr);
          if (at >= 0) cp_async16(dst, head + at * kv_stride + u * kPer);
          else *reinterpret_cast<uint4*>(dst) = nan_unit<CT, uint4>();
          kr += step_rows;
          u += step_units;
          if (u >= units) u -= units, ++kr;
        }
      }
    }
    cp_async_commit();
  };
  issue(0);
  if (p.stages > 1) issue(1);
  gemv_stamp(trace[2], kWaitMin, true);
#pragma unroll
  for (int j = 0; j < DJ; ++j) {
    const int i = tid + j * int(blockDim.x);
    if (i < E) q_s[i] = q_in[j] * p.scale;
  }
  gemv_stamp(trace[2], kStagedMax, false);

  const int g = warp % G, part = warp / G;
  const float* qg = q_s + g * D;
  float m = -INFINITY, l = 0.f;  // l: this lane's share of the sum
  float acc[DJ];
#pragma unroll
  for (int j = 0; j < DJ; ++j) acc[j] = 0.f;
  for (int r = 0; r < rounds; ++r) {
    if (p.stages > 1) cp_async_wait<1>();
    else cp_async_wait<0>();
    if (r == 0) gemv_stamp(trace[2], kEndMin, true);
    __syncthreads();  // the stage (and on the first round the queries) is in
    if (r == 0) gemv_stamp(trace[0], kStagedMax, false);
    const unsigned char* ks = smem + (r % p.stages) * stage_bytes;
    const unsigned char* vs = ks + p.stage_keys * p.row_stride;
    const int cnt = min(p.stage_keys, nkeys - r * p.stage_keys);
    // Scores: slab i of this warp is the round's slab part + i * parts; lane = key in the slab.
    // The warp's slabs that hold keys, 0 to kSlabs, are a constant of the loop below (a switch),
    // so that it does not run the others predicated off (most of the kernel's instructions at
    // short contexts, ncu).
    float s[kSlabs];
    const unsigned char* krow[kSlabs];
#pragma unroll
    for (int i = 0; i < kSlabs; ++i) {
      s[i] = 0.f;
      krow[i] = ks + min((part + i * P) * 32 + lane, cnt - 1) * p.row_stride;
    }
    // Two sums a slab (even and odd elements), halving the dependent FMA chain of D.
    auto score = [&]<int kActive>() {
      float odd[kActive];
#pragma unroll
      for (int i = 0; i < kActive; ++i) odd[i] = 0.f;
#pragma unroll 2
      for (int u = 0; u < p.units; ++u) {
        float qf[kPer];
#pragma unroll
        for (int c = 0; c < kPer; c += 4) {
          const float4 v = *reinterpret_cast<const float4*>(qg + u * kPer + c);
          qf[c] = v.x, qf[c + 1] = v.y, qf[c + 2] = v.z, qf[c + 3] = v.w;
        }
#pragma unroll
        for (int i = 0; i < kActive; ++i) {
          float kf[kPer];
          unpack16<CT>(*reinterpret_cast<const uint4*>(krow[i] + u * 16), kf);
#pragma unroll
          for (int c = 0; c < kPer; c += 2) {
            s[i] = fmaf(qf[c], kf[c], s[i]);
            odd[i] = fmaf(qf[c + 1], kf[c + 1], odd[i]);
          }
        }
      }
#pragma unroll
      for (int i = 0; i < kActive; ++i) s[i] += odd[i];
    };
    const int round_slabs = (cnt + 31) / 32;
    switch (part < round_slabs ? min(kSlabs, (round_slabs - part + P - 1) / P) : 0) {
      case 1: score.template operator()<1>(); break;
      case 2: score.template operator()<2>(); break;
      case 3: score.template operator()<3>(); break;
      case 4: score.template operator()<4>(); break;
      default: break;
    }
    static_assert(kSlabs == 4, "the switch above takes 1 to 4 slabs");
    if (r == 0) gemv_stamp(trace[1], kStartMin, true);
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < kSlabs; ++i) {
      if ((part + i * P) * 32 + lane >= cnt) s[i] = -INFINITY;
      mx = fmaxf(mx, s[i]);
    }
    const float m_new = fmaxf(m, warp_max(mx));
    if (m_new != -INFINITY) {  // warp-uniform: this warp has had keys
      const float alpha = expf(m - m_new);  // 0 while m is -inf
      l *= alpha;
#pragma unroll
      for (int j = 0; j < DJ; ++j) acc[j] *= alpha;
#pragma unroll
      for (int i = 0; i < kSlabs; ++i) {
        s[i] = expf(s[i] - m_new);  // 0 for keys past the round's end
        l += s[i];
      }
      m = m_new;
#pragma unroll
      for (int i = 0; i < kSlabs; ++i) {
        const int base = (part + i * P) * 32;
        if (base >= cnt) continue;
        const int nk = min(32, cnt - base);
        const unsigned char* vrow = vs + base * p.row_stride;
#pragma unroll 4
        for (int k = 0; k < nk; ++k, vrow += p.row_stride) {
          const float pk = __shfl_sync(0xffffffffu, s[i], k);
          const CT* vr = reinterpret_cast<const CT*>(vrow);
#pragma unroll
          for (int j = 0; j < DJ; ++j) {
            const int d = lane + 32 * j;
            if (j + 1 < DJ || d < D) acc[j] = fmaf(pk, to_f32(vr[d]), acc[j]);
          }
        }
      }
    }
    if (r + p.stages < rounds) __syncthreads();  // all warps are done with this stage
    issue(r + p.stages);
  }

  // Push this warp's partial result (max, sum, its head's dims) into the blocks that merge those
  // dims: partial qi = rank * parts + part of element e goes to block e / slice, slot
  // (qi, e % slice) of its receive buffers. Once every block has started (the barrier's first
  // phase, arrived at the top), the stores go out; the second phase makes them visible.
  l = warp_sum(l);
  const int Q = C * P, qi = rank * P + part;
  gemv_stamp(trace[1], kWaitMin, true);
  __cluster_barrier_wait();
#pragma unroll
  for (int j = 0; j < DJ; ++j) {
    const int d = lane + 32 * j;
    if (d < D) {
      const int e = g * D + d, owner = C == 1 ? 0 : e / slice;
      const int at = qi * slice + (e - owner * slice);
      store_cluster(cluster_address(recv_m + at, owner), m);
      store_cluster(cluster_address(recv_l + at, owner), l);
      store_cluster(cluster_address(recv_o + at, owner), acc[j]);
    }
  }
  __cluster_barrier_arrive();  // release: the pushes
  __cluster_barrier_wait();    // acquire: every partial of this block's slice is in
  gemv_stamp(trace[1], kStagedMax, false);

  // Merge this block's slice of the group's outputs over the C * parts partials, all local now.
  // Whole warps go round (write_input_code shuffles within blocks of 8 lanes; the slices are
  // whole blocks of 8 where out_codes is given).
  for (int base = e0 + (tid & ~31); base < e1; base += blockDim.x) {
    const int e = base + lane, at = e - e0;
    const bool valid = e < e1;
    float value = 0.f;
    if (valid) {
      float M = -INFINITY;
      for (int k = 0; k < Q; ++k) M = fmaxf(M, recv_m[k * slice + at]);
      float num = 0.f, den = 0.f;
#pragma unroll 4
      for (int k = 0; k < Q; ++k) {
        const float w = expf(recv_m[k * slice + at] - M);  // 0 for partials without keys
        num = fmaf(w, recv_o[k * slice + at], num);
        den = fmaf(w, recv_l[k * slice + at], den);
      }
      value = num / den;
      out_group[e] = value;
    }
    if (out_codes != nullptr)
      write_input_code(value, 1.f, kvh * E + e, valid, p.n_heads * D, out_codes);
  }
#endif
}

// Measurement only (KUIPER_CUDA_GEMV_TRACE=1, gemv_trace.cuh): three slots of the GEMV trace
// (thread 0 of each block stamps), printed as launches of 0 x 1, 0 x 2 and 0 x 3
// rows, in the columns start | wait | staged | end. 0 x 1: start, wait passed, first stage
// in (after its barrier), end; 0 x 2: scores done, values done (the pushes' start), partials
// in (the merge's start), end; 0 x 3: keys located, copies issued, queries staged, copies
// arrived (before the barrier).
struct AttentionTrace {
  unsigned long long* slot[3];
};

template <class CT, int DJ, class Keys>
__global__ void __launch_bounds__(kMaxDecodeWarps * 32, 1)
    decode_attention_kernel(DecodeParams p, const float* q, const CT* k_cache, const CT* v_cache,
                            Keys keys, float* out, int8_t* out_codes, FlagSync sync,
                            AttentionTrace trace) {
  decode_attention<CT, DJ, Keys>(p, q, k_cache, v_cache, keys, out, out_codes, sync, trace.slot);
  gemv_stamp(trace.slot[0], kEndMin, true);
  gemv_stamp(trace.slot[1], kEndMin, true);
  signal_done(sync);
}

AttentionDecodeConfig& decode_config_storage() {
  static AttentionDecodeConfig config = [] {
    AttentionDecodeConfig c;
    if (const char* env = std::getenv("KUIPER_CUDA_ATTN")) {
      if (std::strcmp(env, "split") == 0) c.kernel = AttentionDecodeConfig::kSplit;
      if (std::strcmp(env, "cluster") == 0) c.kernel = AttentionDecodeConfig::kCluster;
    }
    if (const char* env = std::getenv("KUIPER_CUDA_ATTN_CLUSTER")) c.cluster = std::atoi(env);
    if (const char* env = std::getenv("KUIPER_CUDA_ATTN_WARPS")) c.warps = std::atoi(env);
    if (const char* env = std::getenv("KUIPER_CUDA_ATTN_SPREAD"))
      c.spread = std::atoi(env) != 0 ? 1 : 0;
    if (const char* env = std::getenv("KUIPER_CUDA_ATTN_STAGE")) c.stage_keys = std::atoi(env);
    if (const char* env = std::getenv("KUIPER_CUDA_ATTN_TC")) c.tensor_cores = std::atoi(env);
    if (const char* env = std::getenv("KUIPER_CUDA_ATTN_TC_WARPS")) {
      const int warps = std::atoi(env);
      c.short_warps = warps == 2 || warps == 4 ? warps : 0;
    }
    return c;
  }();
  return config;
}

int device_attribute(cudaDeviceAttr attribute) {
  int device = 0, value = 0;
  KUIPER_CUDA_CHECK(cudaGetDevice(&device));
  KUIPER_CUDA_CHECK(cudaDeviceGetAttribute(&value, attribute, device));
  return value;
}

bool clusters_supported() {
  static const bool yes = device_attribute(cudaDevAttrComputeCapabilityMajor) >= 9 &&
                          device_attribute(cudaDevAttrClusterLaunch) != 0;
  return yes;
}

size_t shared_optin() {
  static const size_t bytes = size_t(device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin));
  return bytes;
}

struct DecodePlan {
  DecodeParams p;
  int cluster, threads;
  size_t shared;
};

size_t decode_shared(const DecodeParams& p, int cluster) {
  const size_t E = size_t(p.group) * p.head_dim, slice = (E + cluster - 1) / cluster;
  return size_t(p.stages) * 2 * p.stage_keys * p.row_stride +
         (E + 3 * size_t(cluster) * p.parts * slice) * sizeof(float) +
         size_t(p.stages) * p.stage_keys * sizeof(int);  // the first stages' key rows
}

// The most clusters of this launch that fit on the GPU at once (0: none), queried once a shape.
int active_clusters(const void* kernel, const DecodePlan& plan) {
  static std::mutex mutex;
  static std::map<std::tuple<const void*, int, int, size_t>, int> known;
  const auto key = std::make_tuple(kernel, plan.cluster, plan.threads, plan.shared);
  const std::lock_guard lock(mutex);
  if (const auto it = known.find(key); it != known.end()) return it->second;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim.x = unsigned(plan.cluster);
  attribute.val.clusterDim.y = 1;
  attribute.val.clusterDim.z = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(unsigned(plan.cluster), 1, 1);
  config.blockDim = dim3(unsigned(plan.threads), 1, 1);
  config.dynamicSmemBytes = plan.shared;
  config.attrs = &attribute;
  config.numAttrs = 1;
  int clusters = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess) {
    (void)cudaGetLastError();  // an unsupported size is an answer, not a failure
    clusters = 0;
  }
  known.emplace(key, clusters);
  return clusters;
}

template <class CT, int DJ, class Keys>
const void* prepared_decode_kernel() {
  auto* k = decode_attention_kernel<CT, DJ, Keys>;
  static OncePerDevice prepared;
  prepared.run([k] {
    KUIPER_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           int(shared_optin())));
    KUIPER_CUDA_CHECK(
        cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  });
  return reinterpret_cast<const void*>(k);
}

template <class CT, class Keys>
const void* decode_kernel_for(int head_dim) {
  switch ((head_dim + 31) / 32) {
    case 1: return prepared_decode_kernel<CT, 1, Keys>();
    case 2: return prepared_decode_kernel<CT, 2, Keys>();
    case 3: return prepared_decode_kernel<CT, 3, Keys>();
    default: return prepared_decode_kernel<CT, 4, Keys>();
  }
}

// The cluster kernel's launch for n rows of at most max_keys keys each, or false where the tiled
// kernel serves (see the top).
template <class CT, class Keys>
bool plan_decode(int64_t n, int H, int KVH, int D, int64_t max_keys, const void* k, const void* v,
                 DecodePlan& plan) {
  const AttentionDecodeConfig config = decode_config_storage();
  const int G = H / KVH;
  if (config.kernel == AttentionDecodeConfig::kSplit || !clusters_supported()) return false;
  if (G > kMaxDecodeWarps || D > 128 || (D * sizeof(CT)) % 16 != 0 || !aligned16(k) ||
      !aligned16(v) || n > 65535)
    return false;
  const int64_t blocks = n * KVH, target = 2 * int64_t(sm_count());
  // Many rows (a batch of decoding sequences): one block a (row, KV head) of the cluster kernel,
  // with stages small enough for several blocks an SM, beat the tiled kernel on Llama-3.1-8B's
  // shape at 64 rows. fp32 caches keep the tiled kernel there, as it also serves their prefill
  // rows (16-bit caches send those to paged_prefill.cu).
  const bool many_rows = blocks >= target;
  if (config.kernel == AttentionDecodeConfig::kAuto && many_rows && sizeof(CT) == 4) return false;

  DecodeParams& p = plan.p;
  p.n_heads = H, p.n_kv_heads = KVH, p.head_dim = D, p.group = G;
  p.scale = 1.f / std::sqrt(float(D));
  const int warps = std::clamp(config.warps > 0 ? config.warps : 8, 1, kMaxDecodeWarps);
  p.parts = std::max(1, warps / G);
  plan.threads = 32 * p.parts * G;
  p.units = int(D * sizeof(CT) / 16);
  p.row_stride = int(D * sizeof(CT)) + 16;
  const int key_bytes = 2 * p.row_stride;
  int stage_cap = std::min<int>(32 * kSlabs * p.parts, int(kStageBudget / key_bytes) / 32 * 32);
  if (config.stage_keys > 0) {
    stage_cap = std::max(32, config.stage_keys / 32 * 32);
  } else if (many_rows) {
    // Two stages of keys and values in a third of an SM's shared memory: the stages are sized
    // for the context (the graph's bound), while each row's keys are few, so a block needs
    // little, and a whole SM for one block made the blocks run in waves. Llama-3.1-8B's shape
    // at 64 rows (fp16 cache): 32 keys a stage 8589 tok/s, 64 keys (this rule) 9206.
    stage_cap = std::min(stage_cap, std::max(32, int(shared_optin() / 3 / (2 * key_bytes)) / 32 * 32));
  }
  if (stage_cap < 32) return false;

  // Blocks a cluster: a power of two up to 16 (or as configured), no more than the GPU wants
  // (2 per SM over all clusters) and no fewer than 32 keys a block at the cache's end.
  int cluster = 1;
  if (config.cluster > 0) {
    while (cluster * 2 <= std::min(config.cluster, kMaxCluster)) cluster *= 2;
  } else {
    while (cluster * 2 <= kMaxCluster && blocks * cluster * 2 <= target &&
           int64_t(cluster) * 2 * 32 <= max_keys)
      cluster *= 2;
  }
  const void* kernel = decode_kernel_for<CT, Keys>(D);
  for (; cluster >= 1; cluster /= 2) {
    // Keys a block at most (more, past max_keys, take more rounds of the same stages).
    const int64_t share = (std::max<int64_t>(max_keys, 1) + cluster - 1) / cluster;
    p.stage_keys = int(std::min<int64_t>(stage_cap, (share + 31) / 32 * 32));
    p.stages = share > p.stage_keys ? 2 : 1;
    plan.cluster = cluster;
    plan.shared = decode_shared(p, cluster);
    while (plan.shared > shared_optin() && p.stage_keys > 32) {
      p.stage_keys -= 32;
      p.stages = 2;
      plan.shared = decode_shared(p, cluster);
    }
    if (plan.shared > shared_optin()) return false;
    // Spread: one block an SM, by asking for more than half an SM's shared memory. By default
    // where the launch's blocks fit one an SM: on TinyLlama's shape (16 blocks a cluster) this
    // took attention from 109 to 98 us a step at position 512 and from 161 to 133 at 2000
    // (NOTES.md). Falls back to packed blocks where the spread clusters do not all fit at once.
    const size_t packed = plan.shared;
    const bool spread =
        config.spread > 0 || (config.spread < 0 && blocks * cluster <= int64_t(sm_count()));
    for (int s = spread ? 1 : 0; s >= 0; --s) {
      plan.shared = s ? std::max(packed, std::min(kSpreadShared, shared_optin())) : packed;
      // All clusters of the launch on the GPU at once, where the configuration leaves the choice.
      const int fit = active_clusters(kernel, plan);
      if (fit >= 1 && (config.cluster > 0 || fit >= blocks || cluster == 1)) return true;
      if (config.spread > 0) break;  // asked for: a smaller cluster before packed blocks
    }
  }
  return false;
}

template <class CT, int DJ, class Keys>
void launch_decode_dj(const DecodePlan& plan, int64_t n, const float* q, const CT* k, const CT* v,
                      const Keys& keys, float* out, int8_t* out_codes, cudaStream_t stream) {
  cudaLaunchAttribute attributes[2]{};
  attributes[0].id = cudaLaunchAttributeClusterDimension;
  attributes[0].val.clusterDim.x = unsigned(plan.cluster);
  attributes[0].val.clusterDim.y = 1;
  attributes[0].val.clusterDim.z = 1;
  attributes[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attributes[1].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(unsigned(plan.cluster), unsigned(plan.p.n_kv_heads), unsigned(n));
  config.blockDim = dim3(unsigned(plan.threads), 1, 1);
  config.dynamicSmemBytes = plan.shared;
  config.stream = stream;
  config.attrs = attributes;
  config.numAttrs = pdl_attention() && pdl_enabled() ? 2 : 1;
  FlagSync sync;
  const unsigned blocks = config.gridDim.x * config.gridDim.y * config.gridDim.z;
  if (config.numAttrs == 2)
    sync = next_flag_sync(stream, blocks);
  else
    break_flag_chain(stream);
  const AttentionTrace trace{{gemv_trace_slot(0, 1, false, false, blocks, plan.threads),
                              gemv_trace_slot(0, 2, false, false, blocks, plan.threads),
                              gemv_trace_slot(0, 3, false, false, blocks, plan.threads)}};
  KUIPER_CUDA_CHECK(cudaLaunchKernelEx(&config, decode_attention_kernel<CT, DJ, Keys>, plan.p, q,
                                       k, v, keys, out, out_codes, sync, trace));
}

template <class CT, class Keys>
void launch_decode(const DecodePlan& plan, int64_t n, const float* q, const CT* k, const CT* v,
                   const Keys& keys, float* out, int8_t* out_codes, cudaStream_t stream) {
  switch ((plan.p.head_dim + 31) / 32) {
    case 1: launch_decode_dj<CT, 1>(plan, n, q, k, v, keys, out, out_codes, stream); break;
    case 2: launch_decode_dj<CT, 2>(plan, n, q, k, v, keys, out, out_codes, stream); break;
    case 3: launch_decode_dj<CT, 3>(plan, n, q, k, v, keys, out, out_codes, stream); break;
    default: launch_decode_dj<CT, 4>(plan, n, q, k, v, keys, out, out_codes, stream);
  }
}

// Attention of n query rows whose keys `keys` locates, each over at most max_keys keys (a bound
// for sizing the splits only: longer rows stay correct): the cluster kernel where it applies,
// else the tiled kernel. Rows that keys.length() gives to another kernel are left alone.
// out_codes (or null; n == 1): out's codes as well, by the cluster kernel's merge where its
// slices are whole blocks of 8, else by a kernel of their own.
template <class CT, class Keys>
void attend(int64_t n, const AttentionShape& shape, int64_t max_keys, const float* q,
            const CT* k_cache, const CT* v_cache, const Keys& keys, float* out,
            int8_t* out_codes, const DeviceContext& ctx) {
  const int H = shape.n_heads, KVH = shape.n_kv_heads, D = shape.head_dim;
  DecodePlan plan;
  if (plan_decode<CT, Keys>(n, H, KVH, D, max_keys, k_cache, v_cache, plan)) {
    const bool merge_codes = (H / KVH * D) % (kInputCodeBlock * plan.cluster) == 0;
    launch_decode<CT>(plan, n, q, k_cache, v_cache, keys, out, merge_codes ? out_codes : nullptr,
                      stream_of(ctx));
    if (out_codes != nullptr && !merge_codes)
      launch_input_codes(out, nullptr, H * D, out_codes, stream_of(ctx));
    return;
  }

  const bool vec16 = D % int(16 / sizeof(CT)) == 0 && aligned16(k_cache) && aligned16(v_cache);
  Params p{H, KVH, D, H / KVH, 1, kMaxTile, min_chunk(), 1.f / std::sqrt(float(D)), vec16};
  // Split the keys while the rows and KV heads alone give fewer than two blocks per SM.
  const int64_t blocks = n * KVH, target = 2 * int64_t(sm_count());
  if (blocks < target) {
    const int64_t useful = std::max<int64_t>(1, (max_keys + p.min_chunk - 1) / p.min_chunk);
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
    KUIPER_CHECK(size_t(n) * KVH * sizeof(int) <= kWorkspaceCounterBytes - kWorkspaceFlagBytes,
                 "attention: too many counters");
    done = ws.counters;
    part_ml = static_cast<float*>(ws.scratch);
    part_o = part_ml + ml_floats;
  }
  launch_with(pdl_attention(), attention_kernel<CT, Keys>,
              dim3(unsigned(n), unsigned(KVH), unsigned(p.splits)), kThreads, shared,
              stream_of(ctx), p, q, k_cache, v_cache, keys, out, part_ml, part_o, done);
  if (out_codes != nullptr) launch_input_codes(out, nullptr, H * D, out_codes, stream_of(ctx));
}

void check_shape(const char* op, const AttentionShape& shape) {
  const int H = shape.n_heads, KVH = shape.n_kv_heads, D = shape.head_dim;
  KUIPER_CHECK(H > 0 && KVH > 0 && D > 0 && H % KVH == 0, op, ": ", H, " heads do not share ", KVH,
               " KV heads evenly (head_dim ", D, ")");
}

}  // namespace

template <class T>
void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
               const Tensor& positions, const AttentionShape& shape, const Tensor& out,
               const DeviceContext& ctx) {
  check_shape("attention", shape);
  const int H = shape.n_heads, KVH = shape.n_kv_heads, D = shape.head_dim;
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
  using CT = DeviceType<T>;
  const ContiguousKeys keys{positions.data<int32_t>(), int(max_seq)};
  attend<CT>(n, shape, max_seq, q.data<float>(), reinterpret_cast<const CT*>(k_cache.data<T>()),
             reinterpret_cast<const CT*>(v_cache.data<T>()), keys, out.data<float>(), nullptr, ctx);
}

// Whether the rows that are no prefill chunk (decode rows, short chunks) of a batch of n rows
// go to the tensor-core kernel too: by default where its blocks, one a (sequence, KV head), fill
// the GPU (a serving batch). 64 rows on an H200 (fp16 caches, 128 + 128 tokens a sequence):
// Llama-3.1-8B's shape (512 blocks) 9,228 -> 9,444 tok/s, attention alone 12% faster
// (paged_prefill.cu); TinyLlama's (256 blocks) 35,003 -> 37,164. From shapes only, so that a
// captured step replays with any rows of the same shape. That kernel finds its rows through
// seq_starts, so each row must lie in its sequence's range, as LlamaModel::stage lays them out
// (the CUDA-core kernels go by row_seqs).
static bool short_rows_on_tensor_cores(const AttentionShape& shape, int64_t n) {
  const int tc = decode_config_storage().tensor_cores;
  return tc == 1 || (tc < 0 && n * shape.n_kv_heads >= int64_t(sm_count()));
}

// Prefill chunks of 16-bit caches go to the tensor-core kernel (paged_prefill.cu), and with many
// rows the other rows too (short_rows_on_tensor_cores); every other row (decode rows, short
// chunks, fp32 caches) to the kernels above. All launch over shapes only and sort the rows out
// on the device.
template <class T>
void paged_attention(const Tensor& q, const PagedCache& cache, const BatchRows& rows,
                     const AttentionShape& shape, const Tensor& out, const Tensor& out_codes,
                     const DeviceContext& ctx) {
  constexpr const char* op = "paged_attention";
  check_shape(op, shape);
  const int H = shape.n_heads, KVH = shape.n_kv_heads, D = shape.head_dim;
  const PagedBatchShape s = check_paged_batch(op, rows, cache, int64_t(KVH) * D, Device::kCUDA);
  expect_tensor(op, "queries", q, DType::kF32);
  expect_tensor(op, "output", out, DType::kF32);
  expect_numel(op, "queries", q, s.n * H * D);
  expect_numel(op, "output", out, s.n * H * D);
  KUIPER_CHECK(cache.k.dtype() == dtype_of<T>(), op, ": cache of ", dtype_name(cache.k.dtype()),
               ", kernel for ", dtype_name(dtype_of<T>()));
  KUIPER_CHECK(s.n <= INT_MAX && s.cache_rows <= INT_MAX && s.max_blocks * cache.block_size <= INT_MAX,
               op, ": sizes beyond int range");
  // out's codes for a GEMV of int8/q4 weights (wo) to read: of one row only (kernels.h).
  int8_t* codes = nullptr;
  if (!out_codes.empty() && s.n == 1) {
    check_input_codes(op, "output codes", out_codes, int64_t(H) * D);
    codes = static_cast<int8_t*>(out_codes.raw_data());
  }
  if (s.n == 0) return;
  using CT = DeviceType<T>;
  const auto* k = reinterpret_cast<const CT*>(cache.k.data<T>());
  const auto* v = reinterpret_cast<const CT*>(cache.v.data<T>());
  PagedKeys keys{rows.positions.data<int32_t>(),
                 rows.row_seqs.data<int32_t>(),
                 rows.seq_starts.data<int32_t>(),
                 rows.block_tables.data<int32_t>(),
                 int(s.n),
                 int(s.n_seqs),
                 int(s.max_blocks),
                 cache.block_size,
                 int(s.cache_rows / cache.block_size),
                 0};
  const int64_t max_keys = std::min<int64_t>(rows.max_positions, s.max_blocks * cache.block_size);
  if constexpr (sizeof(T) == 2) {
    const bool copies16 = aligned16(k) && aligned16(v);  // the kernel's cp.async unit
    if (copies16 && prefill_supported(shape)) {
      keys.chunk_rows = kPrefillChunkRows;
      // A chunk is at least kPrefillChunkRows rows of one sequence, and every sequence has a
      // row: with fewer rows to spare (a decoding step: one row each) the launch would find no
      // chunk, and its empty blocks cost ~3 us a layer (99 us of a 64-row 8B step, CUPTI).
      if (s.n - s.n_seqs + 1 >= kPrefillChunkRows)
        launch_paged_prefill(q.data<float>(), k, v, keys, shape, s.n, out.data<float>(), ctx);
      if (short_rows_on_tensor_cores(shape, s.n)) {
        launch_paged_short_rows(q.data<float>(), k, v, keys, shape, s.n, out.data<float>(), ctx);
        if (codes != nullptr)
          launch_input_codes(out.data<float>(), nullptr, H * D, codes, stream_of(ctx));
        return;
      }
    }
  }
  attend<CT>(s.n, shape, max_keys, q.data<float>(), k, v, keys, out.data<float>(), codes, ctx);
}

AttentionDecodeConfig attention_decode_config() { return decode_config_storage(); }
void set_attention_decode_config(const AttentionDecodeConfig& config) {
  decode_config_storage() = config;
}

template void attention<float>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const AttentionShape&, const Tensor&, const DeviceContext&);
template void attention<f16>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             const AttentionShape&, const Tensor&, const DeviceContext&);
template void attention<bf16>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const AttentionShape&, const Tensor&, const DeviceContext&);
template PagedAttentionFn paged_attention<float>;
template PagedAttentionFn paged_attention<f16>;
template PagedAttentionFn paged_attention<bf16>;

}  // namespace kuiper::kernels::cuda
