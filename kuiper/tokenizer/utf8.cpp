#include "kuiper/tokenizer/utf8.h"

#include <cstdint>

namespace kuiper {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence starting at s[i], or 0 if s[i] does not start one.
// `complete` is cleared when the bytes seen so far are a valid prefix cut off by the end of s.
size_t valid_sequence_length(std::string_view s, size_t i, bool* truncated_prefix) {
  const auto b = [&](size_t k) { return uint8_t(s[i + k]); };
  const uint8_t c = b(0);
  if (c < 0x80) return 1;
  size_t len = 0;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte (excludes overlongs etc.)
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no UTF-16 surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  for (size_t k = 1; k < len; ++k) {
    if (i + k >= s.size()) {
      if (truncated_prefix) *truncated_prefix = true;
      return 0;
    }
    const uint8_t lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
    if (b(k) < lo_k || b(k) > hi_k) return 0;
  }
  return len;
}

// Bytes of the maximal prefix of an invalid sequence at s[i] (at least 1), as Python counts them.
size_t invalid_subpart_length(std::string_view s, size_t i) {
  const uint8_t c = uint8_t(s[i]);
  size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
  size_t k = 1;
  for (; k < len && i + k < s.size(); ++k) {
    const uint8_t b = uint8_t(s[i + k]);
    uint8_t lo = 0x80, hi = 0xBF;
    if (k == 1 && c == 0xE0) lo = 0xA0;
    if (k == 1 && c == 0xED) hi = 0x9F;
    if (k == 1 && c == 0xF0) lo = 0x90;
    if (k == 1 && c == 0xF4) hi = 0x8F;
    if (b < lo || b > hi) break;
  }
  return k;
}

}  // namespace

std::optional<size_t> find_invalid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = valid_sequence_length(s, i, nullptr);
    if (n == 0) return i;
    i += n;
  }
  return std::nullopt;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (const size_t n = valid_sequence_length(s, i, nullptr); n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out.append(kReplacement);
      i += invalid_subpart_length(s, i);
    }
  }
  return out;
}

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    bool truncated = false;
    const size_t n = valid_sequence_length(pending_, i, &truncated);
    if (n > 0) {
      out.append(pending_, i, n);
      i += n;
    } else if (truncated) {
      break;  // wait for the rest of this character
    } else {
      out.append(kReplacement);
      i += invalid_subpart_length(pending_, i);
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string Utf8Stream::flush() {
  std::string out = pending_.empty() ? "" : sanitize_utf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace kuiper
