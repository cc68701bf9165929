// UTF-8 validation, Python-style repair and the streaming decoder the CLI prints through.
#include "kuiper/tokenizer/utf8.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace kuiper {
namespace {

TEST(Utf8Test, FindInvalid) {
  EXPECT_EQ(find_invalid_utf8(""), std::nullopt);
  EXPECT_EQ(find_invalid_utf8("plain ascii"), std::nullopt);
  EXPECT_EQ(find_invalid_utf8("é中😀\U0010FFFF"), std::nullopt);
  EXPECT_EQ(find_invalid_utf8("ab\x80"), 2u);         // lone continuation byte
  EXPECT_EQ(find_invalid_utf8("a\xC3("), 1u);         // lead byte without its continuation
  EXPECT_EQ(find_invalid_utf8("xy\xE2\x82"), 2u);     // truncated at the end
  EXPECT_EQ(find_invalid_utf8("\xC0\xAF"), 0u);       // overlong '/'
  EXPECT_EQ(find_invalid_utf8("\xE0\x80\xAF"), 0u);   // overlong, three bytes
  EXPECT_EQ(find_invalid_utf8("é\xED\xA0\x80"), 2u);  // UTF-16 surrogate
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("\xF5\x80\x80\x80"), 0u);
  EXPECT_EQ(find_invalid_utf8("ok\xFF"), 2u);
  EXPECT_EQ(find_invalid_utf8(std::string("a\0b", 3)), std::nullopt);  // NUL is valid
}

// Expected values are Python's bytes.decode("utf-8", errors="replace").
TEST(Utf8Test, SanitizeLikePython) {
  const std::string r = "\xEF\xBF\xBD";  // U+FFFD
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", ""},
      {"\x80", r},
      {"a\xC3(", "a" + r + "("},
      {"\xE2\x82", r},
      {"\xE2\x82(", r + "("},
      {"\xF0\x9F\x98", r},
      {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"},
      {"\xED\xA0\x80", r + r + r},
      {"\xC0\xAF", r + r},
      {"\xF4\x90\x80\x80", r + r + r + r},
      {"\xE0\x80\xAF", r + r + r},
      {"\xF5\x80", r + r},
      {"\xFF\xFE", r + r},
      {"\xF0\x80\x80\x80", r + r + r + r},
      {"\xE1\x80\xE2\xF0\x91\x92\xF1\xBF" "A", r + r + r + r + "A"},
      {"valid é 中", "valid é 中"},
  };
  for (const auto& [in, expected] : cases) {
    EXPECT_EQ(sanitize_utf8(in), expected) << "input of " << in.size() << " bytes";
    EXPECT_EQ(find_invalid_utf8(sanitize_utf8(in)), std::nullopt);
  }
}

// Feeds `text` to a Utf8Stream in the given chunk sizes; every output must be whole characters.
std::string stream_in_chunks(const std::string& text, const std::vector<size_t>& sizes) {
  Utf8Stream stream;
  std::string out;
  size_t pos = 0;
  for (size_t i = 0; pos < text.size(); ++i) {
    const size_t n = std::min(sizes[i % sizes.size()], text.size() - pos);
    const std::string shown = stream.push(std::string_view(text).substr(pos, n));
    EXPECT_EQ(find_invalid_utf8(shown), std::nullopt) << "half a character after byte " << pos + n;
    out += shown;
    pos += n;
  }
  return out + stream.flush();
}

TEST(Utf8Test, StreamNeverSplitsACharacter) {
  const std::string text = "a😀b👨‍👩‍👧中文é🇯🇵\U0010FFFF";
  for (const std::vector<size_t>& sizes :
       std::vector<std::vector<size_t>>{{1}, {2}, {3}, {5}, {1, 2, 3}, {4, 1}, {100}}) {
    EXPECT_EQ(stream_in_chunks(text, sizes), text);
  }
}

TEST(Utf8Test, StreamEmojiSplitAcrossPushes) {
  Utf8Stream stream;
  EXPECT_EQ(stream.push("x\xF0\x9F"), "x");  // first half of 😀 is held back
  EXPECT_EQ(stream.push("\x98"), "");
  EXPECT_EQ(stream.push("\x80y"), "\xF0\x9F\x98\x80y");
  EXPECT_EQ(stream.flush(), "");
}

TEST(Utf8Test, StreamInvalidBytes) {
  Utf8Stream stream;
  EXPECT_EQ(stream.push("a\x80" "b"), "a\xEF\xBF\xBD" "b");  // invalid at once: replaced, not held
  EXPECT_EQ(stream.push("\xE4\xB8"), "");
  EXPECT_EQ(stream.push("("), "\xEF\xBF\xBD(");  // the pending prefix turned out invalid
  EXPECT_EQ(stream.push("\xE4\xB8"), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");  // a tail cut off at the end
  EXPECT_EQ(stream.flush(), "");
}

}  // namespace
}  // namespace kuiper
