// The CUDA caching allocator. cudaMalloc and cudaFree are slow (cudaFree also synchronizes
// the device) and not allowed while a CUDA graph is being captured, so memory that a tensor
// gives back stays cached here and serves the next request of a fitting size.
//
// Policy (in the manner of PyTorch's allocator, kept simpler):
//  - Sizes are rounded up to 512 bytes, which keeps every block 512-byte aligned (kernels
//    issue 16-byte vector loads).
//  - Small requests (up to 1 MB) are carved from 2 MB segments. They are served best-fit (the
//    smallest idle block that is large enough, lowest address on ties) from the small pool; the
//    rest of the chosen block is split off and stays idle. A freed small block merges with idle
//    neighbours of its segment, so a segment whose blocks are all free is one idle block again.
//  - Large requests (over 1 MB) get a segment of their own (cudaMalloc of the rounded size). A
//    freed one goes to the large pool, which serves a later request best-fit if the block wastes
//    less than 1 MB; otherwise a new segment is allocated. Large blocks are never split.
//  - Before any new cudaMalloc, if the small pool holds more than 1 GB of idle blocks, its idle
//    segments are released. If cudaMalloc fails, all idle segments are released and the
//    cudaMalloc is retried once; a second failure is a kuiper::Error naming the sizes.
//  - Idle segments are only released after cudaDeviceSynchronize, since kernels queued before
//    the free may still be using them.
#include "kuiper/base/cuda/allocator.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <memory>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <unordered_map>

#include "kuiper/base/cuda/check.h"

namespace kuiper {
namespace {

constexpr size_t kRound = 512;
constexpr size_t kSmallRequest = size_t(1) << 20;      // up to this: small pool
constexpr size_t kSmallSegment = size_t(2) << 20;      // small blocks are carved from these
constexpr size_t kMaxLargeWaste = size_t(1) << 20;     // a reused large block wastes less
constexpr size_t kSmallIdleLimit = size_t(1) << 30;    // small pool idle above this: release

std::string human_bytes(size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.2f %s", v, units[u]);
  return buf;
}

struct Block {
  char* ptr;
  size_t size;
  bool small;
  bool allocated = false;
  Block* prev = nullptr;  // neighbours inside a small segment (large blocks have none)
  Block* next = nullptr;
  bool whole_segment() const { return prev == nullptr && next == nullptr; }
};

// Orders idle blocks by size, then address: lower_bound({size}) is the best fit.
struct BySize {
  bool operator()(const Block* a, const Block* b) const {
    return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
  }
};

class CachingCudaAllocator final : public CudaAllocator {
 public:
  ~CachingCudaAllocator() override {
    // At exit the runtime may already be shutting down; errors are of no use here.
    std::lock_guard lock(mu_);
    release_idle(true, true, /*sync=*/false);
  }

  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    KUIPER_CHECK(bytes <= SIZE_MAX - kRound, "CUDA allocation of ", bytes, " bytes is too large");
    const size_t size = (bytes + kRound - 1) / kRound * kRound;
    const bool small = size <= kSmallRequest;
    std::lock_guard lock(mu_);
    Block* b = small ? take_small(size) : take_large(size);
    if (b == nullptr) b = grow(bytes, size, small);
    b->allocated = true;
    active_.emplace(b->ptr, b);
    stats_.bytes_in_use += b->size;
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    return b->ptr;
  }

  void deallocate(void* ptr, size_t) noexcept override {
    if (ptr == nullptr) return;
    std::lock_guard lock(mu_);
    const auto it = active_.find(ptr);
    if (it == active_.end()) {
      // Memory this allocator never handed out: continuing would corrupt the pools.
      std::fprintf(stderr, "kuiper: CUDA allocator asked to free unknown pointer %p\n", ptr);
      std::abort();
    }
    Block* b = it->second;
    active_.erase(it);
    b->allocated = false;
    stats_.bytes_in_use -= b->size;
    if (b->small) {
      if (b->prev != nullptr && !b->prev->allocated) {
        erase_idle(b->prev);
        b = b->prev;
        absorb_next(b);
      }
      if (b->next != nullptr && !b->next->allocated) {
        erase_idle(b->next);
        absorb_next(b);
      }
    }
    insert_idle(b);
  }

  CudaMemoryStats stats() const override {
    std::lock_guard lock(mu_);
    CudaMemoryStats s = stats_;
    s.bytes_cached = small_idle_ + large_idle_;
    s.small_bytes_cached = small_idle_;
    return s;
  }

  void release_cached() override {
    std::lock_guard lock(mu_);
    release_idle(true, true, /*sync=*/true);
  }

  void set_reserved_limit(size_t bytes) override {
    std::lock_guard lock(mu_);
    limit_ = bytes;
  }

  void reset_peak() override {
    std::lock_guard lock(mu_);
    stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }

  void check_available(size_t bytes, std::string_view what) const override {
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) cudaGetLastError();
    std::lock_guard lock(mu_);
    size_t fresh = free_bytes;
    if (limit_ != 0) fresh = std::min(fresh, limit_ - std::min(limit_, stats_.bytes_reserved));
    const size_t available = small_idle_ + large_idle_ + fresh;
    KUIPER_CHECK(bytes <= available, "not enough GPU memory: ", what, " need ", human_bytes(bytes),
                 " but ", human_bytes(available), " is available (device free ",
                 human_bytes(free_bytes), " of ", human_bytes(total_bytes), ", cached ",
                 human_bytes(small_idle_ + large_idle_),
                 limit_ ? str_cat(", allocator limit ", human_bytes(limit_)) : std::string(), ")");
  }

 private:
  using Pool = std::set<Block*, BySize>;

  Pool& pool(const Block* b) { return b->small ? small_pool_ : large_pool_; }

  void insert_idle(Block* b) {
    pool(b).insert(b);
    (b->small ? small_idle_ : large_idle_) += b->size;
  }
  void erase_idle(Block* b) {
    pool(b).erase(b);
    (b->small ? small_idle_ : large_idle_) -= b->size;
  }

  // Joins b->next into b (two neighbours in a small segment, neither in a pool).
  static void absorb_next(Block* b) {
    Block* n = b->next;
    b->size += n->size;
    b->next = n->next;
    if (n->next != nullptr) n->next->prev = b;
    delete n;
  }

  // Best fit from the small pool, splitting off the rest of the block.
  Block* take_small(size_t size) {
    Block key{nullptr, size, true};
    const auto it = small_pool_.lower_bound(&key);
    if (it == small_pool_.end()) return nullptr;
    Block* b = *it;
    erase_idle(b);
    if (b->size - size >= kRound) {
      Block* rest = new Block{b->ptr + size, b->size - size, true};
      rest->prev = b;
      rest->next = b->next;
      if (b->next != nullptr) b->next->prev = rest;
      b->next = rest;
      b->size = size;
      insert_idle(rest);
    }
    return b;
  }

  // Best fit from the large pool, if it wastes less than kMaxLargeWaste.
  Block* take_large(size_t size) {
    Block key{nullptr, size, false};
    const auto it = large_pool_.lower_bound(&key);
    if (it == large_pool_.end() || (*it)->size - size >= kMaxLargeWaste) return nullptr;
    Block* b = *it;
    erase_idle(b);
    return b;
  }

  // A new segment from the driver, applying the pressure and retry rules.
  Block* grow(size_t requested, size_t size, bool small) {
    const size_t segment = small ? kSmallSegment : size;
    if (small_idle_ > kSmallIdleLimit) release_idle(true, false, /*sync=*/true);
    void* p = driver_malloc(segment);
    if (p == nullptr) {
      ++stats_.retries;
      release_idle(true, true, /*sync=*/true);
      p = driver_malloc(segment);
    }
    if (p == nullptr) {
      size_t free_bytes = 0, total_bytes = 0;
      if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) cudaGetLastError();
      fail("CUDA out of memory: cannot allocate ", requested, " bytes (", human_bytes(requested),
           small ? ", from a new 2 MiB segment" : "", "); in use ", human_bytes(stats_.bytes_in_use),
           ", cached ", human_bytes(small_idle_ + large_idle_), ", device free ",
           human_bytes(free_bytes), " of ", human_bytes(total_bytes),
           limit_ ? str_cat(", allocator limit ", human_bytes(limit_)) : std::string(),
           last_error_ != cudaSuccess ? str_cat(" (", cudaGetErrorString(last_error_), ")") : "");
    }
    Block* b = new Block{static_cast<char*>(p), segment, small};
    if (!small) return b;
    insert_idle(b);
    return take_small(size);
  }

  void* driver_malloc(size_t bytes) {
    last_error_ = cudaSuccess;
    if (limit_ != 0 && stats_.bytes_reserved + bytes > limit_) return nullptr;
    void* p = nullptr;
    last_error_ = cudaMalloc(&p, bytes);
    if (last_error_ != cudaSuccess) {
      cudaGetLastError();  // out-of-memory is not sticky; clear it so later checks start clean
      return nullptr;
    }
    ++stats_.driver_allocs;
    stats_.bytes_reserved += bytes;
    return p;
  }

  // Frees the idle whole segments of the chosen pools.
  void release_idle(bool small, bool large, bool sync) {
    const bool any = (small && !small_pool_.empty()) || (large && !large_pool_.empty());
    if (sync && any) KUIPER_CUDA_CHECK(cudaDeviceSynchronize());
    for (Pool* p : {small ? &small_pool_ : nullptr, large ? &large_pool_ : nullptr}) {
      if (p == nullptr) continue;
      for (auto it = p->begin(); it != p->end();) {
        Block* b = *it;
        if (!b->whole_segment()) {
          ++it;
          continue;
        }
        it = p->erase(it);
        (b->small ? small_idle_ : large_idle_) -= b->size;
        const cudaError_t err = cudaFree(b->ptr);
        if (sync) KUIPER_CUDA_CHECK(err);  // without sync we are at exit: errors do not matter
        ++stats_.driver_frees;
        stats_.bytes_reserved -= b->size;
        delete b;
      }
    }
  }

  mutable std::mutex mu_;
  Pool small_pool_, large_pool_;
  std::unordered_map<void*, Block*> active_;
  size_t small_idle_ = 0, large_idle_ = 0;
  size_t limit_ = 0;
  cudaError_t last_error_ = cudaSuccess;
  CudaMemoryStats stats_;
};

}  // namespace

namespace {

// KUIPER_CUDA_MEMORY_LIMIT: "1073741824", "512M", "2G"; unset or empty: no limit.
size_t limit_from_environment() {
  const char* text = std::getenv("KUIPER_CUDA_MEMORY_LIMIT");
  if (text == nullptr || *text == '\0') return 0;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(text, &end, 10);
  const std::string_view suffix(end);
  const int shift = suffix.empty() ? 0 : suffix == "K" ? 10 : suffix == "M" ? 20 : suffix == "G" ? 30 : -1;
  KUIPER_CHECK(end != text && shift >= 0 && n > 0 && n <= (SIZE_MAX >> shift),
               "KUIPER_CUDA_MEMORY_LIMIT must be a positive number of bytes, optionally with K, M "
               "or G, got '", text, "'");
  return size_t(n) << shift;
}

}  // namespace

// One pool per GPU: a block cached from one GPU's memory must never be handed to another's
// kernels (tensor-parallel ranks each allocate on their own GPU, from their own thread).
CudaAllocator& cuda_allocator() {
  constexpr int kMaxDevices = 64;
  static std::array<std::unique_ptr<CachingCudaAllocator>, kMaxDevices> pools;
  static std::mutex mu;
  static const size_t limit = limit_from_environment();
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();  // no driver: pool 0, whose first cudaMalloc reports why
    device = 0;
  }
  KUIPER_CHECK(device >= 0 && device < kMaxDevices, "CUDA device ", device, " beyond the ",
               kMaxDevices, " the allocator serves");
  std::lock_guard lock(mu);
  auto& pool = pools[size_t(device)];
  if (!pool) {
    pool = std::make_unique<CachingCudaAllocator>();
    if (limit != 0) pool->set_reserved_limit(limit);
  }
  return *pool;
}

std::unique_ptr<CudaAllocator> make_cuda_caching_allocator() {
  return std::make_unique<CachingCudaAllocator>();
}

}  // namespace kuiper
