#pragma once
// The parts of a text that Tokenizer::encode reads without matching special tokens.
#include <cstddef>
#include <span>
#include <vector>

#include "kuiper/tokenizer/tokenizer.h"

namespace kuiper {

class PlainText {
 public:
  PlainText() = default;
  // Throws kuiper::Error unless the ranges are sorted, disjoint and inside a text of text_size
  // bytes. Empty ranges are allowed (an empty message) and cover nothing.
  PlainText(std::span<const TextRange> ranges, size_t text_size);

  // Whether bytes [begin, end) share a byte with one of the ranges.
  bool overlaps(size_t begin, size_t end) const;
  bool empty() const { return ranges_.empty(); }

 private:
  std::vector<TextRange> ranges_;  // the non-empty ones
};

}  // namespace kuiper
