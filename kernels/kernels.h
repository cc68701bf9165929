#pragma once
// The contract between layers and backends: one function signature per op, and one registry
// per op keyed by (device, dtype). Each backend fills the registries in one table
// (kernels/cpu/register.cpp, kernels/cuda/register.cu); layers look kernels up by the device of
// their tensors and the dtype named under each op below.
//
// Conventions. Activations are fp32, row-major [n, width], n = positions in the batch (prefill
// passes the whole prompt chunk, decoding passes n = 1). All tensors live on ctx.device().
// Outputs may alias inputs only where an op says so.
#include <array>
#include <span>

#include "kuiper/base/device_context.h"
#include "kuiper/base/error.h"
#include "kuiper/tensor/tensor.h"
#include "kuiper/tensor/weight.h"

namespace kuiper::kernels {

// out[i, :] = table[tokens[i], :] as fp32 (dequantized for an int8 table).  tokens int32 [n];
// table [vocab, dim].  Key: table dtype.
using EmbeddingFn = void(const Tensor& tokens, const Weight& table, const Tensor& out,
                         const DeviceContext& ctx);

// out[i, :] = x[i, :] * rsqrt(mean(x[i, :]^2) + eps) * weight.  weight fp32 [dim]; out may alias x.
// Key: fp32.
using RmsNormFn = void(const Tensor& x, const Tensor& weight, float eps, const Tensor& out,
                       const DeviceContext& ctx);

// The input of a projection: x fp32 [n, in], RMS-normalised on the way in when `norm` (fp32 [in])
// is given: norm(x)[i, :] = x[i, :] * rsqrt(mean(x[i, :]^2) + eps) * norm.  Folding the norm into
// the projection saves a kernel and a round trip of x through memory.
struct MatmulInput {
  Tensor x;
  Tensor norm;  // empty: x as it is
  float eps = 0.f;
  // x quantized once by the kernel that wrote it (input_codes_bytes), or empty. Only a CUDA GEMV
  // (n == 1) of int8 or q4 weights reads it, instead of quantizing x in each of its blocks; every
  // other kernel takes x.
  Tensor codes{};
};

// Bytes of the int8 codes of an input of `in` values (in % 32 == 0) as a GEMV of int8 or q4
// weights takes them: the codes of x (times the reader's norm weight, where it normalises x),
// then one fp32 scale (max / 127) per block of 8 values, then each block's sum of x^2 (for
// that norm's rsqrt(mean(x^2) + eps)). Blocks of 8 because the kernel writing them computes 8
// consecutive outputs in one block.
constexpr int64_t kInputCodeBlock = 8;
constexpr int64_t input_codes_bytes(int64_t in) {
  return in + 2 * (in / kInputCodeBlock) * int64_t(sizeof(float));
}

// One projection of the input: y [n, out] from weight [out, in] (float, or int8 with group
// scales: kuiper/tensor/weight.h) and bias fp32 [out] (or empty). codes (or empty): where a
// CUDA GEMV (n == 1, one output) also writes y's codes (MatmulInput::codes) for the projection
// that reads y, normalised by codes_norm (fp32 [out]; empty: y as it is).
struct MatmulOutput {
  Weight weight;
  Tensor bias;
  Tensor y;
  Tensor codes{};
  Tensor codes_norm{};
};

// For every output: y = norm(x) * weight^T (+ bias), or with `accumulate` y += the same (the
// residual add folded into the projection).  All weights share one dtype; the outputs are
// computed in one pass over the input (e.g. q, k and v of a block in one launch).  No y may alias x.
// Quantized weights of one call also share their group size and scale dtype.  Key: weight dtype.
using MatmulFn = void(const MatmulInput& in, std::span<const MatmulOutput> outs, bool accumulate,
                      const DeviceContext& ctx);

// The SwiGLU feed-forward's first half in one pass: y = silu(norm(x) * w_gate^T) * (norm(x) * w_up^T),
// with w_gate and w_up [hidden, in] of one dtype and y fp32 [n, hidden].  y_codes (or empty):
// where a CUDA GEMV (n == 1) also writes y's codes (MatmulInput::codes) for the projection that
// reads y; other kernels leave it alone.  Key: weight dtype.
using GatedMatmulFn = void(const MatmulInput& in, const Weight& w_gate, const Weight& w_up,
                           const Tensor& y, const Tensor& y_codes, const DeviceContext& ctx);

// Rotary embedding of the batch's queries and keys, and the keys and values appended to the
// cache, in one pass.  In each head, the pair (2j, 2j+1) of row i turns by the angle of frequency
// j at position positions[i] (Meta's interleaved layout; tools/export.py brings Hugging Face
// checkpoints into it).  q fp32 [n, n_heads * head_dim] is rotated in place; k, v fp32
// [n, n_kv_heads * head_dim] are read, and k_cache[positions[i]] = rotated k[i],
// v_cache[positions[i]] = v[i].  positions int32 [n]; cos_sin fp32 [max_seq, head_dim / 2, 2]
// holding (cos, sin); caches [max_seq, n_kv_heads * head_dim].  Key: cache dtype.
using RopeStoreFn = void(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions,
                         const Tensor& cos_sin, int head_dim, const Tensor& k_cache,
                         const Tensor& v_cache, const DeviceContext& ctx);

struct AttentionShape {
  int n_heads = 0;
  int n_kv_heads = 0;  // divides n_heads; query head h reads kv head h / (n_heads / n_kv_heads)
  int head_dim = 0;
};

// Causal attention over the cache: query row i sits at position p = positions[i] and attends to
// cache rows 0..p (which already hold this batch's keys/values):
//   out[i, h] = softmax(q[i, h] . K[0..p, g]^T / sqrt(head_dim)) . V[0..p, g]
// q, out fp32 [n, n_heads * head_dim]; k_cache, v_cache [max_seq, n_kv_heads * head_dim].
// Key: cache dtype.
using AttentionFn = void(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                         const Tensor& positions, const AttentionShape& shape, const Tensor& out,
                         const DeviceContext& ctx);

// One layer's paged KV cache: block b holds positions [j * block_size, (j + 1) * block_size) of
// the sequence whose block table lists b at index j.
struct PagedCache {
  Tensor k, v;  // [num_blocks * block_size, n_kv_heads * head_dim]; fp32, fp16 or bf16
  int block_size = 0;
};

// The rows of a ragged batch. The rows of one sequence are contiguous, at consecutive positions
// (a prefill chunk, or one decode row); every row's own key/value is stored before attention
// runs. All tensors live on the kernel's device, so that a captured CUDA graph replays with new
// values in them.
struct BatchRows {
  Tensor positions;     // int32 [n]: the row's position in its sequence
  Tensor slots;         // int32 [n]: cache row of the row's key/value (block * block_size + offset)
  Tensor row_seqs;      // int32 [n]: the row's sequence, an index into block_tables
  Tensor seq_starts;    // int32 [n_seqs + 1]: rows [seq_starts[s], seq_starts[s + 1]) are sequence s
  Tensor block_tables;  // int32 [n_seqs, max_blocks]
  int max_positions = 0;  // host-side upper bound on positions[i] + 1, only to size grids/splits
};

// RoPE of q and k at positions[i] (as RopeStoreFn), k/v stored at cache row slots[i]. A position
// outside the rotary table or a slot outside the cache: that row's queries become NaN and nothing
// is stored (CUDA), or a kuiper::Error (CPU). Key: cache dtype.
using PagedRopeStoreFn = void(const Tensor& q, const Tensor& k, const Tensor& v,
                              const BatchRows& rows, const Tensor& cos_sin, int head_dim,
                              const PagedCache& cache, const DeviceContext& ctx);

// Causal attention of each row over positions 0..positions[i] of its sequence, read through the
// block table (as AttentionFn otherwise). q, out fp32 [n, n_heads * head_dim]. A row whose
// position reaches past its block table or the cache: NaN (CUDA), or a kuiper::Error (CPU).
// out_codes (or empty): out quantized once for the GEMV that reads it (MatmulInput::codes, wo of
// int8 or q4 weights), which like that GEMV only CUDA and one row (n == 1) write; every other
// case leaves them alone. Key: cache dtype.
using PagedAttentionFn = void(const Tensor& q, const PagedCache& cache, const BatchRows& rows,
                              const AttentionShape& shape, const Tensor& out,
                              const Tensor& out_codes, const DeviceContext& ctx);

// The projection of q, k and v (outs 0, 1, 2: one storage, no accumulate) with the paged
// rope_store (PagedRopeStoreFn) of their result folded in: q = rope(norm(x) wq^T (+ bias)) and
// the rotated keys and the values in the cache at the rows' slots. k and v (outs[1].y, outs[2].y)
// may be left unwritten. One kernel where a CUDA GEMV (n == 1) can end with the rotation (its
// blocks' rows come in whole pairs); elsewhere the projection, then paged_rope_store. The
// layer falls back to matmul and paged_rope_store where no kernel is registered. Key: weight
// dtype.
struct RopeStoreArgs {
  BatchRows rows;
  Tensor cos_sin;  // fp32 [max_seq, head_dim / 2, 2]
  int head_dim = 0;
  PagedCache cache;
};
using MatmulRopeStoreFn = void(const MatmulInput& in, std::span<const MatmulOutput> outs,
                               const RopeStoreArgs& rope, const DeviceContext& ctx);

// out = silu(gate) * up, elementwise; out may alias gate or up.  Key: fp32.
// (The model uses gated_matmul, which includes this; kept as a building block for backends.)
using SwiGluFn = void(const Tensor& gate, const Tensor& up, const Tensor& out,
                      const DeviceContext& ctx);

// out = a + b, elementwise; out may alias a or b.  Key: fp32.
// (The model folds its residual adds into matmul's `accumulate`; kept as a building block.)
using AddFn = void(const Tensor& a, const Tensor& b, const Tensor& out, const DeviceContext& ctx);

// Softmax of each row of x [rows, cols] in place.  Key: fp32.
using SoftmaxFn = void(const Tensor& x, const DeviceContext& ctx);

// out[i] = index of the largest x[i, :] (the first one on ties).  x fp32 [n, cols]; out int32 [n].
// Key: fp32.
using ArgmaxFn = void(const Tensor& x, const Tensor& out, const DeviceContext& ctx);

// Marks where a decoding step of one row starts (begin) and ends on ctx's stream, for a backend
// that chains the step's kernels in between (CUDA's flag waits, cuda/common.cuh). Nothing but
// the step's own kernels may be queued between the two.
using DecodeStepFn = void(bool begin, const DeviceContext& ctx);

template <class Fn>
class KernelRegistry {
 public:
  explicit KernelRegistry(const char* op) : op_(op) {}

  void add(Device device, DType dtype, Fn* fn) { table_[int(device)][int(dtype)] = fn; }

  Fn* find(Device device, DType dtype) const {
    Fn* fn = table_[int(device)][int(dtype)];
    if (fn == nullptr)
      fail("no ", op_, " kernel for ", dtype_name(dtype), " on ", device_name(device),
           device == Device::kCUDA && !cuda_compiled() ? " (built without CUDA)" : "");
    return fn;
  }
  bool has(Device device, DType dtype) const { return table_[int(device)][int(dtype)] != nullptr; }

 private:
  const char* op_;
  std::array<std::array<Fn*, kNumDTypes>, kNumDevices> table_{};
};

struct Registry {
  KernelRegistry<EmbeddingFn> embedding{"embedding"};
  KernelRegistry<RmsNormFn> rmsnorm{"rmsnorm"};
  KernelRegistry<MatmulFn> matmul{"matmul"};
  KernelRegistry<GatedMatmulFn> gated_matmul{"gated_matmul"};
  KernelRegistry<RopeStoreFn> rope_store{"rope_store"};
  KernelRegistry<AttentionFn> attention{"attention"};
  KernelRegistry<PagedRopeStoreFn> paged_rope_store{"paged_rope_store"};
  KernelRegistry<PagedAttentionFn> paged_attention{"paged_attention"};
  KernelRegistry<MatmulRopeStoreFn> matmul_rope_store{"matmul_rope_store"};
  KernelRegistry<SwiGluFn> swiglu{"swiglu"};
  KernelRegistry<AddFn> add{"add"};
  KernelRegistry<SoftmaxFn> softmax{"softmax"};
  KernelRegistry<ArgmaxFn> argmax{"argmax"};
  KernelRegistry<DecodeStepFn> decode_step{"decode_step"};  // fp32: one per device
};

// Every backend's kernels, registered on first use.
const Registry& registry();

// Each backend's table; called once by registry().
void register_cpu_kernels(Registry& r);
void register_cuda_kernels(Registry& r);

}  // namespace kuiper::kernels
