// Kernel times by name for any CUDA program, through CUPTI's activity API, with no profiler
// installed (the GPU machine has no nsys or ncu):
//   CUDA_INJECTION64_PATH=build/bin/libkernel_trace.so llama_bench MODEL --device cuda ...
// The CUDA driver loads the library and calls InitializeInjection before the program's first
// CUDA call; at exit it prints, to stderr, every kernel's total time, launches and mean, longest
// total first. Kernels inside CUDA graphs are counted one by one. Under programmatic dependent
// launch a kernel's span includes the time its blocks wait for the kernel before it, so spans
// overlap and their sum can exceed the elapsed time.
#include <cupti.h>
#include <cxxabi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct KernelTotal {
  double ns = 0;
  long launches = 0;
};

struct Trace {
  std::mutex mutex;
  std::map<std::string, KernelTotal> kernels;
  uint64_t first_start = UINT64_MAX, last_end = 0;
  double busy_ns = 0;
};
Trace& trace() {
  static Trace t;
  return t;
}

std::string readable(const char* mangled) {
  int status = 0;
  const std::unique_ptr<char, decltype(&std::free)> d(
      abi::__cxa_demangle(mangled, nullptr, nullptr, &status), &std::free);
  std::string name = status == 0 && d ? d.get() : mangled;
  if (name.size() > 160) name.resize(160);
  return name;
}

// Small buffers: the records arrive while the program runs, not all at exit.
void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *size = size_t(1) << 20;
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, *size));
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  Trace& t = trace();
  {
    const std::lock_guard lock(t.mutex);
    CUpti_Activity* record = nullptr;
    while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
      if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel9*>(record);
      KernelTotal& total = t.kernels[readable(k->name)];
      total.ns += double(k->end - k->start);
      ++total.launches;
      t.busy_ns += double(k->end - k->start);
      t.first_start = std::min<uint64_t>(t.first_start, k->start);
      t.last_end = std::max<uint64_t>(t.last_end, k->end);
    }
  }
  std::free(buffer);
}

void report() {
  cuptiActivityFlushAll(1);
  Trace& t = trace();
  const std::lock_guard lock(t.mutex);
  std::vector<std::pair<std::string, KernelTotal>> rows(t.kernels.begin(), t.kernels.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
  std::fprintf(stderr, "kernel_trace: %.3f ms of kernel spans over %.3f ms\n", t.busy_ns / 1e6,
               t.last_end > t.first_start ? double(t.last_end - t.first_start) / 1e6 : 0.0);
  std::fprintf(stderr, "%10s %8s %10s  %s\n", "total_ms", "count", "mean_us", "kernel");
  for (const auto& [name, total] : rows)
    std::fprintf(stderr, "%10.3f %8ld %10.2f  %s\n", total.ns / 1e6, total.launches,
                 total.ns / 1e3 / double(total.launches), name.c_str());
}

}  // namespace

extern "C" int InitializeInjection() {
  if (cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS ||
      cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "kernel_trace: CUPTI refused to trace kernels\n");
    return 0;
  }
  std::atexit(report);
  return 1;
}
