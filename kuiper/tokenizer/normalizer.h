#pragma once
// The normalizer of a tokenizer.json: nothing, or Unicode normalization (Qwen2 asks for NFC), or
// a Sequence of those. ICU does the normalization: Hugging Face's NFC is Unicode's, and
// getting composition right for every script is not something to hand-write.
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace kuiper {

class Normalizer {
 public:
  enum class Form { kNFC, kNFD, kNFKC, kNFKD };

  // `spec` is the file's "normalizer" value; `file` names the file in error messages.
  // Throws kuiper::Error for a kind this tokenizer does not implement.
  static Normalizer from_json(const nlohmann::json& spec, std::string_view file);

  bool empty() const { return forms_.empty(); }

  // The normalized text: `text` itself when it is already normalized (the usual case, which
  // costs one scan), otherwise a view of `buffer`.
  std::string_view apply(std::string_view text, std::string& buffer) const;

 private:
  void add(const nlohmann::json& spec, std::string_view file);
  std::vector<Form> forms_;  // applied in order
};

}  // namespace kuiper
