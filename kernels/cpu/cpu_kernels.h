#pragma once
// The CPU backend's kernels; kernels/cpu/register.cpp puts them into the registries.
#include "kernels/kernels.h"

namespace kuiper::kernels::cpu {

// embedding, matmul and gated_matmul accept fp32, fp16 and bf16 weights, and int8 and q4 with
// group scales (weight_rows.h).
EmbeddingFn embedding;
MatmulFn matmul;
GatedMatmulFn gated_matmul;
RmsNormFn rmsnorm;
RopeStoreFn rope_store;
AttentionFn attention;
// T: the cache's storage type (float, f16, bf16); 16-bit keys and values widen on load.
template <class T>
PagedRopeStoreFn paged_rope_store;
template <class T>
PagedAttentionFn paged_attention;
SwiGluFn swiglu;
AddFn add;
SoftmaxFn softmax;
ArgmaxFn argmax;

// in.x, or a new tensor with in.x RMS-normalised by in.norm when that is given.
Tensor normalized(const MatmulInput& in);

// Threads used by the CPU kernels (default: all cores); OpenBLAS runs inside them, one thread each.
void set_threads(int n);
void single_threaded_blas();
int threads();

}  // namespace kuiper::kernels::cpu
