#include <omp.h>

#include "kernels/cpu/cpu_kernels.h"

extern "C" void openblas_set_num_threads(int);

namespace kuiper::kernels::cpu {

// The CPU kernels parallelise with OpenMP and call OpenBLAS from inside their parallel loops, so
// OpenBLAS must not start threads of its own.
void single_threaded_blas() { openblas_set_num_threads(1); }

void set_threads(int n) {
  KUIPER_CHECK(n >= 1, "thread count must be at least 1, got ", n);
  omp_set_num_threads(n);
}

int threads() { return omp_get_max_threads(); }

}  // namespace kuiper::kernels::cpu
