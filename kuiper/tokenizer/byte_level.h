#pragma once
// GPT-2's reversible byte <-> character mapping, which byte-level BPE vocabularies are written in:
// every byte becomes one printable character (space -> "Ġ", newline -> "Ċ", ...), so a vocabulary
// of UTF-8 strings can hold arbitrary byte sequences.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kuiper::byte_level {

// The UTF-8 spelling of the character that stands for `byte`.
std::string_view char_of(uint8_t byte);

// `bytes` spelled in the byte-level alphabet.
std::string encode(std::string_view bytes);

// The bytes a byte-level spelling stands for, or nullopt when `piece` holds a character outside
// the alphabet (such tokens are not byte-level; Hugging Face's decoder passes them through as is).
std::optional<std::string> decode(std::string_view piece);

// decode() into `out` (replacing its content), for loops that reuse one buffer; false when
// `piece` is not byte-level (`out` is then unspecified).
bool decode_into(std::string_view piece, std::string& out);

}  // namespace kuiper::byte_level
