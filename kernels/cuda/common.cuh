#pragma once
// Helpers shared by the CUDA kernels: type mapping, conversions, vector loads, reductions and
// the argument checks of the launch wrappers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <algorithm>
#include <type_traits>

#include "kernels/kernels.h"
#include "kuiper/base/cuda/check.h"

namespace kuiper::kernels::cuda {

inline cudaStream_t stream_of(const DeviceContext& ctx) {
  return static_cast<cudaStream_t>(ctx.cuda_stream());
}

// The device-side twin of a host storage type (the bit layouts are identical, see half.h).
template <class T>
struct DeviceTypeOf {
  using type = T;
};
template <>
struct DeviceTypeOf<f16> {
  using type = __half;
};
template <>
struct DeviceTypeOf<bf16> {
  using type = __nv_bfloat16;
};
template <class T>
using DeviceType = typename DeviceTypeOf<T>::type;

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Unpacks the elements of one 16-byte vector (4 floats or 8 halves) to fp32.
template <class T>
__device__ __forceinline__ void unpack16(const uint4& v, float* out) {
  if constexpr (sizeof(T) == 4) {
    out[0] = __uint_as_float(v.x);
    out[1] = __uint_as_float(v.y);
    out[2] = __uint_as_float(v.z);
    out[3] = __uint_as_float(v.w);
  } else {
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      if constexpr (std::is_same_v<T, __half>) {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
      } else {
        // bf16 -> fp32 is a 16-bit shift: cheaper than the conversion intrinsics.
        out[2 * i] = __uint_as_float(words[i] << 16);
        out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
      }
    }
  }
}

// Code k of an int8 row times its group's scale (scales: the row's, one per `group` codes).
template <class S>
__device__ __forceinline__ float dequantized(const int8_t* codes, const S* scales, int64_t k,
                                             int group) {
  return float(codes[k]) * to_f32(scales[k / group]);
}

// The same for a row of q4 codes: blocks of 32 values in 16 bytes, byte j holding value j in its
// low nibble and j + 16 in its high one, code u standing for u - 8 (kuiper/tensor/weight.h).
template <class S>
__device__ __forceinline__ float dequantized(const uint8_t* codes, const S* scales, int64_t k,
                                             int group) {
  const int j = int(k & 31);
  const uint8_t byte = codes[(k >> 5) * 16 + (j & 15)];
  return float(int(j < 16 ? byte & 15 : byte >> 4) - 8) * to_f32(scales[k / group]);
}

// A 16-byte load of data read once (weights): read-only path, no L1 allocation, so the small
// vectors that every warp re-reads (activations) keep L1 to themselves.
__device__ __forceinline__ uint4 load_stream16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
// Asynchronous 16-byte copies from global into shared memory (cp.async), in commit groups.
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(
                   uint32_t(__cvta_generic_to_shared(dst))),
               "l"(src)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;" ::: "memory");
}
// Waits until at most N of this thread's commit groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
#endif

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum (or max) over the whole block, returned to every thread. `scratch` holds 32 floats; the
// block size is a multiple of 32. Safe to call repeatedly with the same scratch.
template <bool kMax>
__device__ __forceinline__ float block_reduce(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : (kMax ? -INFINITY : 0.f);
  return kMax ? warp_max(v) : warp_sum(v);
}
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  return block_reduce<false>(v, scratch);
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  return block_reduce<true>(v, scratch);
}

// Programmatic dependent launch (Hopper and later). Kernels are launched so that each may start
// while the kernel before it in the stream is still running: its blocks get scheduled once every
// block of the previous kernel has called allow_dependent_launch() (or exited), and they run up
// to grid_dependency_wait(), which returns once the previous kernel has completed and its writes
// are visible. So a kernel calls grid_dependency_wait() before it touches anything that earlier
// work writes or reads; only reads of constant data (weights) may come before it. Each kernel
// allows the next one's launch right after its own wait (the GEMV after its main loop), so at
// most one kernel waits ahead. In a decoding step of ~400 kernels this hides most launch
// latency, and the GEMV's first weight loads overlap the previous kernel. Older GPUs compile
// both to nothing and launch as usual.
__device__ __forceinline__ void allow_dependent_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Flag waits (KUIPER_CUDA_FLAGS, measured against grid_dependency_wait). Within a decoding step
// of one row, kernels that take part count their finished blocks on a counter of their own
// (one per launch of the step, zeroed by the step's first launch), and the next such kernel
// waits until that counter reaches the launch's blocks, instead of waiting for the grid to end
// and the hardware to release it. The order of the stream is kept: a kernel waits on the one
// right before it, whose blocks all started (programmatic launch starts the next kernel only
// then), so every wait is on blocks that run. A launch that takes no part (any other kernel,
// launch_with) breaks the chain and the next one waits for the grid as before.
struct FlagSync {
  unsigned* done = nullptr;  // the step's counters
  int wait = -1;             // the kernel before's counter, or -1: grid_dependency_wait()
  unsigned wait_count = 0;   // its blocks
  int signal = -1;           // this launch's counter, or -1: it counts nothing
  bool allow_first = false;  // allow the next launch as the kernel starts (flag_mode() 1)
};

__device__ __forceinline__ unsigned load_acquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Every thread of the block calls it (a barrier) where it would call grid_dependency_wait().
__device__ __forceinline__ void dependency_wait(const FlagSync& s) {
  if (s.wait < 0) return grid_dependency_wait();
  if (threadIdx.x == 0) {
    while (load_acquire(s.done + s.wait) < s.wait_count) __nanosleep(20);
    __threadfence();
  }
  __syncthreads();
}

// Every thread of the block calls it after its last store: counts the block as done.
__device__ __forceinline__ void signal_done(const FlagSync& s) {
  if (s.signal < 0) return;
  __syncthreads();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(s.done + s.signal, 1u);
  }
}

// 0: off (the default); 1: on, a taking-part kernel allowing the next launch as it starts;
// 2: on, allowing it where it does without flags.
int flag_mode();
// The FlagSync of a launch of `blocks` blocks that takes part, about to be queued on `stream`.
FlagSync next_flag_sync(cudaStream_t stream, unsigned blocks);
// Ends the chain on `stream`: the next launch waits for the grid (every other launch calls it).
// A decoding step's chain starts and ends through decode_step (kernels.h: DecodeStepFn).
void break_flag_chain(cudaStream_t stream);

// Programmatic dependent launch: 0 off, 1 on (the default on compute capability 9.0 and later),
// 2 on with the GEMV allowing the next launch before its main loop rather than after it. The
// environment variable KUIPER_CUDA_PDL overrides it, for measurements.
int pdl_mode();
// Whether environment variable `name` is set to exactly `value` (the switches for measurements).
bool env_is(const char* name, const char* value);
inline bool pdl_enabled() { return pdl_mode() != 0; }
// Multiprocessors of the current device (queried once: the process uses one device).
int sm_count();
// Blocks of `kernel` the whole GPU holds at once (asked of the driver once per kernel, block
// size and shared-memory size; a kernel asking for more than 48 KB must have been allowed it).
int resident_blocks(const void* kernel, int threads, size_t shared);

// Whether attention is launched programmatically too (KUIPER_CUDA_PDL_ATTENTION=0|1 overrides
// the default, for measurements).
bool pdl_attention();

// Whether GEMMs over 16-bit weights (n > 1) take the input as two 16-bit parts, hi + lo, at twice
// the tensor-core work and weight reads (KUIPER_CUDA_GEMM16=split), instead of the default one
// part, the input rounded to the weights' type (see matmul.cu).
bool split_gemm_input();

// Whether two GEMMs of one shape over one input (k and v, gate and up) run as one strided-batched
// cuBLAS call (the default) rather than two (KUIPER_CUDA_GEMM_PAIRS=0, for measurements).
bool pair_gemms();

// Launches a kernel on `stream`; `programmatic`: allowed to overlap the previous kernel's end
// (see above; its grid_dependency_wait() then waits), else it starts once that kernel is done.
template <class... Params, class... Args>
void launch_in_chain(bool programmatic, void (*kernel)(Params...), dim3 grid, dim3 block,
                     size_t shared_bytes, cudaStream_t stream, Args... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = programmatic && pdl_enabled() ? 1 : 0;
  KUIPER_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...));
}
// launch_in_chain for kernels that take no part in flag waits (see FlagSync).
template <class... Params, class... Args>
void launch_with(bool programmatic, void (*kernel)(Params...), dim3 grid, dim3 block,
                 size_t shared_bytes, cudaStream_t stream, Args... args) {
  break_flag_chain(stream);
  launch_in_chain(programmatic, kernel, grid, block, shared_bytes, stream, args...);
}

// Launches a kernel on `stream`, allowed to overlap the previous kernel's end (see above).
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            cudaStream_t stream, Args... args) {
  launch_with(true, kernel, grid, block, shared_bytes, stream, args...);
}

// The context's workspace (DeviceContext::cuda_workspace) as the kernels share it: first
// kWorkspaceCounterBytes of counters that kernels leave at zero (the workspace starts zeroed),
// then scratch for the one op running at a time on the stream.
constexpr size_t kWorkspaceCounterBytes = 16 << 10;
// The last of them hold a decoding step's flag counters (FlagSync), zeroed as the step starts.
constexpr size_t kWorkspaceFlagBytes = 8 << 10;
struct Workspace {
  int* counters;
  void* scratch;
};
Workspace workspace(const DeviceContext& ctx, size_t scratch_bytes);

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

inline unsigned blocks_for(int64_t work, int threads) {
  return unsigned((work + threads - 1) / threads);
}

// Launch wrappers check what they are given: a misplaced tensor is a kuiper::Error, not a fault.
void expect_tensor(const char* op, const char* name, const Tensor& t, DType dtype);
void expect_numel(const char* op, const char* name, const Tensor& t, int64_t numel);

}  // namespace kuiper::kernels::cuda
