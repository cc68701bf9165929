#pragma once
// Which kernel decoding attention uses (kernels/cuda/attention.cu), for tests and measurements.
// The defaults come from the environment (KUIPER_CUDA_ATTN=split|cluster, KUIPER_CUDA_ATTN_CLUSTER
// = blocks a cluster, KUIPER_CUDA_ATTN_WARPS = warps a block, KUIPER_CUDA_ATTN_SPREAD=0|1,
// KUIPER_CUDA_ATTN_STAGE = keys a stage, KUIPER_CUDA_ATTN_TC=0|1 decode rows on tensor cores,
// KUIPER_CUDA_ATTN_TC_WARPS=2|4 the tensor-core short rows' warps); a test or benchmark may
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
  // Warps a block of the tensor-core kernel's short rows (2: 32 query slots and 32-key tiles a
  // block; 4: 64 and 64, as its prefill chunks; 0: 4 where a block a (row, KV head) all fit the
  // GPU at once, else 2).
  int short_warps = 0;
};

AttentionDecodeConfig attention_decode_config();
void set_attention_decode_config(const AttentionDecodeConfig& config);

}  // namespace kuiper::kernels::cuda
