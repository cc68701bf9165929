// Byte-level BPE read from a Hugging Face tokenizer.json (Llama 3, Qwen2.5), matching what the
// `tokenizers` package produces id for id. The stages follow Hugging Face's pipeline:
//   added tokens (raw text) -> normalizer -> added tokens (normalized) -> pre-tokenizer -> BPE.
#include "kuiper/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <nlohmann/json.hpp>

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/added_tokens.h"
#include "kuiper/tokenizer/bpe_model.h"
#include "kuiper/tokenizer/byte_level.h"
#include "kuiper/tokenizer/normalizer.h"
#include "kuiper/tokenizer/pretokenizer.h"
#include "kuiper/tokenizer/tokenizer_json.h"
#include "kuiper/tokenizer/utf8.h"

namespace kuiper {
namespace {

using nlohmann::json;

// Pieces up to this size are cached; longer ones are rare and unlikely to repeat.
constexpr size_t kMaxCachedPiece = 64;
// The cache is emptied when it reaches this many entries, which bounds its memory to a few
// MB (a megabyte of English has ~15k distinct pieces).
constexpr size_t kMaxCacheEntries = 1 << 16;

// Appends the id of each added-token run of `text` and hands each plain run to `plain`.
template <class F>
void for_each_run(std::string_view text, const std::vector<TextRun>& runs, std::vector<int32_t>& ids, F&& plain) {
  for (const TextRun& run : runs) {
    if (run.id >= 0) {
      ids.push_back(run.id);
    } else {
      plain(text.substr(run.begin, run.end - run.begin));
    }
  }
}

// The special token TemplateProcessing puts before the text: the BOS token.
std::optional<int32_t> template_bos(const json& spec, std::string_view file) {
  const std::string type = step_type(spec);
  if (spec.is_null() || type == "ByteLevel") return std::nullopt;
  if (type == "Sequence") {
    for (const json& inner : sequence_steps(spec, "processors", file)) {
      if (const auto bos = template_bos(inner, file)) return bos;
    }
    return std::nullopt;
  }
  if (type == "TemplateProcessing") {
    const json& single = spec.at("single");
    if (single.empty() || !single[0].contains("SpecialToken")) return std::nullopt;
    const std::string name = single[0]["SpecialToken"].at("id").get<std::string>();
    const json& ids = spec.at("special_tokens").at(name).at("ids");
    KUIPER_CHECK(ids.size() == 1, "tokenizer file ", file, ": the template's first token \"", name,
                 "\" stands for ", ids.size(), " ids, expected one BOS id");
    return ids[0].get<int32_t>();
  }
  fail("tokenizer file ", file, ": unsupported post_processor \"", type,
       "\" (supported: ByteLevel, TemplateProcessing and Sequence of them)");
}

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(const TokenizerJson& file_content, const std::string& file);

  using Tokenizer::encode;
  std::vector<int32_t> encode(std::string_view text, bool add_bos,
                              std::span<const TextRange> plain_text) const override;

  std::string decode_token(int32_t id) const override {
    KUIPER_CHECK(id >= 0 && id < vocab_size_, "token id ", id, " is outside the vocabulary of ", vocab_size_);
    if (const auto it = added_output_.find(id); it != added_output_.end()) return it->second;
    return model_.has_token(id) ? model_.token_bytes(id) : std::string();
  }

  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override { return bos_; }

  std::optional<int32_t> token_id(std::string_view piece) const override {
    if (const auto it = added_ids_.find(piece); it != added_ids_.end()) return it->second;
    return model_.id_of_spelling(piece);
  }

 private:
  struct Scratch {
    std::vector<TextRun> raw_runs, normalized_runs;
    std::string normalized;
    std::vector<std::string_view> pieces;
    std::deque<std::string> piece_storage;
    BpeModel::Scratch bpe;
  };

  // Returns `doc` once its model is known to be one this class implements.
  static const json& check_supported(const json& doc, const std::string& file);
  static PreTokenizer load_pre_tokenizer(const json& doc, const std::string& file);
  static BpeModel load_model(const TokenizerJson& content, const std::string& file);
  void load_added_tokens(const json& added, const std::string& file);
  void encode_section(std::string_view raw, bool plain, std::vector<int32_t>& ids, Scratch& s) const;
  void encode_normalized(std::string_view text, std::vector<int32_t>& ids, Scratch& s) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids, Scratch& s) const;

  Normalizer normalizer_;
  PreTokenizer pre_tokenizer_;
  BpeModel model_;
  StringMap<int32_t> added_ids_;                         // added token content -> id
  std::unordered_map<int32_t, std::string> added_output_;  // what added tokens print; "" if special
  int32_t vocab_size_ = 0;
  AddedTokenMatcher raw_added_, normalized_added_;
  std::optional<int32_t> bos_;

  mutable std::mutex cache_mutex_;
  mutable StringMap<std::vector<int32_t>> cache_;  // piece bytes -> ids
};

BpeTokenizer::BpeTokenizer(const TokenizerJson& content, const std::string& file)
    : normalizer_(Normalizer::from_json(check_supported(content.doc, file).value("normalizer", json()), file)),
      pre_tokenizer_(load_pre_tokenizer(content.doc, file)),
      model_(load_model(content, file)),
      vocab_size_(model_.size()) {
  const json& doc = content.doc;
  const std::string decoder = step_type(doc.value("decoder", json()));
  KUIPER_CHECK(decoder.empty() || decoder == "ByteLevel", "tokenizer file ", file, ": unsupported decoder \"",
               decoder, "\" (a byte-level BPE decodes with ByteLevel)");
  load_added_tokens(doc.value("added_tokens", json::array()), file);
  bos_ = template_bos(doc.value("post_processor", json()), file);
  KUIPER_CHECK(!bos_ || (*bos_ >= 0 && *bos_ < vocab_size()), "tokenizer file ", file, ": BOS id ", *bos_,
               " is not in the vocabulary");
}

const json& BpeTokenizer::check_supported(const json& doc, const std::string& file) {
  KUIPER_CHECK(doc.is_object() && doc.contains("model") && doc["model"].is_object(), "tokenizer file ", file,
               " has no \"model\" object; is it a Hugging Face tokenizer.json?");
  const json& model = doc["model"];
  const std::string type = step_type(model);
  KUIPER_CHECK(type == "BPE", "tokenizer file ", file, ": unsupported tokenizer model type \"", type,
               "\"; only byte-level BPE (Llama 3, Qwen2) is supported");
  KUIPER_CHECK(!model.value("byte_fallback", false), "tokenizer file ", file,
               ": BPE with byte_fallback (sentencepiece-style, e.g. TinyLlama) is not supported; "
               "use the model's tokenizer.model");
  const json dropout = model.value("dropout", json());
  KUIPER_CHECK(dropout.is_null() || dropout.get<double>() == 0.0, "tokenizer file ", file,
               ": BPE dropout is not supported (it makes encoding random)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json v = model.value(key, json());
    KUIPER_CHECK(v.is_null() || v.get<std::string>().empty(), "tokenizer file ", file, ": BPE ", key,
                 " is not supported");
  }
  return doc;
}

PreTokenizer BpeTokenizer::load_pre_tokenizer(const json& doc, const std::string& file) {
  PreTokenizer pre_tokenizer = PreTokenizer::from_json(doc.value("pre_tokenizer", json()), file);
  KUIPER_CHECK(pre_tokenizer.byte_level(), "tokenizer file ", file,
               ": not a byte-level BPE (its pre_tokenizer has no ByteLevel step); "
               "sentencepiece-style tokenizer.json files are not supported, use the model's tokenizer.model");
  return pre_tokenizer;
}

BpeModel BpeTokenizer::load_model(const TokenizerJson& content, const std::string& file) {
  const json& model = content.doc.at("model");
  KUIPER_CHECK(content.has_vocab && !content.vocab.empty(), "tokenizer file ", file,
               ": model.vocab is missing or empty");
  KUIPER_CHECK(content.has_merges, "tokenizer file ", file, ": model.merges is missing");
  BpeModel::Options options;
  options.ignore_merges = model.value("ignore_merges", false);
  options.fuse_unk = model.value("fuse_unk", false);
  if (const json unk = model.value("unk_token", json()); unk.is_string()) options.unk_token = unk.get<std::string>();
  return BpeModel(content.vocab, content.merges, std::move(options), file);
}

void BpeTokenizer::load_added_tokens(const json& added, const std::string& file) {
  std::vector<AddedToken> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (const json& t : added) {
    AddedToken token;
    token.id = t.at("id").get<int32_t>();
    token.content = t.at("content").get<std::string>();
    KUIPER_CHECK(token.id >= 0, "tokenizer file ", file, ": added token \"", token.content, "\" has a negative id");
    token.special = t.value("special", false);
    token.single_word = t.value("single_word", false);
    token.lstrip = t.value("lstrip", false);
    token.rstrip = t.value("rstrip", false);
    token.normalized = t.value("normalized", !token.special);

    added_ids_.insert_or_assign(token.content, token.id);
    vocab_size_ = std::max(vocab_size_, token.id + 1);
    // A normalized token is looked for, and printed, in its normalized form (as tokenizers
    // 0.2x prints it); control tokens print nothing.
    std::string buffer;
    const std::string pattern(token.normalized ? normalizer_.apply(token.content, buffer) : token.content);
    added_output_.insert_or_assign(token.id,
                                   token.special ? std::string() : byte_level::decode(pattern).value_or(pattern));
    (token.normalized ? normalized_patterns : raw_patterns).push_back(pattern);
    (token.normalized ? normalized : raw).push_back(std::move(token));
  }
  raw_added_ = AddedTokenMatcher(std::move(raw), raw_patterns);
  normalized_added_ = AddedTokenMatcher(std::move(normalized), normalized_patterns);
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos,
                                          std::span<const TextRange> plain_text) const {
  if (const auto bad = find_invalid_utf8(text)) fail("text is not valid UTF-8 (bad byte at offset ", *bad, ")");
  const PlainText plain(plain_text, text.size());
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  Scratch s;
  raw_added_.split(text, plain, s.raw_runs);
  for (const TextRun& run : s.raw_runs) {
    if (run.id >= 0) {
      ids.push_back(run.id);
    } else {
      const std::string_view section = text.substr(run.begin, run.end - run.begin);
      encode_section(section, plain.overlaps(run.begin, run.end), ids, s);
    }
  }
  if (add_bos && bos_ && (ids.empty() || ids.front() != *bos_)) ids.insert(ids.begin(), *bos_);
  return ids;
}

// `plain`: the section holds plain text, where no special token is matched. Offsets change in
// normalization, so the whole normalized section counts as plain then; the special tokens of the
// files we read are matched in the raw text anyway (normalized: false).
void BpeTokenizer::encode_section(std::string_view raw, bool plain, std::vector<int32_t>& ids,
                                  Scratch& s) const {
  const std::string_view text = normalizer_.apply(raw, s.normalized);
  if (normalized_added_.empty()) {
    encode_normalized(text, ids, s);
    return;
  }
  s.normalized_runs.clear();
  const TextRange all{0, text.size()};
  normalized_added_.split(text, plain ? PlainText({&all, 1}, text.size()) : PlainText(), s.normalized_runs);
  for_each_run(text, s.normalized_runs, ids, [&](std::string_view run) { encode_normalized(run, ids, s); });
}

void BpeTokenizer::encode_normalized(std::string_view text, std::vector<int32_t>& ids, Scratch& s) const {
  s.pieces.clear();
  s.piece_storage.clear();
  pre_tokenizer_.split(text, s.pieces, s.piece_storage);
  for (std::string_view piece : s.pieces) encode_piece(piece, ids, s);
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& ids, Scratch& s) const {
  const bool cacheable = piece.size() <= kMaxCachedPiece;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (const auto it = cache_.find(piece); it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids.size();
  model_.encode(piece, ids, s.bpe);
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.try_emplace(std::string(piece), ids.begin() + std::ptrdiff_t(first), ids.end());
  }
}

}  // namespace

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::filesystem::path& path) {
  return make_bpe_tokenizer(read_tokenizer_json(path), path.string());
}

std::unique_ptr<Tokenizer> make_bpe_tokenizer(const TokenizerJson& content, const std::string& file) {
  try {
    return std::make_unique<BpeTokenizer>(content, file);
  } catch (const json::exception& e) {
    // A field of the wrong type or missing: name the file rather than surface a bare JSON error.
    fail("tokenizer file ", file, " is not a valid tokenizer.json: ", e.what());
  }
}

}  // namespace kuiper
