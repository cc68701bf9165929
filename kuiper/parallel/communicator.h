#pragma once
// The collectives of tensor parallelism: the ranks of one model each hold a share of its
// matrices and meet twice a block (an all-reduce of the residual stream) and once per logits
// (an all-gather of the vocabulary shards).
#include <memory>
#include <vector>

#include "kuiper/base/device_context.h"
#include "kuiper/base/error.h"
#include "kuiper/tensor/tensor.h"

namespace kuiper {

// One rank's end of a group of `size()` ranks. Every rank calls the same collectives in the same
// order with tensors of the same shape; the calls are queued on the rank's context like kernels
// (NCCL's contract: no barrier beyond what the data needs). Tensors are fp32 on the context's
// device. With one rank every collective is a no-op.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // t = the sum of every rank's t, in place.
  virtual void all_reduce_sum(const Tensor& t, const DeviceContext& ctx) = 0;
  // out [rows, size() * cols] = every rank's shard [rows, cols] side by side in rank order (the
  // classifier's vocabulary shards into whole logits rows). With one rank, shard may be out.
  virtual void all_gather_columns(const Tensor& shard, const Tensor& out,
                                  const DeviceContext& ctx) = 0;
  // Called when another rank of the group failed: ranks waiting in a collective, or entering one
  // later, throw RankFailed instead of waiting for it forever (where the transport allows).
  virtual void abort() {}
};

// What a rank throws from a collective after another rank of its group failed.
class RankFailed : public Error {
 public:
  using Error::Error;
};

// The group of one rank: every collective returns at once.
std::unique_ptr<Communicator> make_single_rank_communicator();

// `size` ranks as threads of this process, meeting in shared memory (CPU tensors): what tests
// and --tensor-parallel on the CPU use. Element i of the result is rank i's end.
std::vector<std::unique_ptr<Communicator>> make_thread_communicators(int size);

// One NCCL communicator per GPU 0 .. size-1 (ncclCommInitAll, NVLink multicast off), for ranks
// that each run on one thread bound to their GPU. Throws where kuiper was built without NCCL or
// fewer GPUs are present.
std::vector<std::unique_ptr<Communicator>> make_nccl_communicators(int size);

// The communicators of `size` ranks on `device`: threads for the CPU, NCCL for CUDA (one rank:
// the single-rank group).
std::vector<std::unique_ptr<Communicator>> make_communicators(Device device, int size);

}  // namespace kuiper
