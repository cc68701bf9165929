#include "kuiper/tokenizer/tokenizer.h"

#include <fstream>

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/bpe_tokenizer.h"
#include "kuiper/tokenizer/sentencepiece_tokenizer.h"
#include "kuiper/tokenizer/tokenizer_json.h"

namespace kuiper {

namespace {

// tokenizer.json is a JSON object (perhaps after a UTF-8 byte-order mark and white space);
// tokenizer.model is a protobuf, which never starts with '{'.
bool is_json(std::string_view head) {
  if (head.starts_with("\xEF\xBB\xBF")) head.remove_prefix(3);
  const size_t start = head.find_first_not_of(" \t\r\n");
  return start != std::string_view::npos && head[start] == '{';
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::load(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  KUIPER_CHECK(file.good(), "cannot open tokenizer file ", path.string());
  std::string head(64, '\0');
  file.read(head.data(), std::streamsize(head.size()));
  head.resize(size_t(file.gcount()));
  KUIPER_CHECK(!head.empty(), "tokenizer file ", path.string(), " is empty");
  if (is_json(head)) return load_bpe_tokenizer(path);
  return load_sentencepiece_tokenizer(path);
}

std::unique_ptr<Tokenizer> Tokenizer::from_bytes(std::string_view bytes, const std::string& name) {
  KUIPER_CHECK(!bytes.empty(), "tokenizer ", name, " is empty");
  if (is_json(bytes.substr(0, 64))) return make_bpe_tokenizer(parse_tokenizer_json(bytes, name), name);
  return make_sentencepiece_tokenizer(bytes, name);
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) out += decode_token(id);
  return out;
}

}  // namespace kuiper
