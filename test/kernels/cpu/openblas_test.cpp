// Armadillo links a BLAS chosen by the system's alternatives unless told otherwise; the build
// points it at OpenBLAS directly. This checks, at run time, that the BLAS routines the CPU
// matmul uses really come from OpenBLAS.
#include <dlfcn.h>

#include <armadillo>

#include "test/test_util.h"

extern "C" char* openblas_get_config();

namespace kuiper::test {
namespace {

TEST(OpenBlas, ArmadilloMatrixProductsRunOnOpenBlas) {
  // Looked up rather than declared: armadillo declares sgemm_ itself, with a signature (hidden
  // string lengths) that clang refuses to see declared twice differently.
  void* const sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  ASSERT_NE(sgemm, nullptr);
  Dl_info info{};
  ASSERT_NE(dladdr(sgemm, &info), 0);
  EXPECT_NE(std::string(info.dli_fname).find("openblas"), std::string::npos)
      << "sgemm_ comes from " << info.dli_fname;
  EXPECT_NE(std::string(openblas_get_config()).find("OpenBLAS"), std::string::npos);
  const arma::fmat a = arma::ones<arma::fmat>(64, 64), b = arma::ones<arma::fmat>(64, 64);
  const arma::fmat c = a * b;  // large enough for armadillo to call sgemm_
  EXPECT_EQ(c(3, 5), 64.f);
}

}  // namespace
}  // namespace kuiper::test
