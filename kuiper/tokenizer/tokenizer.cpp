#include "kuiper/tokenizer/tokenizer.h"

#include <fstream>

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/bpe_tokenizer.h"
#include "kuiper/tokenizer/sentencepiece_tokenizer.h"

namespace kuiper {

std::unique_ptr<Tokenizer> Tokenizer::load(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  KUIPER_CHECK(file.good(), "cannot open tokenizer file ", path.string());
  // tokenizer.json is a JSON object (perhaps after a UTF-8 byte-order mark and white space);
  // tokenizer.model is a protobuf, which never starts with '{'.
  std::string head(64, '\0');
  file.read(head.data(), std::streamsize(head.size()));
  head.resize(size_t(file.gcount()));
  KUIPER_CHECK(!head.empty(), "tokenizer file ", path.string(), " is empty");
  if (head.starts_with("\xEF\xBB\xBF")) head.erase(0, 3);
  const size_t start = head.find_first_not_of(" \t\r\n");
  const char first = start == std::string::npos ? '\0' : head[start];
  if (first == '{') return load_bpe_tokenizer(path);
  return load_sentencepiece_tokenizer(path);
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) out += decode_token(id);
  return out;
}

}  // namespace kuiper
