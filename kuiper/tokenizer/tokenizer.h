#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kuiper {

// Bytes [begin, end) of a text.
struct TextRange {
  size_t begin = 0;
  size_t end = 0;
};

// Text <-> token ids. Two implementations: sentencepiece (`tokenizer.model`, Llama 2 family) and
// byte-level BPE read from a Hugging Face `tokenizer.json` (Llama 3, Qwen2.5).
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Chooses the implementation by the file's content. Throws kuiper::Error for a missing,
  // unreadable or unsupported file, naming it.
  static std::unique_ptr<Tokenizer> load(const std::filesystem::path& path);
  // The same from a tokenizer.json's or tokenizer.model's bytes (e.g. embedded in a model file);
  // `name` stands for the file in messages.
  static std::unique_ptr<Tokenizer> from_bytes(std::string_view bytes, const std::string& name);

  // Text -> ids. The text must be valid UTF-8 (kuiper::Error otherwise, naming the byte offset).
  // Special tokens written in the text (e.g. "<|im_start|>") become their ids and are never split.
  // With add_bos, the BOS id is prepended unless there is none or the text already starts with it.
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const {
    return encode(text, add_bos, {});
  }
  // The same, except that inside the ranges of `plain_text` (sorted and disjoint) special tokens
  // are text like any other, as Hugging Face's split_special_tokens encodes them: a chat
  // message's content, so that a user who writes "<|im_end|>" cannot end a turn or forge a role.
  // A special token is only matched where it lies wholly outside those ranges. Added tokens that
  // are not special (Qwen's "<tool_call>") are still matched everywhere.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos,
                                      std::span<const TextRange> plain_text) const = 0;

  // The bytes that token `id` contributes to the output stream. Control tokens (BOS, EOS, ...)
  // give "". A token may carry part of a UTF-8 character; see Utf8Stream.
  virtual std::string decode_token(int32_t id) const = 0;

  // Concatenated decode_token bytes of ids.
  std::string decode(std::span<const int32_t> ids) const;

  virtual int32_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  // The id of a token written exactly as `piece` (special tokens included), if any.
  virtual std::optional<int32_t> token_id(std::string_view piece) const = 0;
};

}  // namespace kuiper
