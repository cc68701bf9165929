// KUIPER_CUDA_GEMV_TRACE (gemv_trace.cuh): the slots and their dump.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/gemv_trace.cuh"

namespace kuiper::kernels::cuda {
namespace {

constexpr int kSlots = 8192;

struct Shape {
  int rows, in;
  bool norm, gated;
  unsigned blocks;
  int threads;
};

struct Trace {
  unsigned long long* slots = nullptr;  // device: kSlots x kStamps
  std::vector<Shape> shapes = std::vector<Shape>(kSlots);
  std::atomic<unsigned> next{0};  // tensor-parallel ranks launch from their own threads
};

Trace* trace() {
  static Trace* t = [] {
    const char* env = std::getenv("KUIPER_CUDA_GEMV_TRACE");
    if (env == nullptr || env[0] == '0') return static_cast<Trace*>(nullptr);
    static Trace instance;  // for the process: a measurement switch, never freed
    KUIPER_CUDA_CHECK(cudaMalloc(&instance.slots, sizeof(unsigned long long) * kSlots * kStamps));
    return &instance;
  }();
  return t;
}

}  // namespace

unsigned long long* gemv_trace_slot(int rows, int in, bool norm, bool gated, unsigned blocks,
                                    int threads) {
  Trace* t = trace();
  if (t == nullptr) return nullptr;
  const int id = int(t->next++ % kSlots);
  t->shapes[id] = {rows, in, norm, gated, blocks, threads};
  return t->slots + int64_t(id) * kStamps;
}

bool gemv_trace_reset() {
  Trace* t = trace();
  if (t == nullptr) return false;
  std::vector<unsigned long long> init(size_t(kSlots) * kStamps, 0);
  for (int s = 0; s < kSlots; ++s)
    for (int k : {kStartMin, kWaitMin, kEndMin}) init[size_t(s) * kStamps + k] = ~0ull;
  KUIPER_CUDA_CHECK(cudaDeviceSynchronize());
  KUIPER_CUDA_CHECK(cudaMemcpy(t->slots, init.data(), init.size() * sizeof(init[0]),
                               cudaMemcpyHostToDevice));
  return true;
}

void gemv_trace_dump() {
  Trace* t = trace();
  if (t == nullptr) return;
  std::vector<unsigned long long> v(size_t(kSlots) * kStamps);
  KUIPER_CUDA_CHECK(cudaDeviceSynchronize());
  KUIPER_CUDA_CHECK(cudaMemcpy(v.data(), t->slots, v.size() * sizeof(v[0]), cudaMemcpyDeviceToHost));
  std::vector<int> ids;
  for (int s = 0; s < kSlots; ++s)
    if (v[size_t(s) * kStamps + kStartMax] != 0) ids.push_back(s);
  std::sort(ids.begin(), ids.end(), [&](int a, int b) {
    return v[size_t(a) * kStamps + kStartMin] < v[size_t(b) * kStamps + kStartMin];
  });
  if (ids.empty()) return;
  const double t0 = double(v[size_t(ids[0]) * kStamps + kStartMin]);
  double prev_end = t0;
  std::printf("gemv-trace us from the first start: rows x in, blocks x threads | start first..last"
              " | wait passed first..last | staged | end first..last | gap (prev last end -> "
              "first wait)\n");
  for (int s : ids) {
    const unsigned long long* x = &v[size_t(s) * kStamps];
    auto us = [&](int k) { return (double(x[k]) - t0) / 1e3; };
    const Shape& h = t->shapes[s];
    std::printf("gemv-trace %6d x %5d %s%s %4u x %4d | %8.2f %8.2f | %8.2f %8.2f | %8.2f | %8.2f "
                "%8.2f | %6.2f\n",
                h.rows, h.in, h.norm ? "N" : "-", h.gated ? "G" : "-", h.blocks, h.threads,
                us(kStartMin), us(kStartMax), us(kWaitMin), us(kWaitMax), us(kStagedMax),
                us(kEndMin), us(kEndMax), (double(x[kWaitMin]) - prev_end) / 1e3);
    prev_end = double(x[kEndMax]);
  }
}

}  // namespace kuiper::kernels::cuda
