#include "kuiper/tokenizer/plain_text.h"

#include <algorithm>

#include "kuiper/base/error.h"

namespace kuiper {

PlainText::PlainText(std::span<const TextRange> ranges, size_t text_size) {
  size_t previous_end = 0;
  for (const TextRange& r : ranges) {
    KUIPER_CHECK(r.begin >= previous_end && r.begin <= r.end && r.end <= text_size,
                 "plain-text range [", r.begin, ", ", r.end, ") of a ", text_size,
                 "-byte text is out of order or out of bounds");
    previous_end = r.end;
    if (r.begin < r.end) ranges_.push_back(r);
  }
}

bool PlainText::overlaps(size_t begin, size_t end) const {
  // The first range that ends after `begin` is the only one that can start before `end`.
  const auto it = std::ranges::upper_bound(ranges_, begin, {}, &TextRange::end);
  return begin < end && it != ranges_.end() && it->begin < end;
}

}  // namespace kuiper
