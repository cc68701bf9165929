// Argument checks, launch settings and device facts shared by the kernels (common.cuh).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

namespace kuiper::kernels::cuda {

void expect_tensor(const char* op, const char* name, const Tensor& t, DType dtype) {
  KUIPER_CHECK(!t.empty(), op, ": ", name, " is empty");
  KUIPER_CHECK(t.device() == Device::kCUDA, op, ": ", name, " is ", t.describe(),
               ", expected a tensor on cuda");
  KUIPER_CHECK(t.dtype() == dtype, op, ": ", name, " is ", t.describe(), ", expected ",
               dtype_name(dtype));
}

void expect_numel(const char* op, const char* name, const Tensor& t, int64_t numel) {
  KUIPER_CHECK(t.numel() == numel, op, ": ", name, " is ", t.describe(), ", expected ", numel,
               " elements");
}

Workspace workspace(const DeviceContext& ctx, size_t scratch_bytes) {
  char* base = static_cast<char*>(ctx.cuda_workspace(kWorkspaceCounterBytes + scratch_bytes));
  return {reinterpret_cast<int*>(base), base + kWorkspaceCounterBytes};
}

int flag_mode() {
  static const int mode = pdl_mode() == 0              ? 0
                          : env_is("KUIPER_CUDA_FLAGS", "1") ? 1
                          : env_is("KUIPER_CUDA_FLAGS", "2") ? 2
                                                         : 0;
  return mode;
}

namespace {
// The chain of the decoding step this thread queues (tensor-parallel ranks queue from their own
// threads, each on its own stream).
struct FlagChain {
  cudaStream_t stream = nullptr;  // null: no step
  unsigned* done = nullptr;
  int next = 0;   // the next launch's counter
  int last = -1;  // the counter of the launch queued last, if it took part
  unsigned last_blocks = 0;
};
thread_local FlagChain chain;
constexpr int kFlagCounters = int(kWorkspaceFlagBytes / sizeof(unsigned));

__global__ void zero_flags_kernel(unsigned* done, int n) {
  grid_dependency_wait();
  allow_dependent_launch();
  for (int i = int(threadIdx.x); i < n; i += int(blockDim.x)) done[i] = 0;
}
}  // namespace

FlagSync next_flag_sync(cudaStream_t stream, unsigned blocks) {
  if (chain.stream != stream || chain.next >= kFlagCounters) {
    break_flag_chain(stream);
    return {};
  }
  FlagSync s{chain.done, chain.last, chain.last_blocks, chain.next++, flag_mode() == 1};
  chain.last = s.signal;
  chain.last_blocks = blocks;
  return s;
}

void break_flag_chain(cudaStream_t stream) {
  if (chain.stream == stream) chain.last = -1;
}

// Starts a decoding step's chain on ctx's stream (zeroing its counters), or ends it.
void decode_step(bool begin, const DeviceContext& ctx) {
  chain = {};
  if (!begin || flag_mode() == 0) return;
  const Workspace ws = workspace(ctx, 0);
  auto* done = reinterpret_cast<unsigned*>(reinterpret_cast<char*>(ws.counters) +
                                           kWorkspaceCounterBytes - kWorkspaceFlagBytes);
  launch(zero_flags_kernel, 1, 256, 0, stream_of(ctx), done, kFlagCounters);
  chain = {stream_of(ctx), done};
}

int pdl_mode() {
  static const int mode = [] {
    int device = 0, major = 0;
    KUIPER_CUDA_CHECK(cudaGetDevice(&device));
    KUIPER_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    if (major < 9) return 0;
    const char* env = std::getenv("KUIPER_CUDA_PDL");
    return env != nullptr && (std::strcmp(env, "0") == 0 || std::strcmp(env, "2") == 0)
               ? env[0] - '0'
               : 1;
  }();
  return mode;
}

bool env_is(const char* name, const char* value) {
  const char* env = std::getenv(name);
  return env != nullptr && std::strcmp(env, value) == 0;
}

bool pdl_attention() {
  static const bool on = !env_is("KUIPER_CUDA_PDL_ATTENTION", "0");
  return on;
}

bool split_gemm_input() {
  static const bool split = env_is("KUIPER_CUDA_GEMM16", "split");
  return split;
}

bool pair_gemms() {
  static const bool on = !env_is("KUIPER_CUDA_GEMM_PAIRS", "0");
  return on;
}

int sm_count() {
  static const int count = [] {
    int device = 0, n = 0;
    KUIPER_CUDA_CHECK(cudaGetDevice(&device));
    KUIPER_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
    return n;
  }();
  return count;
}

int resident_blocks(const void* kernel, int threads, size_t shared) {
  static std::mutex mutex;
  static std::map<std::tuple<const void*, int, size_t>, int> known;
  const std::lock_guard lock(mutex);
  auto [it, added] = known.try_emplace({kernel, threads, shared}, 0);
  if (added) {
    int per_sm = 0;
    KUIPER_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, shared));
    it->second = std::max(1, per_sm) * sm_count();
  }
  return it->second;
}

}  // namespace kuiper::kernels::cuda
