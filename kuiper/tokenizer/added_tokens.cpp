#include "kuiper/tokenizer/added_tokens.h"

#include <unicode/uchar.h>
#include <unicode/utf8.h>

namespace kuiper {
namespace {

// Hugging Face tests single_word with the regexes \w (Unicode "word": alphabetic, marks, decimal
// digits, connector punctuation, joiners) and lstrip / rstrip with \s (White_Space).
bool is_word_char(UChar32 c) {
  if (u_hasBinaryProperty(c, UCHAR_ALPHABETIC) || u_hasBinaryProperty(c, UCHAR_JOIN_CONTROL)) return true;
  return (U_GET_GC_MASK(c) & (U_GC_M_MASK | U_GC_ND_MASK | U_GC_PC_MASK)) != 0;
}

UChar32 char_before(std::string_view text, size_t pos) {
  int32_t i = int32_t(pos);
  UChar32 c = 0;
  U8_PREV(reinterpret_cast<const uint8_t*>(text.data()), 0, i, c);
  return c;
}

UChar32 char_at(std::string_view text, size_t pos) {
  int32_t i = int32_t(pos);
  UChar32 c = 0;
  U8_NEXT(reinterpret_cast<const uint8_t*>(text.data()), i, int32_t(text.size()), c);
  return c;
}

// Start of the whitespace run that ends at `pos`.
size_t whitespace_start_before(std::string_view text, size_t pos) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  while (pos > 0) {
    int32_t i = int32_t(pos);
    UChar32 c = 0;
    U8_PREV(s, 0, i, c);
    if (!u_isUWhiteSpace(c)) break;
    pos = size_t(i);
  }
  return pos;
}

// End of the whitespace run that starts at `pos`.
size_t whitespace_end_after(std::string_view text, size_t pos) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  while (pos < text.size()) {
    int32_t i = int32_t(pos);
    UChar32 c = 0;
    U8_NEXT(s, i, int32_t(text.size()), c);
    if (!u_isUWhiteSpace(c)) break;
    pos = size_t(i);
  }
  return pos;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens, const std::vector<std::string>& patterns)
    : tokens_(std::move(tokens)), nodes_(1) {
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& pattern = patterns[t];
    if (pattern.empty()) continue;  // an empty token can never be matched
    first_byte_[uint8_t(pattern[0])] = true;
    int32_t node = 0;
    for (char ch : pattern) {
      int32_t next = child(node, uint8_t(ch));
      if (next < 0) {
        next = int32_t(nodes_.size());
        nodes_[size_t(node)].children.emplace_back(uint8_t(ch), next);
        nodes_.emplace_back();
      }
      node = next;
    }
    nodes_[size_t(node)].token = int32_t(t);
  }
}

int32_t AddedTokenMatcher::child(int32_t node, uint8_t byte) const {
  for (const auto& [b, next] : nodes_[size_t(node)].children) {
    if (b == byte) return next;
  }
  return -1;
}

std::pair<int32_t, size_t> AddedTokenMatcher::longest_at(std::string_view text, size_t pos) const {
  std::pair<int32_t, size_t> best{-1, 0};
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = child(node, uint8_t(text[i]));
    if (node < 0) break;
    if (nodes_[size_t(node)].token >= 0) best = {nodes_[size_t(node)].token, i + 1 - pos};
  }
  return best;
}

void AddedTokenMatcher::split(std::string_view text, const PlainText& plain,
                              std::vector<TextRun>& runs) const {
  size_t plain_start = 0;  // where the current plain run began
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[uint8_t(text[pos])]) {
      ++pos;
      continue;
    }
    const auto [index, length] = longest_at(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[size_t(index)];
    size_t begin = pos, end = pos + length;
    if (token.special && plain.overlaps(begin, end)) {
      ++pos;  // text here; a token may still start inside it where the plain text ends
      continue;
    }
    pos = end;  // a rejected match is skipped whole, as Hugging Face's matcher does
    if (token.single_word) {
      const bool word_before = begin > 0 && is_word_char(char_before(text, begin));
      const bool word_after = end < text.size() && is_word_char(char_at(text, end));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) begin = std::max(whitespace_start_before(text, begin), plain_start);
    if (token.rstrip) end = whitespace_end_after(text, end);
    if (begin > plain_start) runs.push_back({plain_start, begin, -1});
    runs.push_back({begin, end, token.id});
    plain_start = pos = end;
  }
  if (plain_start < text.size()) runs.push_back({plain_start, text.size(), -1});
}

}  // namespace kuiper
