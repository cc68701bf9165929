#pragma once
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace kuiper {

// Offset of the first byte that does not start or continue a valid UTF-8 sequence (overlongs,
// surrogates and code points above U+10FFFF are invalid), or nullopt when all of s is valid.
std::optional<size_t> find_invalid_utf8(std::string_view s);

// s with each maximal invalid subsequence replaced by U+FFFD, the way Python's
// bytes.decode("utf-8", errors="replace") does it.
std::string sanitize_utf8(std::string_view s);

// Holds back a UTF-8 character until all of its bytes have arrived, so a streamed output
// never shows half a character. Invalid bytes come out as U+FFFD.
class Utf8Stream {
 public:
  // Appends bytes; returns what is now complete.
  std::string push(std::string_view bytes);
  // Returns whatever is pending (an incomplete tail becomes U+FFFD) and resets.
  std::string flush();

 private:
  std::string pending_;
};

}  // namespace kuiper
