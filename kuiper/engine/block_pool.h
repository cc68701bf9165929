#pragma once
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <vector>

namespace kuiper::engine {

// The free list of a paged KV cache's blocks. Hands out the lowest free ids first, so that a lone
// sequence's blocks stay in order (cheap to read, and easy to follow in a debugger).
class BlockPool {
 public:
  explicit BlockPool(int blocks);

  int total() const { return total_; }
  int free() const { return int(free_.size()); }
  int used() const { return total_ - free(); }

  // `n` blocks appended to `table`, or false (and nothing taken) when fewer are free.
  bool allocate(int n, std::vector<int32_t>& table);
  // Returns every block of `table` to the pool and empties it.
  void release(std::vector<int32_t>& table);

 private:
  int total_;
  std::set<int32_t> free_;
};

}  // namespace kuiper::engine
