#pragma once
// Measurement only (KUIPER_CUDA_GEMV_TRACE=1): each GEMV launch stamps the device's global timer
// when its blocks start, pass the wait for the previous kernel, finish staging the input and
// leave, so that gemv_trace_dump (gemv.h) can show where a decoding step's time goes inside a CUDA
// graph, where kernels overlap under programmatic launch and a profiler's per-kernel durations
// say little. Off (a null slot), each stamp is one uniform branch.
#include <cstdint>

namespace kuiper::kernels::cuda {

// A launch's stamps: min/max of block starts, min/max of waits passed, max of staging done,
// min/max of block ends (ns of %globaltimer).
enum GemvStamp { kStartMin, kStartMax, kWaitMin, kWaitMax, kStagedMax, kEndMin, kEndMax, kStamps };

// The slot of the next launch (null when tracing is off), with its shape for the dump.
unsigned long long* gemv_trace_slot(int rows, int in, bool norm, bool gated, unsigned blocks,
                                    int threads);

__device__ __forceinline__ void gemv_stamp(unsigned long long* slot, GemvStamp first, bool both) {
  if (slot == nullptr || threadIdx.x != 0) return;
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  if (both) atomicMin(slot + first, t);
  atomicMax(slot + first + (both ? 1 : 0), t);
}

}  // namespace kuiper::kernels::cuda
