#include "kuiper/tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <exception>

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/utf8.h"

namespace kuiper {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::filesystem::path& path) {
    sentencepiece::util::Status status;
    try {
      status = sp_.Load(path.string());
    } catch (const std::exception& e) {
      // sentencepiece reports most damage as a status, but its trie builder (Darts) throws, e.g.
      // for a piece with a NUL byte (found by fuzz_sentencepiece_model).
      fail("cannot load sentencepiece tokenizer ", path.string(), ": ", e.what());
    }
    KUIPER_CHECK(status.ok(), "cannot load sentencepiece tokenizer ", path.string(), ": ",
                 status.ToString());
    // Control pieces (<s>, </s>) written in a prompt or a chat template are matched as tokens,
    // the way Hugging Face's tokenizers treat them; sentencepiece alone would spell them out.
    for (int id = 0; id < sp_.GetPieceSize(); ++id) {
      if (sp_.IsControl(id) && !sp_.IdToPiece(id).empty()) specials_.push_back(id);
    }
  }

  std::vector<int32_t> encode(std::string_view text, bool add_bos) const override {
    if (const auto bad = find_invalid_utf8(text))
      fail("text is not valid UTF-8 (bad byte at offset ", *bad, ")");
    std::vector<int32_t> ids;
    const int bos = sp_.bos_id();
    if (add_bos && bos >= 0 && !text.starts_with(sp_.IdToPiece(bos))) ids.push_back(bos);
    size_t pos = 0;
    while (pos <= text.size()) {
      // The next control piece in the text, if any.
      size_t next = std::string_view::npos;
      int special = -1;
      for (int id : specials_) {
        const size_t at = text.find(sp_.IdToPiece(id), pos);
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
  sentencepiece::SentencePieceProcessor sp_;
  std::vector<int> specials_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

}  // namespace kuiper
