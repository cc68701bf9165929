#include "kuiper/tokenizer/tokenizer.h"

#include <fstream>

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/bpe_tokenizer.h"
#include "kuiper/tokenizer/sentencepiece_tokenizer.h"

namespace kuiper {

std::unique_ptr<Tokenizer> Tokenizer::load(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  KUIPER_CHECK(file.good(), "cannot open tokenizer file ", path.string());
  // tokenizer.json is a JSON object; tokenizer.model is a protobuf, which never starts with '{'.
  char first = 0;
  while (file.get(first) && (first == ' ' || first == '\n' || first == '\r' || first == '\t')) {
  }
  KUIPER_CHECK(file.gcount() == 1, "tokenizer file ", path.string(), " is empty");
  if (first == '{') return load_bpe_tokenizer(path);
  return load_sentencepiece_tokenizer(path);
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) out += decode_token(id);
  return out;
}

}  // namespace kuiper
