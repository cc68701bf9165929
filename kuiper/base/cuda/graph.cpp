#include "kuiper/base/cuda_graph.h"

#include "kuiper/base/cuda/check.h"

namespace kuiper {

struct CudaGraph::State {
  cudaStream_t stream = nullptr;
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~State() {
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
  }
};

CudaGraph::CudaGraph(const DeviceContext& ctx, const std::function<void()>& record)
    : state_(std::make_unique<State>()) {
  KUIPER_CHECK(ctx.device() == Device::kCUDA, "CUDA graphs need a CUDA context");
  state_->stream = static_cast<cudaStream_t>(ctx.cuda_stream());
  KUIPER_CUDA_CHECK(cudaStreamBeginCapture(state_->stream, cudaStreamCaptureModeThreadLocal));
  try {
    record();
  } catch (...) {
    cudaStreamEndCapture(state_->stream, &state_->graph);  // leave the stream usable
    cudaGetLastError();
    throw;
  }
  KUIPER_CUDA_CHECK(cudaStreamEndCapture(state_->stream, &state_->graph));
  KUIPER_CUDA_CHECK(cudaGraphInstantiate(&state_->exec, state_->graph, 0));
}

CudaGraph::~CudaGraph() = default;

void CudaGraph::launch() const { KUIPER_CUDA_CHECK(cudaGraphLaunch(state_->exec, state_->stream)); }

}  // namespace kuiper
