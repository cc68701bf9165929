#include "kuiper/base/cuda_graph.h"

namespace kuiper {

struct CudaGraph::State {};

CudaGraph::CudaGraph(const DeviceContext&, const std::function<void()>&) { require_cuda(); }
CudaGraph::~CudaGraph() = default;
void CudaGraph::launch() const {}

}  // namespace kuiper
