#include "kuiper/tokenizer/gguf_tokenizer.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/bpe_tokenizer.h"
#include "kuiper/tokenizer/sentencepiece_tokenizer.h"
#include "kuiper/tokenizer/tokenizer_json.h"

namespace kuiper {
namespace {

using nlohmann::json;

constexpr const char* kName = "embedded in the GGUF file";

// tokenizer.ggml.token_type, numbered as sentencepiece's SentencePiece.Type.
enum TokenType : int64_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};

struct Vocabulary {
  std::vector<std::string_view> tokens;
  std::vector<int64_t> types;
};

Vocabulary vocabulary(const GgufFile& f) {
  const GgufArray* tokens = f.array("tokenizer.ggml.tokens");
  KUIPER_CHECK(tokens != nullptr, "GGUF metadata lacks 'tokenizer.ggml.tokens'");
  Vocabulary v{gguf_strings(*tokens, "tokenizer.ggml.tokens"), {}};
  KUIPER_CHECK(!v.tokens.empty() && v.tokens.size() <= (size_t(1) << 24),
               "GGUF metadata 'tokenizer.ggml.tokens' has ", v.tokens.size(), " tokens");
  if (const GgufArray* types = f.array("tokenizer.ggml.token_type")) {
    v.types = gguf_integers(*types, "tokenizer.ggml.token_type");
    KUIPER_CHECK(v.types.size() == v.tokens.size(), "GGUF metadata 'tokenizer.ggml.token_type' has ",
                 v.types.size(), " entries for ", v.tokens.size(), " tokens");
  } else {
    v.types.assign(v.tokens.size(), kNormal);
  }
  return v;
}

// A token id from the metadata, checked against the vocabulary; -1 when absent.
int64_t token_id(const GgufFile& f, const char* key, size_t vocab) {
  const int64_t id = f.integer(key).value_or(-1);
  KUIPER_CHECK(id >= -1 && id < int64_t(vocab), "GGUF metadata '", key, "' = ", id,
               " is outside the vocabulary of ", vocab);
  return id;
}

// --- sentencepiece: a ModelProto (sentencepiece_model.proto) written field by field -----------

class ProtoWriter {
 public:
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out_ += char(uint8_t(v) | 0x80);
      v >>= 7;
    }
    out_ += char(v);
  }
  void tag(int field, int wire) { varint(uint64_t(field) << 3 | uint64_t(wire)); }
  void integer(int field, int64_t v) {  // int32 fields: negative values take ten bytes
    tag(field, 0);
    varint(uint64_t(v));
  }
  void bytes(int field, std::string_view s) {
    tag(field, 2);
    varint(s.size());
    out_ += s;
  }
  void fixed_float(int field, float v) {
    tag(field, 5);
    char b[4];
    std::memcpy(b, &v, 4);
    out_.append(b, 4);
  }
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

std::unique_ptr<Tokenizer> sentencepiece_tokenizer(const GgufFile& f) {
  const Vocabulary v = vocabulary(f);
  const GgufArray* score_array = f.array("tokenizer.ggml.scores");
  KUIPER_CHECK(score_array != nullptr, "GGUF metadata lacks 'tokenizer.ggml.scores'");
  const auto scores = gguf_floats(*score_array, "tokenizer.ggml.scores");
  KUIPER_CHECK(scores.size() == v.tokens.size(), "GGUF metadata 'tokenizer.ggml.scores' has ",
               scores.size(), " entries for ", v.tokens.size(), " tokens");
  const size_t n = v.tokens.size();
  const int64_t unk = token_id(f, "tokenizer.ggml.unknown_token_id", n);
  const int64_t bos = token_id(f, "tokenizer.ggml.bos_token_id", n);
  const int64_t eos = token_id(f, "tokenizer.ggml.eos_token_id", n);
  const int64_t pad = token_id(f, "tokenizer.ggml.padding_token_id", n);
  bool byte_fallback = false;
  ProtoWriter model;
  for (size_t id = 0; id < n; ++id) {
    const int64_t type = v.types[id];
    KUIPER_CHECK(type >= kNormal && type <= kByte, "GGUF metadata 'tokenizer.ggml.token_type': token ",
                 id, " has unknown type ", type);
    byte_fallback = byte_fallback || type == kByte;
    ProtoWriter piece;
    piece.bytes(1, v.tokens[id]);
    piece.fixed_float(2, scores[id]);
    piece.integer(3, type);
    model.bytes(1, piece.str());
  }
  // TrainerSpec: a BPE model (llama's vocabularies are sentencepiece BPE, scored by merge rank),
  // with byte fallback when the vocabulary has byte pieces, and the special pieces by name.
  ProtoWriter trainer;
  trainer.integer(3, 2);  // model_type: BPE
  trainer.integer(4, int64_t(n));
  trainer.integer(35, byte_fallback ? 1 : 0);
  trainer.integer(40, unk);
  trainer.integer(41, bos);
  trainer.integer(42, eos);
  trainer.integer(43, pad);
  if (unk >= 0) trainer.bytes(45, v.tokens[size_t(unk)]);
  if (bos >= 0) trainer.bytes(46, v.tokens[size_t(bos)]);
  if (eos >= 0) trainer.bytes(47, v.tokens[size_t(eos)]);
  if (pad >= 0) trainer.bytes(48, v.tokens[size_t(pad)]);
  model.bytes(2, trainer.str());
  // NormalizerSpec: no normalization (llama.cpp applies none either), spaces as U+2581 and the
  // dummy prefix space unless the file says otherwise.
  ProtoWriter normalizer;
  normalizer.bytes(1, "identity");
  normalizer.integer(3, f.boolean("tokenizer.ggml.add_space_prefix").value_or(true) ? 1 : 0);
  normalizer.integer(4, 0);  // remove_extra_whitespaces
  normalizer.integer(5, 1);  // escape_whitespaces
  model.bytes(3, normalizer.str());
  return make_sentencepiece_tokenizer(model.str(), kName);
}

// --- byte-level BPE: the tokenizer.json a Hugging Face tokenizer of this kind would have -------

// The pre-tokenizer regexes of the tokenizer.json files llama.cpp names these (llama.cpp
// recognises a tokenizer by hashing its output and stores only the name).
json pre_tokenizer(std::string_view pre) {
  const auto split = [](const char* regex) {
    return json{{"type", "Sequence"},
                {"pretokenizers",
                 {{{"type", "Split"},
                   {"pattern", {{"Regex", regex}}},
                   {"behavior", "Isolated"},
                   {"invert", false}},
                  {{"type", "ByteLevel"},
                   {"add_prefix_space", false},
                   {"trim_offsets", false},
                   {"use_regex", false}}}}};
  };
  if (pre == "llama-bpe")
    return split(
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)");
  if (pre == "qwen2")
    return split(
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)");
  if (pre == "gpt2" || pre == "default")
    return {{"type", "ByteLevel"},
            {"add_prefix_space", false},
            {"trim_offsets", false},
            {"use_regex", true}};
  fail("unsupported GGUF pre-tokenizer '", pre,
       "' in 'tokenizer.ggml.pre' (supported: llama-bpe, qwen2, gpt2)");
}

std::unique_ptr<Tokenizer> bpe_tokenizer(const GgufFile& f) {
  const Vocabulary v = vocabulary(f);
  const size_t n = v.tokens.size();
  const std::string_view pre = f.string("tokenizer.ggml.pre").value_or("default");
  TokenizerJson content;
  content.has_vocab = content.has_merges = true;
  json added = json::array();
  for (size_t id = 0; id < n; ++id) {
    const std::string token(v.tokens[id]);
    if (v.types[id] == kUnused) continue;  // the converter's "[PAD<id>]" padding of the vocabulary
    if (v.types[id] == kControl || v.types[id] == kUserDefined) {
      // Added tokens, found in the text before anything else; control ones print nothing.
      added.push_back({{"id", id},
                       {"content", token},
                       {"special", v.types[id] == kControl},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false}});
    } else {
      content.vocab.emplace_back(token, int64_t(id));
    }
  }
  if (const GgufArray* merges = f.array("tokenizer.ggml.merges")) {
    for (std::string_view m : gguf_strings(*merges, "tokenizer.ggml.merges")) {
      const size_t space = m.find(' ');
      KUIPER_CHECK(space != std::string_view::npos && m.find(' ', space + 1) == std::string_view::npos,
                   "GGUF metadata 'tokenizer.ggml.merges' holds \"", m, "\" (expected \"a b\")");
      content.merges.emplace_back(std::string(m.substr(0, space)), std::string(m.substr(space + 1)));
    }
  }
  json& doc = content.doc;
  doc["model"] = {{"type", "BPE"}, {"ignore_merges", pre == "llama-bpe"}, {"byte_fallback", false}};
  doc["normalizer"] = pre == "qwen2" ? json{{"type", "NFC"}} : json();
  doc["pre_tokenizer"] = pre_tokenizer(pre);
  doc["decoder"] = {{"type", "ByteLevel"}};
  doc["added_tokens"] = std::move(added);
  const int64_t bos = token_id(f, "tokenizer.ggml.bos_token_id", n);
  if (bos >= 0 && f.boolean("tokenizer.ggml.add_bos_token").value_or(pre == "llama-bpe")) {
    const std::string bos_token(v.tokens[size_t(bos)]);
    doc["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", bos_token}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"special_tokens", {{bos_token, {{"id", bos_token}, {"ids", {bos}}, {"tokens", {bos_token}}}}}}};
  }
  return make_bpe_tokenizer(content, kName);
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& f) {
  const auto model = f.string("tokenizer.ggml.model");
  if (!model) return nullptr;
  if (*model == "llama") return sentencepiece_tokenizer(f);
  if (*model == "gpt2") return bpe_tokenizer(f);
  fail("unsupported GGUF tokenizer '", *model, "' in 'tokenizer.ggml.model' (supported: llama, gpt2)");
}

}  // namespace kuiper
