#pragma once
// The projections shared by matmul.cu and gated_matmul.cu: a GEMV for one position (decoding)
// and cuBLAS GEMMs for many (prefill). See matmul.cu for the design.
#include <climits>
#include <span>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/gemv_trace.cuh"
#include "kernels/cuda/ggml_blocks.cuh"

namespace kuiper::kernels::cuda {

// ---- n == 1: the GEMV -------------------------------------------------------------------

// Outputs one launch computes; a matmul with more is split into several launches.
constexpr int kMaxGemvOutputs = 4;
// Inputs up to this many floats are staged in shared memory by every block that normalises them
// (48 KB, the most a block gets without opting in); longer ones are normalised into the workspace
// first.
constexpr int kMaxStagedInput = 12 << 10;

struct GemvOutput {
  const void* w;       // [rows, in]
  const float* bias;   // [rows] or null
  float* y;            // [rows]
  const void* scales;  // quantized weights: [rows, in / group] of the scale type; else null
};

// One launch: the outputs' rows one after another form `rows` virtual rows (gated: out[0] is the
// gate, out[1] the up projection, and `rows` their common row count; y is out[0].y).
struct GemvParams {
  const float* x;
  const float* norm;  // null: x as it is
  float eps;
  int in;
  int rows;
  int n_outputs;
  int first_row[kMaxGemvOutputs + 1];
  GemvOutput out[kMaxGemvOutputs];
  int group;           // quantized: codes per scale
  int group_shift;     // quantized: log2(group / kPer16), when the group is a power of two >= kPer16
  int split;           // warps sharing one group of rows
  bool accumulate;     // y += ..., not y = ...
  bool early_trigger;  // allow the next kernel's launch before the main loop, not after it
  unsigned long long* trace;  // KUIPER_CUDA_GEMV_TRACE's stamps of this launch, or null
  const int8_t* x_codes;  // the input's codes (MatmulInput::codes) where the kernel reads them
  int8_t* y_codes;        // where the kernel also writes its output's codes (one output), or null
  const float* y_codes_norm;  // y_codes: of y times this norm weight (null: of y)
  // rope.cos_sin: the rotation and cache stores folded into a q, k, v GEMV (out[0], out[1],
  // out[2]) of one row (matmul_rope_store): q rotated where y is written, k rotated and v to
  // the cache row of the row's slot (out[1].y and out[2].y are left alone); null: a plain GEMV.
  // Pair (2j, 2j+1) of each head turns by the angle of frequency j % half at the row's
  // position; a position outside the table or a slot outside the cache gives NaN queries and
  // no stores (as rope_store_kernel).
  RopeStoreTarget rope;
  FlagSync sync;  // flag waits (common.cuh), for the vector kernel
};

// rsqrt(mean(x^2) + eps) of an input from its codes' block sums (every lane of a warp gets it).
__device__ __forceinline__ float rms_scale_of_codes(const int8_t* codes, int in, float eps) {
  const float* sums = input_code_sums(codes, in);
  float ss = 0.f;
  for (int i = int(threadIdx.x & 31); i < in / kInputCodeBlock; i += 32) ss += sums[i];
  return rsqrtf(warp_sum(ss) / float(in) + eps);
}

// Output j's row of scales for weight row `row` (codes with group scales; else null).
template <class T>
__device__ __forceinline__ const void* scale_row(const GemvParams& p, int j, int64_t row) {
  return scale_row_of<T>(p.out[j].scales, row, p.in, p.group);
}

// The GEMV's view of one output: w's codes or values, its scales when quantized, bias and y
// (either may be empty).
inline GemvOutput gemv_output(const Weight& w, const Tensor& bias, const Tensor& y) {
  return {w.values.raw_data(), bias.empty() ? nullptr : bias.data<float>(),
          y.empty() ? nullptr : y.data<float>(), w.quantized() ? w.scales.raw_data() : nullptr};
}

// rows_per_warp, unroll, warps_per_block, warps_per_row (0: auto_split), pipelined.
// Register use grows with rows x loads (x2 when pipelined); 8 loads in flight per lane did best
// on TinyLlama's shapes (bench/gemv_bench.cpp).
inline constexpr GemvVariant kGemvVariants[] = {
    {1, 4, 4, 0, false}, {1, 2, 4, 0, true},  {2, 2, 4, 0, true},
    {2, 4, 4, 0, false}, {4, 2, 4, 1, false}, {1, 2, 8, 0, false}, {1, 4, 8, 0, false},
    {2, 2, 8, 0, false},  // r2u2w8: one_round_variant's
};
inline constexpr int kNumGemvVariants = int(std::size(kGemvVariants));

// Virtual row v as (output, row of that output).
struct OutputRow {
  int output, row;
};
__device__ __forceinline__ OutputRow locate(const GemvParams& p, int v) {
  int j = 0;
#pragma unroll
  for (int t = 1; t < kMaxGemvOutputs; ++t)
    if (t < p.n_outputs && v >= p.first_row[t]) j = t;
  return {j, v - p.first_row[j]};
}

// y = result (+ bias) or y += the same, for virtual row v (plain matmul); returns what it stored
// (with `store` false, what it would have: the rope epilogue stores it).
__device__ __forceinline__ float store_row(const GemvParams& p, int v, float result,
                                           bool store = true) {
  const OutputRow o = locate(p, v);
  const GemvOutput& out = p.out[o.output];
  const float value = result + (out.bias != nullptr ? out.bias[o.row] : 0.f);
  if (!store) return value;
  return out.y[o.row] = p.accumulate ? out.y[o.row] + value : value;
}

// The rope epilogue (p.rope) of virtual row v of q, k, v, whose value is `value` and whose pair's
// other row (v ^ 1) has `partner`: rope_store.cu's rotate, one element of the pair a lane.
__device__ __forceinline__ void rope_store_row(const GemvParams& p, int v, float value,
                                               float partner) {
  const RopeStoreTarget& r = p.rope;
  const OutputRow o = locate(p, v);
  const int pos = *r.positions, slot = r.slots != nullptr ? *r.slots : pos;
  const bool valid = pos >= 0 && pos < r.max_pos && slot >= 0 && slot < r.cache_rows;
  if (!valid) {
    if (o.output == 0) p.out[0].y[o.row] = __int_as_float(0x7fc00000);
    return;
  }
  float result = value;
  if (o.output < 2) {  // (x, y) -> (x c - y s, x s + y c), written as rope_store's rotate
    const float2 cs =
        reinterpret_cast<const float2*>(r.cos_sin)[int64_t(pos) * r.half + (o.row >> 1) % r.half];
    result = (o.row & 1) == 0 ? value * cs.x - partner * cs.y : partner * cs.y + value * cs.x;
  }
  if (o.output == 0) {
    p.out[0].y[o.row] = result;
    return;
  }
  const int64_t at = int64_t(slot) * r.kv_width + o.row;
  void* cache = o.output == 1 ? r.k_cache : r.v_cache;
  if (r.cache_dtype == DType::kF32) static_cast<float*>(cache)[at] = result;
  else if (r.cache_dtype == DType::kF16) static_cast<__half*>(cache)[at] = __float2half_rn(result);
  else static_cast<__nv_bfloat16*>(cache)[at] = __float2bfloat16_rn(result);
}

// The block stages x * norm in shared memory and returns rsqrt(mean(x^2) + eps), the scale that
// the dot products are multiplied by afterwards (so x is read once, in one batch of loads). V is
// float4 (16-byte aligned x and norm, in % 4 == 0) or float. Every thread of the block takes part;
// the barriers of the block sum make xs visible to all.
template <class V>
__device__ __forceinline__ float stage_input(const GemvParams& p, float* xs, float* scratch) {
  constexpr int kBatch = 4;  // loads of x and of norm in flight per thread
  constexpr int kWidth = sizeof(V) / sizeof(float);
  const V* x = reinterpret_cast<const V*>(p.x);
  const V* norm = reinterpret_cast<const V*>(p.norm);
  V* out = reinterpret_cast<V*>(xs);
  const int count = p.in / kWidth;
  float ss = 0.f;
  for (int i0 = threadIdx.x; i0 < count; i0 += kBatch * blockDim.x) {
    V xv[kBatch], nv[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = i0 + b * blockDim.x;
      if (i < count) {
        xv[b] = x[i];
        nv[b] = norm[i];
      }
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = i0 + b * blockDim.x;
      if (i >= count) break;
      if constexpr (kWidth == 4) {
        ss += xv[b].x * xv[b].x + xv[b].y * xv[b].y + xv[b].z * xv[b].z + xv[b].w * xv[b].w;
        out[i] = make_float4(xv[b].x * nv[b].x, xv[b].y * nv[b].y, xv[b].z * nv[b].z,
                             xv[b].w * nv[b].w);
      } else {
        ss += xv[b] * xv[b];
        out[i] = xv[b] * nv[b];
      }
    }
  }
  return rsqrtf(block_sum(ss, scratch) / float(p.in) + p.eps);
}

// The block quantizes x (times norm, with kNorm) into shared memory: each thread takes 8
// consecutive values at a time (two 16-byte loads, kBatch such chunks in flight, while the
// first weights are in flight too, so registers bound the blocks an SM holds), the 4 threads
// of a 32-value block agree on its max and code sum by two shuffles. (One warp a block, with
// 5-step warp reductions, made the staging a ~3 us chain that every block of the GEMV paid.)
// Returns rsqrt(mean(x^2) + eps) (kNorm) or 1. The codes are those of the CPU's Int8Input
// (kernels/cpu/weight_rows.cpp): nearest of x * (127 / max|x|). Needs in % 32 == 0 and 16-byte
// aligned x and norm. Every thread of the block takes part; the barrier at the end publishes it.
template <bool kNorm>
__device__ __forceinline__ float stage_codes(const GemvParams& p, void* staged, float* scratch) {
  constexpr int kBatch = 2;  // 4 took ~30 more registers (146 in the gated q4 kernel with norm)
  auto* q = static_cast<int8_t*>(staged);
  auto* scale = reinterpret_cast<float*>(q + p.in);
  auto* sum = reinterpret_cast<int*>(scale + p.in / 32);
  const auto* x = reinterpret_cast<const float4*>(p.x);
  const auto* norm = reinterpret_cast<const float4*>(p.norm);
  const int chunks = p.in / 8;
  float ss = 0.f;
  // The loop bounds are the same for the whole block, so every lane reaches every shuffle.
  for (int base = 0; base < chunks; base += kBatch * int(blockDim.x)) {
    float4 v[kBatch][2], nv[kBatch][2];
#pragma unroll
    for (int t = 0; t < kBatch; ++t) {
      const int c = base + t * int(blockDim.x) + int(threadIdx.x);
      const bool inside = c < chunks;
      v[t][0] = inside ? x[2 * c] : float4{};
      v[t][1] = inside ? x[2 * c + 1] : float4{};
      if constexpr (kNorm) {
        nv[t][0] = inside ? norm[2 * c] : float4{};
        nv[t][1] = inside ? norm[2 * c + 1] : float4{};
      }
    }
#pragma unroll
    for (int t = 0; t < kBatch; ++t) {
      const int c = base + t * int(blockDim.x) + int(threadIdx.x);
      float f[8] = {v[t][0].x, v[t][0].y, v[t][0].z, v[t][0].w,
                    v[t][1].x, v[t][1].y, v[t][1].z, v[t][1].w};
      if constexpr (kNorm) {
        const float n[8] = {nv[t][0].x, nv[t][0].y, nv[t][0].z, nv[t][0].w,
                            nv[t][1].x, nv[t][1].y, nv[t][1].z, nv[t][1].w};
#pragma unroll
        for (int k = 0; k < 8; ++k) {
          ss = fmaf(f[k], f[k], ss);
          f[k] *= n[k];
        }
      }
      float max = 0.f;
#pragma unroll
      for (int k = 0; k < 8; ++k) max = fmaxf(max, fabsf(f[k]));
      max = fmaxf(max, __shfl_xor_sync(0xffffffffu, max, 1));
      max = fmaxf(max, __shfl_xor_sync(0xffffffffu, max, 2));
      const float inverse = max > 0.f ? 127.f / max : 0.f;
      uint32_t packed[2] = {0u, 0u};
      int total = 0;
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int code = __float2int_rn(f[k] * inverse);
        total += code;
        packed[k / 4] |= uint32_t(code & 0xff) << (8 * (k % 4));
      }
      total += __shfl_xor_sync(0xffffffffu, total, 1);
      total += __shfl_xor_sync(0xffffffffu, total, 2);
      if (c < chunks) {
        *reinterpret_cast<uint2*>(q + 8 * c) = make_uint2(packed[0], packed[1]);
        if ((c & 3) == 0) {
          scale[c / 4] = max / 127.f;
          sum[c / 4] = total;
        }
      }
    }
  }
  if constexpr (kNorm) return rsqrtf(block_sum(ss, scratch) / float(p.in) + p.eps);
  __syncthreads();
  return 1.f;
}

// Each warp computes kRows virtual rows (gated: kRows rows of both matrices, 2 * kRows weight
// streams); `split` warps of a block share each group of rows, dividing the row's 16-byte
// vectors among them, and add their sums in shared memory. kPipeline: the next batch of loads is
// issued before the current one is used. kNorm: the block first stages x * norm in shared memory,
// and the sums are scaled by the row's rsqrt(mean(x^2) + eps) at the end. Quantized weights:
// the block always stages x as int8 codes (stage_codes) and takes integer dot products; ggml's
// block types (ggml_blocks.cuh) the same, through their own loads and dot products. kCodes: the
// input comes quantized (p.x_codes, written by the kernel before): each lane loads the codes
// its weights pair with beside them (XCodes), nothing is staged; with kNorm the codes are of
// x times the norm weight already and the rms scale comes from their block sums.
// p.y_codes: the block also writes its chunk's outputs as codes (rows a chunk a multiple of 8).
// p.rope: the chunk's q, k, v rows end rotated, k and v in the cache (rows a chunk in pairs);
// both epilogues take the chunk's outputs from shared memory in warp 0.
// A block's rows come in chunks (its warps' groups of rows): chunk blockIdx.x, then every
// gridDim.x-th after it, the next chunk's first loads issued before this one's sums and stores.
// With one block a chunk (the grid covering the rows) that loop runs once; a grid sized to what
// the GPU holds at once (launch_gemv_variant) stages the input once per block, not per chunk.
template <class T, int kRows, int kUnroll, bool kPipeline, bool kNorm, bool kGated, bool kCodes>
__device__ __forceinline__ void gemv_block(const GemvParams& p) {
  constexpr int kVec = kPer16<T>;  // weights per 16-byte load
  constexpr int kStreams = kGated ? 2 * kRows : kRows;
  constexpr bool kQ = kIsQuantized<T>;
  constexpr bool kBlocks = kIsBlocks<T>;
  static_assert(!kCodes || (kQ && !kBlocks));
  extern __shared__ float4 staged[];  // kNorm: the normalised input; kQ: its codes
  __shared__ float partial[32][kStreams];
  __shared__ float scratch[32];
  __shared__ float chunk_outputs[2][32];  // chunk_epilogue: a chunk's outputs, by chunk parity
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, split = p.split;
  const int group = warp / split, sub = warp - group * split;
  const int groups_per_block = (blockDim.x >> 5) / split;
  // Warps interact (barriers) when they split rows or stage the input; otherwise a warp past the
  // last row may leave.
  const bool rope = !kGated && p.rope.cos_sin != nullptr;
  // p.y_codes and rope: the chunk's outputs go through shared memory to warp 0's epilogue.
  const bool chunk_epilogue = p.y_codes != nullptr || rope;
  const bool independent = !kNorm && !kQ && split == 1 && !chunk_epilogue;
  const int stride = 32 * split;  // vectors between a lane's consecutive loads
  const int step = kUnroll * stride;
  // One chunk's weight streams: each row's address and (codes with group scales) row of scales.
  struct Streams {
    const char* rows[kStreams];
    const void* scale_rows[kStreams];
    int row0, nvec;  // nvec 0: the warp has no rows in this chunk
  };
  auto streams_of = [&](int chunk) {
    Streams st;
    st.row0 = (chunk * groups_per_block + group) * kRows;
    st.nvec = st.row0 < p.rows ? p.in / kVec : 0;
    auto set_stream = [&](int s, int j, int64_t row) {
      st.rows[s] = weight_row<T>(p.out[j].w, row, p.in);
      st.scale_rows[s] = scale_row<T>(p, j, row);
    };
#pragma unroll
    for (int r = 0; r < kRows; ++r) {  // rows past the end re-read the last one; never stored
      const int v = min(st.row0 + r, p.rows - 1);
      if constexpr (kGated) {
        set_stream(r, 0, v);
        set_stream(kRows + r, 1, v);
      } else {
        const OutputRow o = locate(p, v);
        set_stream(r, o.output, o.row);
      }
    }
    return st;
  };
  // A batch of loads: 16 bytes of weights per (unroll, stream), and for codes their group's
  // scale (ggml blocks: a load of their own, scales included).
  struct NoCodes {};
  struct Batch {
    typename LoadOf<T>::type w[kUnroll][kStreams];
    float scale[kQ && !kBlocks ? kUnroll : 1][kStreams];
    std::conditional_t<kCodes, XCodes<T>, NoCodes> x[kUnroll];  // kCodes: the input's codes
  };
  const float* x_scales = kCodes ? input_code_scales(p.x_codes, p.in) : nullptr;
  // kCodes: the input's codes of a batch (not before the dependency wait).
  auto load_x = [&](Batch& b, int nvec, int base) {
    if constexpr (kCodes)
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (const int i = base + u * stride; i < nvec)
          b.x[u] = load_x_codes<T>(p.x_codes, x_scales, i);
  };
  // with_x: the input's codes too (load_x).
  auto load = [&](Batch& b, const Streams& st, int base, bool with_x = true) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * stride;
#pragma unroll
      for (int s = 0; s < kStreams; ++s) {
        if constexpr (kBlocks) {
          b.w[u][s] = i < st.nvec ? T::load(st.rows[s], i) : typename T::Load{};
        } else {
          b.w[u][s] = i < st.nvec ? load_stream16(reinterpret_cast<const uint4*>(st.rows[s]) + i)
                                  : uint4{};
          if constexpr (kQ)
            b.scale[u][s] = i < st.nvec ? to_f32(__ldg(static_cast<const typename T::Scale*>(
                                              st.scale_rows[s]) + (i >> p.group_shift)))
                                        : 0.f;
        }
      }
    }
    if (with_x) load_x(b, st.nvec, base);
  };
  const float4* x4 = kNorm ? staged : reinterpret_cast<const float4*>(p.x);
  float acc[kStreams];
  auto use = [&](const Batch& b, int nvec, int base) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = base + u * stride;
      if (i >= nvec) break;
      if constexpr (kBlocks) {
        const StagedCodes x = staged_codes(staged, p.in);
#pragma unroll
        for (int s = 0; s < kStreams; ++s) acc[s] += T::dot(b.w[u][s], x, i);
      } else if constexpr (kCodes) {
#pragma unroll
        for (int s = 0; s < kStreams; ++s)
          acc[s] = fmaf(dot_x_codes<T>(b.w[u][s], b.x[u]), b.scale[u][s], acc[s]);
      } else if constexpr (kQ) {
        const StagedCodes x = staged_codes(staged, p.in);
        const float x_scale = x.scale[kVec == 32 ? i : i >> 1];
#pragma unroll
        for (int s = 0; s < kStreams; ++s)
          acc[s] = fmaf(float(dot_codes<T>(b.w[u][s], x, i)) * x_scale, b.scale[u][s], acc[s]);
      } else {
        float xs[kVec];
#pragma unroll
        for (int k = 0; k < kVec / 4; ++k) {
          const float4 v =
              kNorm ? x4[int64_t(i) * (kVec / 4) + k] : __ldg(x4 + int64_t(i) * (kVec / 4) + k);
          xs[4 * k] = v.x;
          xs[4 * k + 1] = v.y;
          xs[4 * k + 2] = v.z;
          xs[4 * k + 3] = v.w;
        }
#pragma unroll
        for (int s = 0; s < kStreams; ++s) {
          float ws[kVec];
          unpack16<T>(b.w[u][s], ws);
#pragma unroll
          for (int k = 0; k < kVec; ++k) acc[s] = fmaf(ws[k], xs[k], acc[s]);
        }
      }
    }
  };

  // The weights do not depend on earlier kernels: the first loads go out before the wait.
  gemv_stamp(p.trace, kStartMin, true);
  const int first = sub * 32 + lane;
  int chunk = blockIdx.x;
  Streams st = streams_of(chunk);
  if (independent && st.nvec == 0 && p.sync.wait < 0) return;  // flag waits are barriers
  Batch cur;
  load(cur, st, first, false);
  dependency_wait(p.sync);
  gemv_stamp(p.trace, kWaitMin, true);
  if (p.early_trigger) allow_dependent_launch();
  load_x(cur, st.nvec, first);
  float scale = 1.f;
  int parity = 0;  // chunk_epilogue: which half of chunk_outputs this chunk writes
  if constexpr (kCodes) {
    if constexpr (kNorm) scale = rms_scale_of_codes(p.x_codes, p.in, p.eps);
  } else if constexpr (kQ) {
    scale = stage_codes<kNorm>(p, staged, scratch);
  } else if constexpr (kNorm) {
    scale = stage_input<float4>(p, reinterpret_cast<float*>(staged), scratch);
  }
  gemv_stamp(p.trace, kStagedMax, false);
  for (;;) {
#pragma unroll
    for (int s = 0; s < kStreams; ++s) acc[s] = 0.f;
    int base = first;
    if constexpr (kPipeline) {
      Batch next;
      for (; base < st.nvec; base += step) {
        if (base + step < st.nvec) load(next, st, base + step);
        use(cur, st.nvec, base);
        cur = next;
      }
    } else {
      for (; base < st.nvec; base += step) {
        use(cur, st.nvec, base);
        if (base + step < st.nvec) load(cur, st, base + step);
      }
    }
    const int row0 = st.row0;
    const int chunk_row0 = chunk * groups_per_block * kRows;
    chunk += gridDim.x;
    // Only int8 and q4 codes loop (gemv_grid_share): floats and ggml's blocks keep the code of one
    // chunk a block (measured for floats; ggml's blocks not yet measured with the loop).
    const bool more = kQ && !kBlocks && chunk * groups_per_block * kRows < p.rows;
    if (more) {  // the next chunk's first loads go out before this one's sums and stores
      st = streams_of(chunk);
      load(cur, st, first);
    } else if (!p.early_trigger) {
      allow_dependent_launch();  // only the sums and stores are left
    }

#pragma unroll
    for (int s = 0; s < kStreams; ++s) acc[s] = warp_sum(acc[s]);
    if (split > 1) {
      if (lane == 0)
#pragma unroll
        for (int s = 0; s < kStreams; ++s) partial[warp][s] = acc[s];
      __syncthreads();
      if (sub == 0)
#pragma unroll
        for (int s = 0; s < kStreams; ++s)
          for (int t = 1; t < split; ++t) acc[s] += partial[warp + t][s];
    }
    if (lane == 0 && sub == 0 && row0 < p.rows) {
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int v = row0 + r;
        if (v >= p.rows) break;
        float value;
        if constexpr (kGated)
          p.out[0].y[v] = value = SwiGluOp{}(acc[r] * scale, acc[kRows + r] * scale);
        else
          value = store_row(p, v, acc[r] * scale, !rope);
        if (chunk_epilogue) chunk_outputs[parity][v - chunk_row0] = value;
      }
    }
    // The block's rows are whole blocks of 8 (codes) or pairs (rope): launch_gemv_variant.
    if (chunk_epilogue) {
      __syncthreads();  // the chunk's outputs are in chunk_outputs[parity]
      const int rows = groups_per_block * kRows, v = chunk_row0 + lane;
      const bool valid = lane < rows && v < p.rows;
      if (warp == 0) {
        const float value = valid ? chunk_outputs[parity][lane] : 0.f;
        if (rope) {
          const float partner = __shfl_xor_sync(0xffffffffu, value, 1);
          if (valid) rope_store_row(p, v, value, partner);
        } else {
          write_input_code(value, valid && p.y_codes_norm != nullptr ? p.y_codes_norm[v] : 1.f, v,
                           valid, p.rows, p.y_codes);
        }
      }
      parity ^= 1;  // the next chunk's outputs go to the other half while warp 0 reads this one
    }
    if (!more) return gemv_stamp(p.trace, kEndMin, true);
    if (split > 1) __syncthreads();  // partial is written again for the next chunk
    if (independent && st.nvec == 0) return;
  }
}

template <class T, int kRows, int kUnroll, bool kPipeline, bool kNorm, bool kGated,
          bool kCodes = false>
// (kCodes: at least 4 blocks an SM, 64 registers, which r1u2w8 needs no spills for; gated 3, as
// many as without the codes: held to 64 its q4 kernel spilled; two rows a warp 3 too, 80
// registers without spills for r2u2w8. The others leave it open, 0: an explicit 1 made ptxas
// give r1u4w8 with a norm 96 registers, not 78.)
__global__ void __launch_bounds__(256, kCodes ? (kGated || kRows > 1 ? 3 : 4) : 0)
    gemv_kernel(const __grid_constant__ GemvParams p) {
  if (p.sync.allow_first) allow_dependent_launch();
  gemv_block<T, kRows, kUnroll, kPipeline, kNorm, kGated, kCodes>(p);
  signal_done(p.sync);
}

// Any size and alignment: one warp per virtual row, one element per lane at a time.
template <class T, bool kNorm, bool kGated>
__global__ void gemv_scalar_kernel(const __grid_constant__ GemvParams p) {
  extern __shared__ float4 staged[];
  __shared__ float scratch[32];
  grid_dependency_wait();
  allow_dependent_launch();
  const float* x = p.x;
  float scale = 1.f;
  if constexpr (kNorm) {
    scale = stage_input<float>(p, reinterpret_cast<float*>(staged), scratch);
    x = reinterpret_cast<const float*>(staged);
  }
  const int lane = threadIdx.x & 31;
  const int v = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (v >= p.rows) return;
  if constexpr (kGated) {
    const char* wg = weight_row<T>(p.out[0].w, v, p.in);
    const char* wu = weight_row<T>(p.out[1].w, v, p.in);
    const void *sg = scale_row<T>(p, 0, v), *su = scale_row<T>(p, 1, v);
    float g = 0.f, u = 0.f;
    for (int k = lane; k < p.in; k += 32) {
      g = fmaf(weight_value<T>(wg, sg, k, p.group), x[k], g);
      u = fmaf(weight_value<T>(wu, su, k, p.group), x[k], u);
    }
    g = warp_sum(g);
    u = warp_sum(u);
    if (lane == 0) p.out[0].y[v] = SwiGluOp{}(g * scale, u * scale);
  } else {
    const OutputRow o = locate(p, v);
    const char* w = weight_row<T>(p.out[o.output].w, o.row, p.in);
    const void* sr = scale_row<T>(p, o.output, o.row);
    float acc = 0.f;
    for (int k = lane; k < p.in; k += 32) acc = fmaf(weight_value<T>(w, sr, k, p.group), x[k], acc);
    acc = warp_sum(acc);
    if (lane == 0) store_row(p, v, acc * scale);
  }
}

// The share (percent) of the blocks the GPU holds at once that a GEMV of int8 or q4 codes
// launches, each looping over chunks of rows: 100 by default; KUIPER_CUDA_GEMV_GRID=chunks (0:
// one block a chunk) or =<percent> (fewer leave room for the next kernel's blocks, which under
// programmatic launch start their first weight loads while this one drains), for measurements.
int gemv_grid_share();

// Which GEMVs read and write their inputs' codes (MatmulInput::codes) where given, for
// measurements: KUIPER_CUDA_GEMV_CODES=1 (default) all, =ffn only the feed-forward's hidden
// activations (gated_matmul -> w2), =0 none (every GEMV quantizes its input itself).
enum class InputCodes { kNone, kFfn, kAll };
InputCodes gemv_input_codes();

// Warps per group of rows when the variant leaves it open: the fewest (no shared-memory sum)
// that still give ~16 warps per SM, while each lane keeps at least two loads per row.
inline int auto_split(int rows_per_warp, int warps_per_block, int rows, int nvec) {
  const int64_t groups = (rows + rows_per_warp - 1) / rows_per_warp;
  int split = 1;
  while (split < warps_per_block && groups * split < 16 * int64_t(sm_count()) &&
         nvec >= 64 * split * 2)
    split *= 2;
  return split;
}

// What a GEMV launch did of the epilogues asked for: p.y_codes (its chunks are whole blocks of 8
// rows) and p.rope (whole pairs of rows, at most 32 a chunk); what it did not, the caller does
// after.
struct GemvEpilogues {
  bool codes = false, rope = false;
};

// Rows a warp of variant kV computes together (gated: of each of the two matrices).
template <bool kGated, int kV>
constexpr int kVariantRows = kGated ? std::max(1, kGemvVariants[kV].rows_per_warp / 2)
                                    : kGemvVariants[kV].rows_per_warp;

// Warps sharing one group of rows of variant kV for p.
template <class DT, bool kGated, int kV>
int gemv_variant_split(const GemvParams& p) {
  constexpr GemvVariant c = kGemvVariants[kV];
  return c.warps_per_row != 0
             ? c.warps_per_row
             : auto_split(kVariantRows<kGated, kV>, c.warps_per_block, p.rows, p.in / kPer16<DT>);
}

// Variant kV's kernel for p: with or without the norm prologue, over the input's codes where p
// has them (int8, q4).
template <class DT, bool kGated, int kV>
auto gemv_variant_kernel(const GemvParams& p) {
  constexpr GemvVariant c = kGemvVariants[kV];
  constexpr int kRows = kVariantRows<kGated, kV>;
  auto kernel = p.norm != nullptr ? gemv_kernel<DT, kRows, c.unroll, c.pipelined, true, kGated>
                                  : gemv_kernel<DT, kRows, c.unroll, c.pipelined, false, kGated>;
  if constexpr (kIsQuantized<DT> && !kIsBlocks<DT>)
    if (p.x_codes != nullptr)
      kernel = p.norm != nullptr ? gemv_kernel<DT, kRows, c.unroll, c.pipelined, true, kGated, true>
                                 : gemv_kernel<DT, kRows, c.unroll, c.pipelined, false, kGated, true>;
  return kernel;
}

// Launches variant v (clearing p.y_codes and p.rope where its chunks do not allow them).
template <class DT, bool kGated, int kV = 0>
GemvEpilogues launch_gemv_variant(int v, GemvParams& p, size_t shared, cudaStream_t stream) {
  if constexpr (kV < kNumGemvVariants) {
    if (v != kV) return launch_gemv_variant<DT, kGated, kV + 1>(v, p, shared, stream);
    constexpr GemvVariant c = kGemvVariants[kV];
    p.split = gemv_variant_split<DT, kGated, kV>(p);
    const int rows_per_block = kVariantRows<kGated, kV> * c.warps_per_block / p.split;
    if (rows_per_block % kInputCodeBlock != 0 || rows_per_block > 32 ||
        p.rows % kInputCodeBlock != 0)
      p.y_codes = nullptr;
    if (kGated || rows_per_block % 2 != 0 || rows_per_block > 32) p.rope.cos_sin = nullptr;
    const auto kernel = gemv_variant_kernel<DT, kGated, kV>(p);
    const int threads = c.warps_per_block * 32;
    unsigned blocks = blocks_for(p.rows, rows_per_block);
    if (kIsQuantized<DT> && !kIsBlocks<DT> && gemv_grid_share() > 0) {
      // As many blocks as the GPU holds at once, each looping over its chunks of rows: a
      // quantized row is a few loads a lane, so one block a chunk ran in waves of short blocks,
      // each staging the input again.
      const int resident = resident_blocks(reinterpret_cast<const void*>(kernel), threads, shared);
      blocks = std::min(blocks, unsigned(std::max(1, resident * gemv_grid_share() / 100)));
    }
    p.trace = gemv_trace_slot(p.rows, p.in, p.norm != nullptr, kGated, blocks, threads);
    p.sync = next_flag_sync(stream, blocks);
    launch_in_chain(true, kernel, blocks, threads, shared, stream, p);
    return {p.y_codes != nullptr, p.rope.cos_sin != nullptr};
  } else {
    fail("gemv: no variant ", v);
  }
}

// Whether KUIPER_CUDA_GEMV names the variant of every matmul GEMV (measurements): then no shape
// rule below changes it.
bool gemv_variant_forced();

// The variants the shape rule knows.
inline constexpr int kR1U2W8 = 5, kR2U2W8 = 7;
static_assert(kGemvVariants[kR1U2W8].rows_per_warp == 1 && kGemvVariants[kR1U2W8].unroll == 2 &&
              kGemvVariants[kR2U2W8].rows_per_warp == 2 && kGemvVariants[kR2U2W8].unroll == 2);

// r2u2w8 for a GEMV over the input's codes whose rows r1u2w8's resident blocks take in two
// rounds and r2u2w8's in one, else `variant`. Llama-3.1-8B's q/k/v (6144 rows of 4096 on an
// H200): r1u2w8 ran 768 chunks of 8 rows on 528 resident blocks (its second round 45 % full,
// the launch's blocks ending over 4-5 us), r2u2w8 runs 384 chunks of 16 on 396 (three blocks an
// SM at 80 registers): the launch 10.2 -> 5.4 us (trace), decode int8 416.0 419.4 -> 426.7 426.8
// tok/s, q4 564.4 563.7 -> 580.8 580.1 (NOTES.md). TinyLlama's rows fit one round of r1u2w8.
template <class DT>
int one_round_variant(int variant, const GemvParams& p) {
  if (variant != kR1U2W8 || p.x_codes == nullptr || gemv_grid_share() != 100) return variant;
  auto rows_a_round = [&]<int kV>() {
    constexpr int warps = kGemvVariants[kV].warps_per_block;
    const auto kernel = gemv_variant_kernel<DT, false, kV>(p);
    // The codes path stages nothing: no dynamic shared memory (run_gemv).
    return int64_t(resident_blocks(reinterpret_cast<const void*>(kernel), warps * 32, 0)) *
           (kVariantRows<false, kV> * warps / gemv_variant_split<DT, false, kV>(p));
  };
  const int64_t one = rows_a_round.template operator()<kR1U2W8>();
  const int64_t two = rows_a_round.template operator()<kR2U2W8>();
  return p.rows > one && p.rows <= two ? kR2U2W8 : variant;
}

// v rounded to DT at p[0..3] (8-byte aligned for 16-bit DT, 16-byte for float), and when lo is
// not null the rounding error, rounded in turn, at lo[0..3].
template <class DT>
__device__ __forceinline__ void store_rounded4(float4 v, DT* __restrict__ p, DT* __restrict__ lo) {
  if constexpr (std::is_same_v<DT, float>) {
    *reinterpret_cast<float4*>(p) = v;
  } else {
    const float f[4] = {v.x, v.y, v.z, v.w};
    alignas(8) DT h[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) h[k] = from_f32<DT>(f[k]);
    *reinterpret_cast<uint2*>(p) = *reinterpret_cast<const uint2*>(h);
    if (lo == nullptr) return;
    alignas(8) DT e[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) e[k] = from_f32<DT>(f[k] - to_f32(h[k]));
    *reinterpret_cast<uint2*>(lo) = *reinterpret_cast<const uint2*>(e);
  }
}

// normalise (fp32) or round to 16 bits (see matmul.cu) one row of x per block; `lo` (or null)
// takes the rounding error, rounded in turn. Rows of a multiple of 4 values go 16 bytes a load,
// several loads in flight per thread (the pointers do not alias: the loads need not wait for the
// stores): a plain strided loop, one load's latency after another, took 12-18 us for rows of
// 5632-14336 values, more than the GEMM after it.
template <class DT, bool kNorm>
__global__ void prepare_kernel(const float* __restrict__ x, const float* __restrict__ norm,
                               float eps, int in, DT* __restrict__ hi, DT* __restrict__ lo) {
  grid_dependency_wait();
  allow_dependent_launch();
  __shared__ float scratch[32];
  const int64_t at = int64_t(blockIdx.x) * in;
  const float* row = x + at;
  DT* h = hi + at;
  DT* l = lo != nullptr ? lo + at : nullptr;
  const bool vec = in % 4 == 0 && reinterpret_cast<uintptr_t>(row) % 16 == 0 &&
                   (!kNorm || reinterpret_cast<uintptr_t>(norm) % 16 == 0);
  float scale = 1.f;
  if (vec) {
    const auto* row4 = reinterpret_cast<const float4*>(row);
    const auto* norm4 = reinterpret_cast<const float4*>(norm);
    const int count = in / 4;
    if constexpr (kNorm) {
      float ss = 0.f;
#pragma unroll 4
      for (int i = threadIdx.x; i < count; i += blockDim.x) {
        const float4 v = row4[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
      }
      scale = rsqrtf(block_sum(ss, scratch) / float(in) + eps);
    }
#pragma unroll 4
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
      float4 v = row4[i];
      if constexpr (kNorm) {
        const float4 n = norm4[i];
        v = make_float4(v.x * scale * n.x, v.y * scale * n.y, v.z * scale * n.z, v.w * scale * n.w);
      }
      store_rounded4<DT>(v, h + 4 * i, l != nullptr ? l + 4 * i : nullptr);
    }
    return;
  }
  if constexpr (kNorm) {
    float ss = 0.f;
    for (int i = threadIdx.x; i < in; i += blockDim.x) ss += row[i] * row[i];
    scale = rsqrtf(block_sum(ss, scratch) / float(in) + eps);
  }
  for (int i = threadIdx.x; i < in; i += blockDim.x) {
    const float v = kNorm ? row[i] * scale * norm[i] : row[i];
    const DT r = from_f32<DT>(v);
    h[i] = r;
    if constexpr (!std::is_same_v<DT, float>)
      if (l != nullptr) l[i] = from_f32<DT>(v - to_f32(r));
  }
}

// x rounded to 16 bits (hi, and the rounding error in lo unless null), 4 values a thread over
// the whole [n, in] input: prepare_kernel without a norm takes one block a row, which for the
// 64 rows of 14336 values of a serving step's w2 is a chain of four batches of loads a thread.
template <class DT>
__global__ void round_kernel(const float4* __restrict__ x, int64_t count4, DT* __restrict__ hi,
                             DT* __restrict__ lo) {
  grid_dependency_wait();
  allow_dependent_launch();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count4) store_rounded4<DT>(x[i], hi + 4 * i, lo != nullptr ? lo + 4 * i : nullptr);
}

// Whether the q/k/v GEMV ends with the rotation and cache stores (matmul_rope_store), for
// measurements: KUIPER_CUDA_GEMV_ROPE=0 leaves them to rope_store's own launch.
bool gemv_folds_rope();

// Runs the GEMV of p (weights of storage type T) with `variant`; returns whether it did the
// rope epilogue (p.rope; when not, the caller launches rope_store).
// by_shape: `variant` is the dtype's default, which one_round_variant may change for the shape.
template <class T, bool kGated>
bool run_gemv(int variant, GemvParams p, const DeviceContext& ctx, bool by_shape = false) {
  using DT = DeviceType<T>;
  constexpr int kVec = kPer16<DT>;
  cudaStream_t stream = stream_of(ctx);
  if (p.rows == 0) return false;
  if (!gemv_folds_rope()) p.rope.cos_sin = nullptr;
  if (gemv_input_codes() == InputCodes::kNone) p.x_codes = p.y_codes = nullptr;
  if (gemv_input_codes() == InputCodes::kFfn) {
    if (!kGated) p.y_codes = nullptr;
    if (p.norm != nullptr) p.x_codes = nullptr;
  }
  if (p.norm != nullptr && p.in > kMaxStagedInput) {  // too long for shared memory
    p.x_codes = nullptr;  // the codes path is for inputs that fit
    float* xn = static_cast<float*>(workspace(ctx, size_t(p.in) * sizeof(float)).scratch);
    launch(prepare_kernel<float, true>, 1, 256, 0, stream, p.x, p.norm, p.eps, p.in, xn,
           static_cast<float*>(nullptr));
    p.x = xn;
    p.norm = nullptr;
  }
  bool vec = p.in % kVec == 0 && aligned16(p.x) && (p.norm == nullptr || aligned16(p.norm));
  if constexpr (kIsBlocks<DT>) {
    // Whole blocks (check_weight), rows aligned for the type's loads, the staged codes in the
    // 48 KB a block gets without opting in.
    for (int j = 0; j < p.n_outputs; ++j)
      vec = vec && reinterpret_cast<uintptr_t>(p.out[j].w) % DT::kAlign == 0;
    vec = vec && staged_codes_bytes(p.in) <= (48 << 10);
    p.group_shift = 0;
  } else if constexpr (kIsQuantized<DT>) {
    for (int j = 0; j < p.n_outputs; ++j) vec = vec && aligned16(p.out[j].w);
    // The vector path needs whole input blocks, groups of kVec << group_shift codes, and room
    // for the staged codes in the 48 KB a block gets without opting in.
    vec = vec && p.in % 32 == 0 && p.group >= kVec && (p.group & (p.group - 1)) == 0 &&
          staged_codes_bytes(p.in) <= (48 << 10);
    p.group_shift = vec ? __builtin_ctz(unsigned(p.group)) - __builtin_ctz(unsigned(kVec)) : 0;
  } else {
    for (int j = 0; j < p.n_outputs; ++j) vec = vec && aligned16(p.out[j].w);
  }
  size_t shared = p.norm != nullptr ? size_t(p.in) * sizeof(float) : 0;
  if (kIsQuantized<DT> && vec) shared = staged_codes_bytes(p.in);
  // The input's codes replace the staging where the vector path of int8/q4 codes takes x as it is.
  if (!(kIsQuantized<DT> && !kIsBlocks<DT> && vec)) p.x_codes = nullptr;
  if (p.x_codes != nullptr) shared = 0;
  p.early_trigger = pdl_mode() == 2;
  int8_t* const y_codes = p.y_codes;
  GemvEpilogues done;
  if (vec) {
    if constexpr (kIsQuantized<DT> && !kIsBlocks<DT> && !kGated)
      if (by_shape && !gemv_variant_forced()) variant = one_round_variant<DT>(variant, p);
    done = launch_gemv_variant<DT, kGated>(variant, p, shared, stream);
  } else {
    constexpr int kWarps = 4;
    p.split = 1;
    p.y_codes = nullptr;
    launch(p.norm != nullptr ? gemv_scalar_kernel<DT, true, kGated>
                             : gemv_scalar_kernel<DT, false, kGated>,
           blocks_for(p.rows, kWarps), kWarps * 32, shared, stream, p);
  }
  if (y_codes != nullptr && !done.codes)
    launch_input_codes(p.out[0].y, p.y_codes_norm, p.rows, y_codes, stream);
  return done.rope;
}

// ---- n > 1: cuBLAS ----------------------------------------------------------------------

// The input as the GEMMs read it: fp32 weights take x (normalised into the workspace if asked);
// 16-bit weights take it rounded to their type (hi), or as two parts hi + lo with
// split_gemm_input() (see matmul.cu).
struct GemmInput {
  const void* hi;
  const void* lo;  // null: hi alone
};

// Workspace bytes prepare_gemm_input needs.
template <class T>
size_t gemm_input_bytes(const MatmulInput& in, int n, int k) {
  const size_t count = size_t(n) * k;
  if constexpr (std::is_same_v<T, float>) return in.norm.empty() ? 0 : count * sizeof(float);
  else return (split_gemm_input() ? 2 : 1) * ((count * sizeof(T) + 255) / 256 * 256);
}

template <class T>
GemmInput prepare_gemm_input(const MatmulInput& in, int n, int k, char* scratch,
                             cudaStream_t stream) {
  using DT = DeviceType<T>;
  const float* x = in.x.data<float>();
  const float* norm = in.norm.empty() ? nullptr : in.norm.data<float>();
  constexpr int kThreads = 256;
  if constexpr (std::is_same_v<T, float>) {
    if (norm == nullptr) return {x, nullptr};
    float* xn = reinterpret_cast<float*>(scratch);
    launch(prepare_kernel<float, true>, unsigned(n), kThreads, 0, stream, x, norm, in.eps, k, xn,
           static_cast<float*>(nullptr));
    return {xn, nullptr};
  } else {
    const size_t part_bytes = (size_t(n) * k * sizeof(T) + 255) / 256 * 256;  // lo stays aligned
    DT* hi = reinterpret_cast<DT*>(scratch);
    DT* lo = split_gemm_input() ? reinterpret_cast<DT*>(scratch + part_bytes) : nullptr;
    const int64_t count = int64_t(n) * k;
    if (norm == nullptr && count % 4 == 0 && aligned16(x)) {
      launch(round_kernel<DT>, blocks_for(count / 4, kThreads), kThreads, 0, stream,
             reinterpret_cast<const float4*>(x), count / 4, hi, lo);
      return {hi, lo};
    }
    launch(norm != nullptr ? prepare_kernel<DT, true> : prepare_kernel<DT, false>, unsigned(n),
           kThreads, 0, stream, x, norm, in.eps, k, hi, lo);
    return {hi, lo};
  }
}

// y = bias, or y += bias, broadcast over the rows (a template: defined in the header).
template <int = 0>
__global__ void add_bias_kernel(const float* bias, float* y, int64_t total, int out,
                                bool accumulate) {
  grid_dependency_wait();
  allow_dependent_launch();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < total) y[i] = (accumulate ? y[i] : 0.f) + bias[i % out];
}

template <class T>
constexpr cudaDataType_t cuda_data_type() {
  if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
  if constexpr (std::is_same_v<T, f16>) return CUDA_R_16F;
  return CUDA_R_16BF;
}

// cuBLAS's types for weights of storage T: fp32 weights take x in fp32 with the pedantic compute
// type (no TF32), 16-bit weights x in their type, accumulating in fp32.
template <class T>
struct GemmTypes {
  static constexpr bool kFloat = std::is_same_v<T, float>;
  static constexpr cudaDataType_t w = cuda_data_type<T>();
  static constexpr cudaDataType_t x = kFloat ? CUDA_R_32F : w;
  static constexpr cublasComputeType_t compute =
      kFloat ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
};

// gemm(part, beta) for each part of x (fp32 weights and the default: one; hi, then lo with
// split_gemm_input()), the second adding to the first.
template <class Gemm>
void for_each_part(const GemmInput& x, float beta, const Gemm& gemm) {
  for (const void* part : {x.hi, x.lo}) {
    if (part == nullptr) break;
    gemm(part, beta);
    beta = 1.f;
  }
}

// y[:, 0:rows] (ld ldy) = beta * y + x w^T for w [rows, k] of storage T.
template <class T>
void gemm_products(const GemmInput& x, const void* w, float* y, int n, int k, int rows, int ldy,
                   float beta, const DeviceContext& ctx) {
  using G = GemmTypes<T>;
  auto handle = static_cast<cublasHandle_t>(ctx.cublas_handle());
  // Column-major, cuBLAS sees w as k x rows, x as k x n and y as rows x n: y = w^T x.
  const float one = 1.f;
  for_each_part(x, beta, [&](const void* part, float b) {
    KUIPER_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, k, &one, w, G::w, k,
                                     part, G::x, k, &b, y, CUDA_R_32F, ldy, G::compute,
                                     CUBLAS_GEMM_DEFAULT));
  });
}

// Whether `second` lies a positive multiple of 16 bytes past `first`: a batch stride the
// Hopper GEMM kernels' TMA descriptors can take (no negative strides: a pair of separate
// allocations in the wrong order made cuBLAS read out of bounds).
inline bool strides_after(const void* first, const void* second) {
  const ptrdiff_t d = static_cast<const char*>(second) - static_cast<const char*>(first);
  return d > 0 && d % 16 == 0;
}

// Whether gemm_pair_products takes (w0, y0) and (w1, y1) as one call.
inline bool pairable(const void* w0, const void* w1, const float* y0, const float* y1) {
  return pair_gemms() && strides_after(w0, w1) && strides_after(y0, y1);
}

// y0 = beta * y0 + x w0^T and y1 = beta * y1 + x w1^T for two weights of one shape [rows, k]
// (k and v of a block, gate and up), as one strided-batched GEMM when the pair allows it
// (pairable: the model places such weights, and k and v, side by side): the batch's second
// matrices are the first ones' offset apart, the input is shared (stride 0). Apart, k and v
// are GEMMs too small for the GPU (1024 x 4096 at 64 rows for Llama-3.1-8B: cuBLAS split them
// over k and added a reduction kernel); as a batch of two they fill it twice as well, and a
// pair is one launch instead of two. Returns false (nothing done) where the pair is not
// pairable; the caller then runs two GEMMs.
template <class T>
bool gemm_pair_products(const GemmInput& x, const void* w0, const void* w1, float* y0, float* y1,
                        int n, int k, int rows, float beta, const DeviceContext& ctx) {
  if (!pairable(w0, w1, y0, y1)) return false;
  const ptrdiff_t w_bytes = static_cast<const char*>(w1) - static_cast<const char*>(w0);
  const ptrdiff_t y_bytes = reinterpret_cast<char*>(y1) - reinterpret_cast<char*>(y0);
  const long long w_stride = w_bytes / ptrdiff_t(sizeof(T));
  const long long y_stride = y_bytes / ptrdiff_t(sizeof(float));
  using G = GemmTypes<T>;
  auto handle = static_cast<cublasHandle_t>(ctx.cublas_handle());
  const float one = 1.f;
  for_each_part(x, beta, [&](const void* part, float b) {
    KUIPER_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, k, &one, w0, G::w, k, w_stride, part, G::x, k,
        0, &b, y0, CUDA_R_32F, rows, y_stride, 2, G::compute, CUBLAS_GEMM_DEFAULT));
  });
  return true;
}

// y starts as the bias (plus what it held when accumulating); returns the beta the products
// then take.
inline float start_output(const float* bias, float* y, int n, int out, bool accumulate,
                          cudaStream_t stream) {
  if (bias == nullptr) return accumulate ? 1.f : 0.f;
  constexpr int kThreads = 256;
  launch(add_bias_kernel<>, blocks_for(int64_t(n) * out, kThreads), kThreads, 0, stream, bias, y,
         int64_t(n) * out, out, accumulate);
  return 1.f;
}

// One GEMM over a shared input: y [n, rows] = beta * y + x w^T.
struct GemmJob {
  const void* w;
  float* y;
  int rows;
  float beta;
};

// The jobs in order, each two neighbours of one shape and beta as one batched call
// (gemm_pair_products), the others alone.
template <class T>
void run_gemms(const GemmInput& x, std::span<const GemmJob> jobs, int n, int k,
               const DeviceContext& ctx) {
  for (size_t j = 0; j < jobs.size(); ++j) {
    const GemmJob& a = jobs[j];
    if (a.rows == 0) continue;
    if (j + 1 < jobs.size()) {
      const GemmJob& b = jobs[j + 1];
      if (b.rows == a.rows && b.beta == a.beta &&
          gemm_pair_products<T>(x, a.w, b.w, a.y, b.y, n, k, a.rows, a.beta, ctx)) {
        ++j;
        continue;
      }
    }
    gemm_products<T>(x, a.w, a.y, n, k, a.rows, a.rows, a.beta, ctx);
  }
}

// ---- quantized weights, n > 1: dequantized to fp16 in chunks of rows, then tensor-core GEMMs ----

// Rows of quantized weights expanded per prefill GEMM: a chunk of at most this many weights keeps the
// fp16 copy to 64 MB whatever the matrix (a 128k-row classifier too).
constexpr int64_t kDequantChunk = int64_t(32) << 20;

// Codes Q (Int8Codes or Q4Codes of device scale types, or a ggml block type): `count` values of
// rows of `in` from `codes` (and their group scales from `scales`) to fp16.
template <class Q>
__global__ void dequantize_kernel(const char* codes, const void* scales, int64_t count, int in,
                                  int group, __half* out) {
  grid_dependency_wait();
  allow_dependent_launch();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / in;
    out[i] = __float2half_rn(weight_value<Q>(weight_row<Q>(codes, row, in),
                                             scale_row_of<Q>(scales, row, in, group), i - row * in,
                                             group));
  }
}

// Rows of a chunk for `in` columns, and the workspace bytes of its fp16 copy.
inline int64_t dequant_chunk_rows(int in) { return std::max<int64_t>(1, kDequantChunk / in); }
inline size_t dequant_chunk_bytes(int rows, int in) {
  return size_t(std::min<int64_t>(rows, dequant_chunk_rows(in))) * in * sizeof(__half);
}

// y [n, out] = x w^T (+ bias) (or y += the same) for w of codes Q (device scale type, or a ggml
// block type); x is the input in fp16 (its part or parts); `chunk` has dequant_chunk_bytes(out, k).
template <class Q>
void gemm_quantized(const GemmInput& x, const Weight& w, const float* bias, float* y, int n, int k,
                    int out, bool accumulate, __half* chunk, const DeviceContext& ctx) {
  cudaStream_t stream = stream_of(ctx);
  const float beta = start_output(bias, y, n, out, accumulate, stream);
  const void* codes = w.values.raw_data();
  const void* scales = w.quantized() ? w.scales.raw_data() : nullptr;
  const int group = int(w.group());
  const int64_t step = dequant_chunk_rows(k);
  for (int64_t r0 = 0; r0 < out; r0 += step) {
    const int rows = int(std::min<int64_t>(step, out - r0));
    const int64_t count = int64_t(rows) * k;
    constexpr int kThreads = 256;
    launch(dequantize_kernel<Q>, unsigned(std::min<int64_t>(blocks_for(count, kThreads), 8192)),
           kThreads, 0, stream, weight_row<Q>(codes, r0, k), scale_row_of<Q>(scales, r0, k, group), count, k, group,
           chunk);
    gemm_products<f16>(x, chunk, y + r0, n, k, rows, out, beta, ctx);
  }
}

// ---- checks -----------------------------------------------------------------------------

// Checks x and norm; returns (n, in).
struct InputShape {
  int n, in;
};
InputShape check_input(const char* op, const MatmulInput& in);
// Checks a weight of `wtype` with `in` columns and its output [n, rows] (and bias); returns rows.
int check_projection(const char* op, const Weight& w, DType wtype, const Tensor& bias,
                     const Tensor& y, int n, int in);

}  // namespace kuiper::kernels::cuda
