#include "kuiper/engine/block_pool.h"

#include "kuiper/base/error.h"

namespace kuiper::engine {

BlockPool::BlockPool(int blocks) : total_(blocks) {
  KUIPER_CHECK(blocks > 0, "a KV cache needs at least one block");
  for (int32_t b = 0; b < blocks; ++b) free_.insert(free_.end(), b);
}

bool BlockPool::allocate(int n, std::vector<int32_t>& table) {
  if (n > free()) return false;
  for (int i = 0; i < n; ++i) table.push_back(free_.extract(free_.begin()).value());
  return true;
}

void BlockPool::release(std::vector<int32_t>& table) {
  for (int32_t b : table) {
    const bool returned = free_.insert(b).second;
    KUIPER_CHECK(returned, "KV block ", b, " released twice");
  }
  table.clear();
}

}  // namespace kuiper::engine
