#include "kuiper/tokenizer/byte_level.h"

#include <array>

namespace kuiper::byte_level {
namespace {

// Bytes that are printable Latin-1 characters keep their code point; the other 68 are moved,
// in byte order, to U+0100 and up. This is GPT-2's bytes_to_unicode().
constexpr bool keeps_code_point(unsigned b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Tables {
  std::array<std::string, 256> spelling;  // byte -> UTF-8 of its character
  std::array<int16_t, 0x144> byte_of;     // code point -> byte, -1 when not in the alphabet

  Tables() {
    byte_of.fill(-1);
    unsigned next_moved = 0x100;
    for (unsigned b = 0; b < 256; ++b) {
      const unsigned cp = keeps_code_point(b) ? b : next_moved++;
      byte_of[cp] = int16_t(b);
      // Every code point here is below U+0800: one or two UTF-8 bytes.
      spelling[b] = cp < 0x80 ? std::string(1, char(cp))
                              : std::string{char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

std::string_view char_of(uint8_t byte) { return tables().spelling[byte]; }

std::string encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += char_of(uint8_t(c));
  return out;
}

std::optional<std::string> decode(std::string_view piece) {
  std::string out;
  if (!decode_into(piece, out)) return std::nullopt;
  return out;
}

bool decode_into(std::string_view piece, std::string& out) {
  const Tables& t = tables();
  out.clear();
  for (size_t i = 0; i < piece.size();) {
    const uint8_t c = uint8_t(piece[i]);
    unsigned cp = 0;
    if (c < 0x80) {
      cp = c;
      i += 1;
    } else if ((c & 0xE0) == 0xC0 && i + 1 < piece.size()) {
      cp = ((c & 0x1Fu) << 6) | (uint8_t(piece[i + 1]) & 0x3Fu);
      i += 2;
    } else {
      return false;  // three- and four-byte characters are never in the alphabet
    }
    if (cp >= t.byte_of.size() || t.byte_of[cp] < 0) return false;
    out += char(t.byte_of[cp]);
  }
  return true;
}

}  // namespace kuiper::byte_level
