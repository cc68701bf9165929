#include "kuiper/tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <exception>

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/plain_text.h"
#include "kuiper/tokenizer/utf8.h"

namespace kuiper {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(std::string_view model_proto, const std::string& name) {
    sentencepiece::util::Status status;
    try {
      status = sp_.LoadFromSerializedProto(model_proto);
    } catch (const std::exception& e) {
      // sentencepiece reports most damage as a status, but its trie builder (Darts) throws, e.g.
      // for a piece with a NUL byte (found by fuzz_sentencepiece_model).
      fail("cannot load sentencepiece tokenizer ", name, ": ", e.what());
    }
    KUIPER_CHECK(status.ok(), "cannot load sentencepiece tokenizer ", name, ": ", status.ToString());
    // Control pieces (<s>, </s>) written in a prompt or a chat template are matched as tokens,
    // the way Hugging Face's tokenizers treat them; sentencepiece alone would spell them out.
    for (int id = 0; id < sp_.GetPieceSize(); ++id) {
      if (sp_.IsControl(id) && !sp_.IdToPiece(id).empty()) specials_.push_back(id);
    }
  }

  using Tokenizer::encode;
  std::vector<int32_t> encode(std::string_view text, bool add_bos,
                              std::span<const TextRange> plain_text) const override {
    if (const auto bad = find_invalid_utf8(text))
      fail("text is not valid UTF-8 (bad byte at offset ", *bad, ")");
    const PlainText plain(plain_text, text.size());
    std::vector<int32_t> ids;
    const int bos = sp_.bos_id();
    if (add_bos && bos >= 0 && find_control(text, bos, 0, plain) != 0) ids.push_back(bos);
    size_t pos = 0;
    while (pos <= text.size()) {
      // The next control piece in the text, if any.
      size_t next = std::string_view::npos;
      int special = -1;
      for (int id : specials_) {
        const size_t at = find_control(text, id, pos, plain);
        if (at < next) next = at, special = id;
      }
      const std::string_view chunk = text.substr(pos, next == std::string_view::npos ? next : next - pos);
      if (!chunk.empty()) {
        std::vector<int> piece_ids;
        const auto status = sp_.Encode(chunk, &piece_ids);
        KUIPER_CHECK(status.ok(), "sentencepiece encode failed: ", status.ToString());
        ids.insert(ids.end(), piece_ids.begin(), piece_ids.end());
      }
      if (special < 0) break;
      ids.push_back(special);
      pos = next + sp_.IdToPiece(special).size();
    }
    return ids;
  }

  std::string decode_token(int32_t id) const override {
    KUIPER_CHECK(id >= 0 && id < sp_.GetPieceSize(), "token id ", id, " is outside the vocabulary of ",
                 sp_.GetPieceSize());
    if (sp_.IsControl(id) || sp_.IsUnknown(id)) return "";
    const std::string& piece = sp_.IdToPiece(id);
    if (sp_.IsByte(id)) {  // "<0x0A>" stands for the raw byte 0x0A
      return std::string(1, char(std::stoi(piece.substr(3, 2), nullptr, 16)));
    }
    std::string out;
    out.reserve(piece.size());
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {  // U+2581 marks a space
        out += ' ';
        i += 3;
      } else {
        out += piece[i++];
      }
    }
    return out;
  }

  int32_t vocab_size() const override { return sp_.GetPieceSize(); }

  std::optional<int32_t> bos_id() const override {
    return sp_.bos_id() >= 0 ? std::optional<int32_t>(sp_.bos_id()) : std::nullopt;
  }

  std::optional<int32_t> token_id(std::string_view piece) const override {
    const int id = sp_.PieceToId(piece);
    if (id == sp_.unk_id() && piece != sp_.IdToPiece(id)) return std::nullopt;
    return id;
  }

 private:
  // Where control piece `id` next occurs at or after `pos` outside the plain text; npos if nowhere.
  size_t find_control(std::string_view text, int id, size_t pos, const PlainText& plain) const {
    const std::string& piece = sp_.IdToPiece(id);
    size_t at = text.find(piece, pos);
    while (at != std::string_view::npos && plain.overlaps(at, at + piece.size()))
      at = text.find(piece, at + 1);
    return at;
  }

  sentencepiece::SentencePieceProcessor sp_;
  std::vector<int> specials_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  KUIPER_CHECK(file.good(), "cannot open tokenizer file ", path.string());
  std::ostringstream bytes;
  bytes << file.rdbuf();
  KUIPER_CHECK(!file.bad(), "cannot read tokenizer file ", path.string());
  return make_sentencepiece_tokenizer(bytes.view(), path.string());
}

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(std::string_view model_proto, const std::string& name) {
  return std::make_unique<SentencePieceTokenizer>(model_proto, name);
}

}  // namespace kuiper
