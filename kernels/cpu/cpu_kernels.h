#pragma once
// The CPU backend's kernels; kernels/cpu/register.cpp puts them into the registries.
#include "kernels/kernels.h"

namespace kuiper::kernels::cpu {

// embedding and matmul accept fp32, fp16 and bf16 weights.
EmbeddingFn embedding;
MatmulFn matmul;
RmsNormFn rmsnorm;
RopeFn rope;
ScatterRowsFn scatter_rows;
AttentionFn attention;
SwiGluFn swiglu;
AddFn add;
SoftmaxFn softmax;
ArgmaxFn argmax;

// Threads used by the CPU kernels and OpenBLAS (default: all cores).
void set_threads(int n);
int threads();

}  // namespace kuiper::kernels::cpu
