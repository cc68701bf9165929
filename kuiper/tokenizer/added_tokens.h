#pragma once
// Finds a tokenizer.json's added tokens (<|im_start|>, <|begin_of_text|>, ...) in text, so they
// become single ids and are never split or merged with their surroundings.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kuiper/tokenizer/plain_text.h"

namespace kuiper {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool single_word = false;  // only matched when not inside a word
  bool lstrip = false;       // swallows the whitespace on its left
  bool rstrip = false;       // swallows the whitespace on its right
  bool normalized = false;   // matched in the normalized text rather than the raw one
};

// A run of text: plain text when id < 0, otherwise the added token `id`.
struct TextRun {
  size_t begin = 0;
  size_t end = 0;
  int32_t id = -1;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns[i]` is what to look for for `tokens[i]` (its content, normalized if it is a
  // normalized token).
  AddedTokenMatcher(std::vector<AddedToken> tokens, const std::vector<std::string>& patterns);

  bool empty() const { return tokens_.empty(); }

  // Cuts `text` into runs, taking at each point the leftmost, then longest, token, with
  // Hugging Face's single_word / lstrip / rstrip rules. A special token is not matched where it
  // overlaps `plain` (see Tokenizer::encode). Empty plain runs are left out.
  void split(std::string_view text, const PlainText& plain, std::vector<TextRun>& runs) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // byte -> node; few per node
    int32_t token = -1;                                 // index into tokens_ when a token ends here
  };
  // The longest token starting at text[pos]: {index into tokens_, length}, or {-1, 0}.
  std::pair<int32_t, size_t> longest_at(std::string_view text, size_t pos) const;
  int32_t child(int32_t node, uint8_t byte) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;  // a trie of the patterns; nodes_[0] is the root
  std::array<bool, 256> first_byte_{};  // bytes a pattern can start with: the scan skips the rest
};

}  // namespace kuiper
