// The paged kernels' CUDA-graph contract (kernels.h): paged_rope_store and paged_attention,
// captured once (at the context length's max_positions) and replayed with new positions, slots,
// block tables and sequence starts written into the same device tensors, match the same steps run
// eagerly bit for bit, and the capture allocates nothing. Sequences grow a block at a time from
// a shuffled pool; in the chunked variant one sequence a step contributes a prefill chunk (the
// tensor-core kernel for the fp16 cache) while the others decode, so seq_starts changes too.
#include <algorithm>
#include <numeric>
#include <string>

#include "kuiper/base/cuda/allocator.h"
#include "kuiper/base/cuda_graph.h"
#include "kuiper/model/rope_table.h"
#include "test/kernels/cuda/cuda_test_util.h"

namespace kuiper::test {
namespace {

constexpr int kSeqs = 6, kBlock = 16, kMaxLen = 512, kMaxBlocks = kMaxLen / kBlock, kSteps = 24;
constexpr int kChunk = 11;  // rows of the chunked variant's prefill chunk
const kernels::AttentionShape kShape{6, 2, 48};
constexpr int kQWidth = 6 * 48, kKvWidth = 2 * 48;
const int kContext[kSeqs] = {0, 15, 31, 100, 300, 430};

// The batch of every step in host tensors, and their device twins that the kernels read.
class GraphedSteps {
 public:
  GraphedSteps(DType cache_type, bool chunked) : type_(cache_type), chunked_(chunked) {
    n_ = chunked ? kSeqs - 1 + kChunk : kSeqs;
    q_ = Tensor(DType::kF32, {n_, kQWidth}, Device::kCUDA);
    out_ = Tensor(DType::kF32, {n_, kQWidth}, Device::kCUDA);
    k_ = Tensor(DType::kF32, {n_, kKvWidth}, Device::kCUDA);
    v_ = Tensor(DType::kF32, {n_, kKvWidth}, Device::kCUDA);
    const int64_t num_blocks = kSeqs * kMaxBlocks + 3;
    cache_.block_size = kBlock;
    cache_.k = Tensor(type_, {num_blocks * kBlock, kKvWidth}, Device::kCUDA);
    cache_.v = Tensor(type_, {num_blocks * kBlock, kKvWidth}, Device::kCUDA);
    std::mt19937 rng(301);
    k0_ = random_cpu(type_, cache_.k.shape(), rng);
    v0_ = random_cpu(type_, cache_.v.shape(), rng);
    pool_.resize(size_t(num_blocks));
    std::iota(pool_.begin(), pool_.end(), 0);
    std::shuffle(pool_.begin(), pool_.end(), rng);
    ModelConfig c;
    c.head_dim = kShape.head_dim;
    cos_sin_ = to_cuda(make_rope_table(c, kMaxLen));
    rows_.positions = Tensor(DType::kI32, {n_}, Device::kCUDA);
    rows_.slots = Tensor(DType::kI32, {n_}, Device::kCUDA);
    rows_.row_seqs = Tensor(DType::kI32, {n_}, Device::kCUDA);
    rows_.seq_starts = Tensor(DType::kI32, {kSeqs + 1}, Device::kCUDA);
    rows_.block_tables = Tensor(DType::kI32, {kSeqs, kMaxBlocks}, Device::kCUDA);
    rows_.max_positions = kMaxLen;  // as at capture: correct for any smaller values
  }

  // Back to the state before step 0: the initial cache, the first contexts, each with blocks
  // for the positions it already holds (a table entry of -1 reads as NaN: outside the cache).
  void reset() {
    cache_.k.copy_from(k0_, &cuda_ctx());
    cache_.v.copy_from(v0_, &cuda_ctx());
    tables_.assign(size_t(kSeqs) * kMaxBlocks, -1);
    next_block_ = 0;
    std::copy(std::begin(kContext), std::end(kContext), length_);
    for (int s = 0; s < kSeqs; ++s)
      for (int b = 0; b * kBlock < kContext[s]; ++b)
        tables_[size_t(s) * kMaxBlocks + b] = pool_[size_t(next_block_++)];
  }

  // Writes step t's rows (positions, slots, tables, starts) and inputs into the device tensors.
  void prepare(int t) {
    std::vector<int32_t> pos, slots, seqs, starts;
    for (int s = 0; s < kSeqs; ++s) {
      starts.push_back(int32_t(pos.size()));
      const int rows = chunked_ && s == t % kSeqs ? kChunk : 1;
      for (int r = 0; r < rows; ++r, ++length_[s]) {
        const int p = length_[s];
        int32_t& block = tables_[size_t(s) * kMaxBlocks + p / kBlock];
        if (block < 0) block = pool_[size_t(next_block_++)];  // a new block from the pool
        pos.push_back(p);
        slots.push_back(block * kBlock + p % kBlock);
        seqs.push_back(s);
      }
    }
    starts.push_back(int32_t(pos.size()));
    rows_.positions.copy_from(ints_cpu(pos), &cuda_ctx());
    rows_.slots.copy_from(ints_cpu(slots), &cuda_ctx());
    rows_.row_seqs.copy_from(ints_cpu(seqs), &cuda_ctx());
    rows_.seq_starts.copy_from(ints_cpu(starts), &cuda_ctx());
    rows_.block_tables.copy_from(ints_cpu(tables_).reshape({kSeqs, kMaxBlocks}), &cuda_ctx());
    std::mt19937 rng(uint32_t(400 + t));
    q_.copy_from(random_cpu(DType::kF32, {n_, kQWidth}, rng), &cuda_ctx());
    k_.copy_from(random_cpu(DType::kF32, {n_, kKvWidth}, rng), &cuda_ctx());
    v_.copy_from(random_cpu(DType::kF32, {n_, kKvWidth}, rng), &cuda_ctx());
  }

  // The step's kernels: what the graph captures.
  void run() const {
    const auto& r = kernel_registry();
    r.paged_rope_store.find(Device::kCUDA, type_)(q_, k_, v_, rows_, cos_sin_, kShape.head_dim,
                                                  cache_, cuda_ctx());
    r.paged_attention.find(Device::kCUDA, type_)(q_, cache_, rows_, kShape, out_, Tensor(), cuda_ctx());
  }

  Tensor output() const { return to_cpu(out_); }

 private:
  DType type_;
  bool chunked_;
  int64_t n_ = 0;
  kernels::PagedCache cache_;
  kernels::BatchRows rows_;
  Tensor k0_, v0_, cos_sin_;
  Tensor q_, k_, v_, out_;
  std::vector<int32_t> pool_, tables_;
  int next_block_ = 0;
  int length_[kSeqs] = {};
};

TEST(CudaPagedGraph, ReplayedStepsMatchEagerSteps) {
  KUIPER_REQUIRE_CUDA();
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (bool chunked : {false, true}) {
      GraphedSteps steps(type, chunked);
      std::vector<Tensor> eager;
      steps.reset();
      for (int t = 0; t < kSteps; ++t) {
        steps.prepare(t);
        steps.run();
        eager.push_back(steps.output());
      }

      steps.reset();
      steps.prepare(0);
      const size_t driver_allocs = cuda_allocator().stats().driver_allocs;
      const CudaGraph graph(cuda_ctx(), [&] { steps.run(); });
      EXPECT_EQ(cuda_allocator().stats().driver_allocs, driver_allocs);
      for (int t = 0; t < kSteps; ++t) {
        if (t > 0) steps.prepare(t);
        graph.launch();
        const Tensor got = steps.output();
        EXPECT_EQ(max_rel_diff(got, eager[size_t(t)]), 0.f)
            << dtype_name(type) << (chunked ? " chunked" : " decode") << " step " << t;
        // The first non-finite output (row, column) of the replay and of the eager run.
        auto first_non_finite = [](const Tensor& x) {
          const auto v = x.span<float>();
          const auto it = std::find_if(v.begin(), v.end(), [](float f) { return !std::isfinite(f); });
          return it == v.end() ? std::string("none")
                               : str_cat((it - v.begin()) / kQWidth, ",", (it - v.begin()) % kQWidth);
        };
        const std::string replayed = first_non_finite(got);
        EXPECT_EQ(replayed, "none") << dtype_name(type) << (chunked ? " chunked" : " decode") << " step "
                                    << t << ", eager: " << first_non_finite(eager[size_t(t)]);
      }
    }
  }
}

}  // namespace
}  // namespace kuiper::test
