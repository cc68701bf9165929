#pragma once
#include <functional>
#include <memory>

#include "kuiper/base/device_context.h"

namespace kuiper {

// Kernel launches recorded once and replayed with a single launch. A decode step of a small
// model is a few hundred tiny kernels; replaying them as a graph removes the launch cost that
// would otherwise dominate.
class CudaGraph {
 public:
  // Records the work `record` queues on ctx's stream (nothing runs yet). The recorded kernels must
  // not synchronise, allocate or read host values that change between replays. Throws
  // kuiper::Error if the capture fails, and in builds without CUDA.
  CudaGraph(const DeviceContext& ctx, const std::function<void()>& record);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Queues the recorded work on the context's stream.
  void launch() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kuiper
