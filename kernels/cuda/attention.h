#pragma once
// Which kernel decoding attention uses (kernels/cuda/attention.cu), for tests and measurements.
// The defaults come from the environment (KUIPER_CUDA_ATTN=split|cluster, KUIPER_CUDA_ATTN_CLUSTER
// = blocks a cluster, KUIPER_CUDA_ATTN_WARPS = warps a block, KUIPER_CUDA_ATTN_SPREAD=0|1,
// KUIPER_CUDA_ATTN_STAGE = keys a stage, KUIPER_CUDA_ATTN_TC=0|1 decode rows on tensor cores,
// KUIPER_CUDA_ATTN_TC_ORDER=heads|tiles the tensor-core grid's order); a test or benchmark may
// set them.

namespace kuiper::kernels::cuda {

struct AttentionDecodeConfig {
  enum Kernel { kAuto = 0, kSplit = 1, kCluster = 2 };
  int kernel = kAuto;
  int cluster = 0;  // blocks a cluster (a power of two up to 16); 0: chosen from the shape
  int warps = 0;    // warps a block aims at (8 or 16); 0: the default
  // One block an SM (a block asks for more than half an SM's shared memory): 1 yes, 0 no,
  // -1 where the launch's blocks fit one an SM.
  int spread = -1;
  // Keys a pipeline stage holds (a multiple of 32); 0: chosen from the shape.
  int stage_keys = 0;
  // Decode rows (and short chunks) of 16-bit paged caches on the tensor-core kernel
  // (paged_prefill.cu, a second launch): 1 always, 0 never (only prefill chunks go there),
  // -1 where rows are many (rows x KV heads >= the SMs, a serving batch).
  int tensor_cores = -1;
  // The tensor-core kernel's grid: 1 KV heads fastest (the blocks of one sequence's heads run
  // together), 0 tiles fastest (the blocks of one head's tiles of every sequence).
  int heads_fastest = 1;
};

AttentionDecodeConfig attention_decode_config();
void set_attention_decode_config(const AttentionDecodeConfig& config);

}  // namespace kuiper::kernels::cuda
