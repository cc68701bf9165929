#include "kernels/kernels.h"

namespace kuiper::kernels {

const Registry& registry() {
  static const Registry r = [] {
    Registry built;
    register_cpu_kernels(built);
#ifdef KUIPER_WITH_CUDA
    register_cuda_kernels(built);
#endif
    return built;
  }();
  return r;
}

}  // namespace kuiper::kernels
