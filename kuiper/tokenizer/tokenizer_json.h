#pragma once
// Reads a Hugging Face tokenizer.json. The vocabulary and merges (hundreds of thousands of
// entries, nearly all of the file) are streamed into flat vectors; building them as a JSON
// document first (a std::map per object) would take most of the load time.
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kuiper {

struct TokenizerJson {
  nlohmann::json doc;  // everything except model.vocab and model.merges
  std::vector<std::pair<std::string, int64_t>> vocab;     // model.vocab in file order
  std::vector<std::pair<std::string, std::string>> merges;  // model.merges, either spelling
  bool has_vocab = false;
  bool has_merges = false;
};

// Throws kuiper::Error naming the file when it cannot be read or is not well-formed JSON.
TokenizerJson read_tokenizer_json(const std::filesystem::path& path);
// The same from the file's text; `name` stands for the file in messages.
TokenizerJson parse_tokenizer_json(std::string_view text, std::string_view name);

// The "type" of a normalizer / pre-tokenizer / post-processor / decoder object ("" if none).
std::string step_type(const nlohmann::json& spec);

// The steps of a Sequence object, listed under `list_key` ("normalizers", "pretokenizers",
// "processors"). Throws kuiper::Error naming `file` when the list is missing.
const nlohmann::json& sequence_steps(const nlohmann::json& spec, const char* list_key, std::string_view file);

}  // namespace kuiper
