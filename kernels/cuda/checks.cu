// Argument checks of the launch wrappers (common.cuh).
#include "kernels/cuda/common.cuh"

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

}  // namespace kuiper::kernels::cuda
