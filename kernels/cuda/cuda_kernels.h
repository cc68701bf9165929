#pragma once
// The CUDA backend's kernels; kernels/cuda/register.cu puts them into the registries. Templates
// over the storage type (float, f16, bf16) of the tensor the op is keyed by, instantiated in the
// op's .cu file. None of them synchronizes, allocates during a decoding step (n == 1) or reads
// per-token values on the host, so a decoding step can be captured into a CUDA graph.
#include "kernels/kernels.h"

namespace kuiper::kernels::cuda {

template <class T>
void embedding(const Tensor& tokens, const Weight& table, const Tensor& out,
               const DeviceContext& ctx);
// int8 or q4 tables with group scales (fp32 or fp16), or ggml's q8_0, q4_0, q4_k, q6_k blocks.
EmbeddingFn embedding_quantized;
// n == 1: a hand-written GEMV over all outputs in one launch; n > 1: cuBLAS (see matmul.cu).
template <class T>
void matmul(const MatmulInput& in, std::span<const MatmulOutput> outs, bool accumulate,
            const DeviceContext& ctx);
template <class T>
void gated_matmul(const MatmulInput& in, const Weight& w_gate, const Weight& w_up, const Tensor& y,
                  const Tensor& y_codes, const DeviceContext& ctx);
// int8 or q4 weights with group scales, or ggml's blocks: integer GEMV over the codes (n == 1),
// fp16 dequantized chunks for tensor-core GEMMs (n > 1).
MatmulFn matmul_quantized;
GatedMatmulFn gated_matmul_quantized;
// Any weight dtype of matmul: the GEMV ends with the rotation and the cache stores where its
// blocks' rows come in whole pairs (n == 1); else matmul, then paged_rope_store.
MatmulRopeStoreFn matmul_rope_store;
// T: the cache's type.
template <class T>
void rope_store(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& positions,
                const Tensor& cos_sin, int head_dim, const Tensor& k_cache, const Tensor& v_cache,
                const DeviceContext& ctx);
// What a kernel that stores rotated keys and values needs of the rows and the caches (device
// pointers), after the checks of rope_store and paged_rope_store (slots empty: contiguous cache,
// the rows of the positions). The cache's type is one of fp32, fp16 and bf16.
struct RopeStoreTarget {
  const int32_t* positions;
  const int32_t* slots;   // null: the positions
  const float* cos_sin;   // [max_pos, half, 2]
  void* k_cache;          // [cache_rows, kv_width] of cache_dtype
  void* v_cache;
  DType cache_dtype;
  int max_pos;     // rows of the table (and of a contiguous cache: the smaller)
  int cache_rows;
  int half;        // head_dim / 2
  int kv_width;
};
RopeStoreTarget check_rope_store(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& positions, const Tensor& slots,
                                 const Tensor& cos_sin, int head_dim, const Tensor& k_cache,
                                 const Tensor& v_cache);
// Paged caches (kernels.h); T: the cache's type. paged_attention: decode rows and short chunks on
// the kernels of attention (split or cluster), prefill chunks of 16-bit caches on tensor cores.
template <class T>
PagedRopeStoreFn paged_rope_store;
template <class T>
PagedAttentionFn paged_attention;
template <class T>
void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
               const Tensor& positions, const AttentionShape& shape, const Tensor& out,
               const DeviceContext& ctx);

RmsNormFn rmsnorm;
SwiGluFn swiglu;
AddFn add;
SoftmaxFn softmax;
ArgmaxFn argmax;
DecodeStepFn decode_step;

}  // namespace kuiper::kernels::cuda
