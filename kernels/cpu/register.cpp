#include "kernels/kernels.h"

namespace kuiper::kernels {

void register_cpu_kernels(Registry& r) {}

}  // namespace kuiper::kernels
