// Causal attention of prefill chunks over a paged 16-bit cache on the tensor cores, flash-
// attention style: scores and probabilities stay in registers, no score matrix in memory.
//
// A block of 4 warps serves one KV head and a tile of 64 query slots of one sequence: slot m of
// the sequence is (row m / G, query head m % G of the group), so the G heads that share the KV
// head read each key and value once and the tile's rows stay few and consecutive. Warp w owns
// slots 16w..16w+15 (the M of mma.m16n8k16). The block walks the sequence's keys up to its
// rows' largest position in tiles of 64, copied from the block table's cache rows into shared
// memory with cp.async, two stages so that the next tile's copies fly during this one's math:
// S = Q K^T (the queries, scaled by log2(e) / sqrt(D) and rounded to the cache's type, held in
// registers as A fragments for the whole walk), the causal mask from each slot's own position,
// an online softmax in base 2 over the accumulator fragments, and O += P V with P rounded to the
// cache's type straight from the score fragments and V read transposed by ldmatrix. fp32
// accumulators throughout.
//
// In a batch of many rows (a serving step) a second launch of the kernel takes the other
// sequences (decode rows, short chunks: kShort), instead of the CUDA-core kernels of
// attention.cu, in blocks of 2 warps (32 slots, 32-key tiles). A decode row's G heads fill a
// part of one warp's 16 slots, so the other warp only copies keys. Before this wave 64 rows of
// Llama-3.1-8B's shape (fp16 cache, H200, paged_attention_bench --many-rows) took 30.6 / 43.9 /
// 55.9 us at contexts 128 / 192 / 256 in blocks of 4 warps against the cluster kernel's 34.3 /
// 49.5 / 63.3, while blocks of one warp with tiles of 32 keys took 41.3 / 60.9 / 79.3; with the
// cache rows looked up a tile ahead (below), 4 warps took 18.8 / 27.9 / 36.6.
//
// The grid covers every possible tile (rows * G / slots + one per possible chunk) over shapes only;
// each block finds its sequence and tile from seq_starts on the device (a warp-wide prefix sum),
// and blocks beyond the batch's tiles return. A row whose position lies past its block table
// gets NaN, as a block outside the cache reads NaN.
#include "kernels/cuda/paged_prefill.h"

#include <type_traits>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/once_per_device.cuh"

namespace kuiper::kernels::cuda {
namespace {

// A block of kWarps warps takes 16 * kWarps query slots and walks the keys in tiles of as many:
// 4 warps for prefill chunks; the short rows' launch 2 or 4 (launch_paged_short_rows).
constexpr int kChunkWarps = 4;

struct PrefillParams {
  int n_heads, n_kv_heads, group;
  float scale_log2;  // log2(e) / sqrt(head_dim)
};

template <class CT>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<CT, __half>) {
    const __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// c += a b for a 16x16 (row) by 16x8 (column) product of 16-bit values, fp32 accumulators.
template <class CT>
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  if constexpr (std::is_same_v<CT, __half>)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 matrices of 16-bit values, transposed: lanes 8i..8i+7 name the rows of matrix i.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(uint32_t(__cvta_generic_to_shared(row))));
}
#endif

// Shared memory of one block: two stages of a key tile and a value tile, rows padded by 16
// bytes so that the fragment loads of 8 rows hit distinct banks.
constexpr size_t prefill_shared(int head_dim, int keys) {
  return size_t(2) * 2 * keys * (head_dim + 8) * 2;
}

// kShort: the blocks take the sequences that are no chunk (decode rows, short chunks) instead of
// the chunks. Registers are held to what the shared memory allows an SM (3 blocks of 4 warps, 6
// of 2): unbounded, head_dim 128 took 204 registers a thread, 2 blocks of 4 warps an SM, so that
// 64 decode rows of Llama-3.1-8B's shape (544 blocks) ran in 3 waves; bounded, 168 (ptxas: no
// spills in blocks of 2 warps; in blocks of 4 at head_dim 128, 44 bytes since the look-ahead of
// the cache rows). With 4 warps and 64-key tiles those 544 blocks still took 2 waves of 396, the
// second a third full; 2 warps and 32-key tiles (35 KB) fit 6 blocks an SM, all in one wave.
// The grid's x runs over KV heads, y over tiles: the blocks of one sequence's heads start
// together and read the same cache rows (each a share of every row) at once.
template <class CT, int DK, bool kShort, int kWarps>
__global__ void __launch_bounds__(kWarps * 32, 12 / kWarps)
    paged_prefill_kernel(PrefillParams p, const float* q, const CT* k_cache, const CT* v_cache,
                         PagedKeys keys, float* out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  allow_dependent_launch();
  grid_dependency_wait();
  constexpr int D = 16 * DK, kStride = D + 8, kUnits = D / 8;  // 16-byte units a row
  constexpr int kSlots = 16 * kWarps, kKeys = kSlots;  // query slots a block, keys a tile
  extern __shared__ __align__(16) unsigned char prefill_smem[];
  CT* const tiles = reinterpret_cast<CT*>(prefill_smem);  // [stage][K, V][kKeys][kStride]
  __shared__ int tile_seq, tile_first, tile_slots, tile_keys;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int gid = lane >> 2, tig = lane & 3;  // fragment row group, thread in the group
  const int G = p.group, kvh = blockIdx.x, tile_index = blockIdx.y;

  // This block's (sequence, tile): the x-th tile over the chunks in sequence order.
  if (warp == 0) {
    int base = 0;
    bool found = false;
    for (int s0 = 0; s0 < keys.n_seqs && !found; s0 += 32) {
      const int s = s0 + lane;
      int rows = 0, tiles = 0;
      if (s < keys.n_seqs && (kShort ? keys.is_short(s) : keys.is_chunk(s))) {
        rows = keys.seq_rows(s);
        tiles = (rows * G + kSlots - 1) / kSlots;
      }
      int upto = tiles;  // inclusive prefix sum over the lanes
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int t = __shfl_up_sync(0xffffffffu, upto, o);
        if (lane >= o) upto += t;
      }
      const int first = base + upto - tiles, x = tile_index;
      const bool mine = tiles > 0 && x >= first && x < first + tiles;
      if (mine) {
        tile_seq = s;
        tile_first = (x - first) * kSlots;
        tile_slots = min(kSlots, rows * G - tile_first);
      }
      found = __ballot_sync(0xffffffffu, mine) != 0;
      base += __shfl_sync(0xffffffffu, upto, 31);
    }
    if (lane == 0) {
      if (!found) tile_seq = -1;
      tile_keys = 0;
    }
  }
  __syncthreads();
  const int seq = tile_seq;
  if (seq < 0) return;
  const int seq_row = keys.seq_starts[seq], first = tile_first, slots = tile_slots;
  const int max_pos = keys.max_blocks * keys.block_size;  // positions past it have no keys
  const int row0 = seq_row + first / G, tile_rows = (first + slots - 1) / G - first / G + 1;
  const PagedRow row_of{keys.block_tables + int64_t(seq) * keys.max_blocks, keys.block_size,
                        keys.num_blocks};
  const int64_t kv_width = int64_t(p.n_kv_heads) * D;
  // Tile kt's keys and values into stage kt % 2: zeros past the tile's keys (their
  // probabilities are 0, and 0 * garbage could be NaN), NaN for a block outside the cache.
  // The cache rows of a tile's keys are looked up a tile ahead into key_rows (by the first
  // kKeys threads, published by the loop's barriers): looked up between the copies (whose asm
  // orders memory), each block-table load waited for the copy before it, a chain of loads a
  // tile for every thread (64 rows of Llama-3.1-8B's shape, H200: 43.6 -> 27.9 us a call at
  // 192 keys). The first two tiles are looked up before the tile's key count is known (keys
  // past the table read as -2), so that those loads fly with the positions'.
  __shared__ int key_rows[2][kKeys];  // cache row of each key of tiles kt and kt + 1 (by kt % 2)
  auto look_up = [&](int kt) {
    const int t = kt * kKeys + tid;
    if (tid < kKeys) key_rows[kt & 1][tid] = t < max_pos ? int(row_of(t)) : -2;
  };
  look_up(0);
  look_up(1);
  for (int r = tid; r < tile_rows; r += blockDim.x) {
    const int32_t pos = keys.positions[row0 + r];
    if (pos >= 0 && pos < max_pos) atomicMax(&tile_keys, pos + 1);
  }
  __syncthreads();  // tile_keys is complete, key_rows holds tiles 0 and 1
  const int n_keys = tile_keys, n_tiles = (n_keys + kKeys - 1) / kKeys;
  constexpr int kThreads = kWarps * 32;
  const CT* const k_head = k_cache + int64_t(kvh) * D;  // this block's KV head of cache row 0
  const CT* const v_head = v_cache + int64_t(kvh) * D;
  auto issue = [&](int kt) {
    if (kt < n_tiles) {
      CT* st = tiles + (kt & 1) * 2 * kKeys * kStride;
      for (int i = tid; i < 2 * kKeys * kUnits; i += kThreads) {
        const int is_v = i >= kKeys * kUnits, j = i - is_v * kKeys * kUnits;
        const int key = j / kUnits, u = j - key * kUnits;
        CT* dst = st + (is_v * kKeys + key) * kStride + u * 8;
        const int at = kt * kKeys + key < n_keys ? key_rows[kt & 1][key] : -2;
        if (at >= 0)
          cp_async16(dst, (is_v ? v_head : k_head) + int64_t(at) * kv_width + u * 8);
        else
          *reinterpret_cast<uint4*>(dst) = at == -2 ? make_uint4(0, 0, 0, 0) : make_uint4(
              0x7fff7fffu, 0x7fff7fffu, 0x7fff7fffu, 0x7fff7fffu);  // NaN in fp16 and bf16
      }
    }
    cp_async_commit();
  };

  // This lane's two slots (fragment rows gid and gid + 8 of its warp): row, head, position
  // (-1: no slot, or a position past the block table).
  int row[2], head[2], pos[2];
  bool bad[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int slot = first + warp * 16 + gid + 8 * h;
    const bool in = slot < first + slots;
    row[h] = seq_row + slot / G;
    head[h] = kvh * G + slot % G;
    const int32_t at = in ? keys.positions[row[h]] : -1;
    bad[h] = in && !(at >= 0 && at < max_pos);
    pos[h] = in && !bad[h] ? at : -1;
  }
  const int64_t q_width = int64_t(p.n_heads) * D;
  uint32_t qa[DK][4];  // the queries as A fragments, scaled
#pragma unroll
  for (int kk = 0; kk < DK; ++kk) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float2 lo = make_float2(0.f, 0.f), hi = lo;
      if (pos[h] >= 0) {
        const float* qr = q + row[h] * q_width + int64_t(head[h]) * D + kk * 16 + tig * 2;
        lo = *reinterpret_cast<const float2*>(qr);
        hi = *reinterpret_cast<const float2*>(qr + 8);
      }
      qa[kk][h] = pack2<CT>(lo.x * p.scale_log2, lo.y * p.scale_log2);
      qa[kk][2 + h] = pack2<CT>(hi.x * p.scale_log2, hi.y * p.scale_log2);
    }
  }
  issue(0);  // (issued before the queries load, it spilled 56 bytes at head_dim 128)
  int warp_pos = max(pos[0], pos[1]);  // the warp's last key
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) warp_pos = max(warp_pos, __shfl_xor_sync(0xffffffffu, warp_pos, o));

  float o[2 * DK][4];  // output fragments: dims 8 dt .. 8 dt + 7
#pragma unroll
  for (int dt = 0; dt < 2 * DK; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // l: this lane's share of the sum
  __syncthreads();  // every thread has read tile 0's rows: look_up(2) may overwrite them
  for (int kt = 0; kt < n_tiles; ++kt) {
    issue(kt + 1);
    // Into the half that issue(kt) read before the last barrier (the one above for kt = 0;
    // without it, a thread ahead overwrote tile 0's rows while others still copied, which
    // compute-sanitizer's slower schedule showed as wrong outputs).
    look_up(kt + 2);
    cp_async_wait<1>();
    __syncthreads();  // tile kt is in, key_rows has tile kt + 2
    const CT* ks = tiles + (kt & 1) * 2 * kKeys * kStride;
    const CT* vs = ks + kKeys * kStride;
    const int key0 = kt * kKeys;
    if (key0 <= warp_pos) {  // else every slot of the warp has all these keys masked
      float s[kKeys / 8][4];
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt) {
        s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
        const CT* kr = ks + (nt * 8 + gid) * kStride + tig * 2;
#pragma unroll
        for (int kk = 0; kk < DK; ++kk)
          mma<CT>(s[nt], qa[kk], *reinterpret_cast<const uint32_t*>(kr + kk * 16),
                  *reinterpret_cast<const uint32_t*>(kr + kk * 16 + 8));
      }
      float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int nt = 0; nt < kKeys / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int h = e >> 1, t = key0 + nt * 8 + tig * 2 + (e & 1);
          if (t > pos[h]) s[nt][e] = -INFINITY;
          mx[h] = fmaxf(mx[h], s[nt][e]);
        }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
        const float m_new = fmaxf(m[h], mx[h]);
        const float ref = m_new == -INFINITY ? 0.f : m_new;  // no keys yet: nothing to rescale
        const float alpha = exp2f(m[h] - ref);
        m[h] = m_new;
        l[h] *= alpha;
#pragma unroll
        for (int dt = 0; dt < 2 * DK; ++dt) {
          o[dt][2 * h] *= alpha;
          o[dt][2 * h + 1] *= alpha;
        }
#pragma unroll
        for (int nt = 0; nt < kKeys / 8; ++nt)
#pragma unroll
          for (int e = 2 * h; e < 2 * h + 2; ++e) {
            s[nt][e] = exp2f(s[nt][e] - ref);
            l[h] += s[nt][e];
          }
      }
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        const uint32_t pa[4] = {pack2<CT>(s[2 * kk][0], s[2 * kk][1]),
                                pack2<CT>(s[2 * kk][2], s[2 * kk][3]),
                                pack2<CT>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                pack2<CT>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
        const CT* vr = vs + (kk * 16 + (lane & 15)) * kStride + (lane >> 4) * 8;
#pragma unroll
        for (int dt = 0; dt < 2 * DK; dt += 2) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, vr + dt * 8);
          mma<CT>(o[dt], pa, b[0], b[1]);
          mma<CT>(o[dt + 1], pa, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before the next copies into it
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    if (pos[h] < 0 && !bad[h]) continue;  // no slot
    const float inv = bad[h] ? __int_as_float(0x7fc00000) : 1.f / l[h];
    float* orow = out + row[h] * q_width + int64_t(head[h]) * D + tig * 2;
#pragma unroll
    for (int dt = 0; dt < 2 * DK; ++dt)
      *reinterpret_cast<float2*>(orow + dt * 8) =
          make_float2(o[dt][2 * h] * inv, o[dt][2 * h + 1] * inv);
  }
#endif
}

// The kernel, allowed its shared memory (once per device).
template <class CT, int DK, bool kShort, int kWarps>
auto* prepared_kernel() {
  auto* kernel = paged_prefill_kernel<CT, DK, kShort, kWarps>;
  static OncePerDevice prepared;
  prepared.run([kernel] {
    KUIPER_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           int(prefill_shared(16 * DK, 16 * kWarps))));
  });
  return kernel;
}

template <class CT, int DK, bool kShort, int kWarps>
void launch_tiles(const float* q, const CT* k_cache, const CT* v_cache, const PagedKeys& keys,
                  const AttentionShape& shape, int64_t n, float* out, const DeviceContext& ctx) {
  const int G = shape.n_heads / shape.n_kv_heads;
  const PrefillParams p{shape.n_heads, shape.n_kv_heads, G,
                        float(1.4426950408889634 / std::sqrt(double(shape.head_dim)))};
  // Tiles: each sequence's slots in tiles of 16 * kWarps, at most one part-filled tile a
  // sequence taken.
  constexpr int kSlots = 16 * kWarps;
  const int64_t seqs = kShort ? keys.n_seqs : std::min<int64_t>(keys.n_seqs, n / keys.chunk_rows);
  const dim3 grid(unsigned(shape.n_kv_heads), unsigned((n * G + kSlots - 1) / kSlots + seqs));
  launch_with(pdl_attention(), prepared_kernel<CT, DK, kShort, kWarps>(), grid,
              dim3(kWarps * 32), prefill_shared(16 * DK, kSlots), stream_of(ctx), p, q, k_cache,
              v_cache, keys, out);
}

// f(std::integral_constant<int, head_dim / 16>) for the head sizes the kernel serves.
template <class F>
void with_head_dim(int head_dim, const F& f) {
  switch (head_dim) {
    case 48: return f(std::integral_constant<int, 3>{});
    case 64: return f(std::integral_constant<int, 4>{});
    case 96: return f(std::integral_constant<int, 6>{});
    case 128: return f(std::integral_constant<int, 8>{});
    default: fail("paged_attention: no tensor-core kernel for head_dim ", head_dim);
  }
}

}  // namespace

bool prefill_supported(const AttentionShape& shape) {
  const int D = shape.head_dim;
  return D == 48 || D == 64 || D == 96 || D == 128;
}

template <class CT>
void launch_paged_prefill(const float* q, const CT* k_cache, const CT* v_cache,
                          const PagedKeys& keys, const AttentionShape& shape, int64_t n, float* out,
                          const DeviceContext& ctx) {
  with_head_dim(shape.head_dim, [&]<int DK>(std::integral_constant<int, DK>) {
    launch_tiles<CT, DK, false, kChunkWarps>(q, k_cache, v_cache, keys, shape, n, out, ctx);
  });
}

// Short rows in blocks of 4 warps where one a (row, KV head) fit the GPU at once, else of 2
// (attention.h: short_warps). H200, 64 rows (fp16 cache, 128 + 128 tokens a sequence): the 512
// blocks of Llama-3.1-8B's shape (3 an SM of 4 warps: two waves) 10,410 tok/s in 4 warps,
// 10,571 in 2; TinyLlama's 256 blocks (one wave either way) 40,462 in 4, 36,222 in 2 (each
// block's chain of tiles twice as long). From shapes only, so that a captured step replays with
// any rows of the same shape.
template <class CT>
void launch_paged_short_rows(const float* q, const CT* k_cache, const CT* v_cache,
                             const PagedKeys& keys, const AttentionShape& shape, int64_t n,
                             float* out, const DeviceContext& ctx) {
  with_head_dim(shape.head_dim, [&]<int DK>(std::integral_constant<int, DK>) {
    int warps = attention_decode_config().short_warps;
    if (warps == 0) {
      const int fit = resident_blocks(reinterpret_cast<const void*>(prepared_kernel<CT, DK, true, 4>()),
                                      4 * 32, prefill_shared(16 * DK, 64));
      warps = n * shape.n_kv_heads <= fit ? 4 : 2;
    }
    if (warps == 4) return launch_tiles<CT, DK, true, 4>(q, k_cache, v_cache, keys, shape, n, out, ctx);
    launch_tiles<CT, DK, true, 2>(q, k_cache, v_cache, keys, shape, n, out, ctx);
  });
}

#define KUIPER_PAGED_TENSOR_CORES(CT)                                                           \
  template void launch_paged_prefill<CT>(const float*, const CT*, const CT*, const PagedKeys&,   \
                                         const AttentionShape&, int64_t, float*,                 \
                                         const DeviceContext&);                                  \
  template void launch_paged_short_rows<CT>(const float*, const CT*, const CT*, const PagedKeys&, \
                                            const AttentionShape&, int64_t, float*,              \
                                            const DeviceContext&);
KUIPER_PAGED_TENSOR_CORES(__half)
KUIPER_PAGED_TENSOR_CORES(__nv_bfloat16)
#undef KUIPER_PAGED_TENSOR_CORES

}  // namespace kuiper::kernels::cuda
