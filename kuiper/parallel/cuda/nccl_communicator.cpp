// NCCL ranks: one communicator per GPU, made together by ncclCommInitAll for a process that runs
// each rank on a thread of its own bound to its GPU (kuiper/parallel/rank_threads.h). The
// collectives are queued on the rank's stream, so a recorded CUDA graph replays them too.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdlib>
#include <numeric>

#include "kuiper/base/cuda/check.h"
#include "kuiper/parallel/communicator.h"

#define KUIPER_NCCL_CHECK(expr)                                                             \
  do {                                                                                      \
    const ncclResult_t kuiper_nccl_ = (expr);                                               \
    if (kuiper_nccl_ != ncclSuccess)                                                        \
      ::kuiper::fail("NCCL error: ", ncclGetErrorString(kuiper_nccl_), " (", #expr, " at ", \
                     __FILE__, ":", __LINE__, ")");                                         \
  } while (0)

namespace kuiper {
namespace {

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size) : comm_(comm), rank_(rank), size_(size) {}
  ~NcclCommunicator() override { ncclCommDestroy(comm_); }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(const Tensor& t, const DeviceContext& ctx) override {
    check(t, ctx);
    KUIPER_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), size_t(t.numel()), ncclFloat32,
                                    ncclSum, comm_, stream(ctx)));
  }

  // NCCL gathers whole buffers one after another ([size, rows, cols]); logits rows want the
  // shards side by side ([rows, size * cols]). One row needs no reordering; more rows gather
  // into the context's workspace and are copied into place, one strided copy per rank.
  void all_gather_columns(const Tensor& shard, const Tensor& out,
                          const DeviceContext& ctx) override {
    check(shard, ctx);
    check(out, ctx);
    const int64_t rows = shard.dim(0), cols = shard.dim(1);
    KUIPER_CHECK(out.ndim() == 2 && out.dim(0) == rows && out.dim(1) == size_ * cols,
                 "all_gather_columns: ", out.describe(), " does not hold ", size_, " shards ",
                 shard.describe());
    const auto count = size_t(shard.numel());
    if (rows == 1) {
      KUIPER_NCCL_CHECK(ncclAllGather(shard.raw_data(), out.raw_data(), count, ncclFloat32, comm_,
                                      stream(ctx)));
      return;
    }
    auto* gathered = static_cast<float*>(ctx.cuda_workspace(out.bytes()));
    KUIPER_NCCL_CHECK(
        ncclAllGather(shard.raw_data(), gathered, count, ncclFloat32, comm_, stream(ctx)));
    const size_t row_bytes = size_t(cols) * sizeof(float);
    for (int r = 0; r < size_; ++r)
      KUIPER_CUDA_CHECK(cudaMemcpy2DAsync(static_cast<float*>(out.raw_data()) + r * cols,
                                          row_bytes * size_t(size_), gathered + size_t(r) * count,
                                          row_bytes, row_bytes, size_t(rows),
                                          cudaMemcpyDeviceToDevice, stream(ctx)));
  }

 private:
  static cudaStream_t stream(const DeviceContext& ctx) {
    return static_cast<cudaStream_t>(ctx.cuda_stream());
  }
  static void check(const Tensor& t, const DeviceContext& ctx) {
    KUIPER_CHECK(t.dtype() == DType::kF32 && t.device() == Device::kCUDA &&
                     ctx.device() == Device::kCUDA,
                 "NCCL ranks exchange fp32 tensors on their GPU, got ", t.describe());
  }

  ncclComm_t comm_;
  int rank_;
  int size_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_nccl_communicators(int size) {
  KUIPER_CHECK(size >= 1, "a group of ranks needs at least one, got ", size);
  const int gpus = cuda_device_count();
  KUIPER_CHECK(gpus >= size, "--tensor-parallel ", size, " on CUDA needs ", size,
               " GPUs, found ", gpus);
  // NVLink SHARP (multicast) collectives stay off: they reserve memory on every GPU and need
  // fabric support that is not everywhere; the ring and tree algorithms serve 2-8 GPUs well.
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  std::vector<ncclComm_t> comms(static_cast<size_t>(size));
  std::vector<int> devices(static_cast<size_t>(size));
  std::iota(devices.begin(), devices.end(), 0);
  // The caller's thread stays on its GPU (rank 0 runs there).
  int current = 0;
  KUIPER_CUDA_CHECK(cudaGetDevice(&current));
  KUIPER_NCCL_CHECK(ncclCommInitAll(comms.data(), size, devices.data()));
  KUIPER_CUDA_CHECK(cudaSetDevice(current));
  std::vector<std::unique_ptr<Communicator>> ranks;
  for (int r = 0; r < size; ++r)
    ranks.push_back(std::make_unique<NcclCommunicator>(comms[size_t(r)], r, size));
  return ranks;
}

}  // namespace kuiper
