// Builds without NCCL (no CUDA, or NCCL not found): tensor parallelism runs on CPU ranks only.
#include "kuiper/parallel/communicator.h"

namespace kuiper {

std::vector<std::unique_ptr<Communicator>> make_nccl_communicators(int size) {
  fail("--tensor-parallel ", size, " on CUDA needs NCCL, and this build of kuiper has none "
       "(configure with -DKUIPER_CUDA=ON where NCCL's headers and library are installed)");
}

}  // namespace kuiper
