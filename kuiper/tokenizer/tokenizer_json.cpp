#include "kuiper/tokenizer/tokenizer_json.h"

#include <fstream>
#include <sstream>

#include "kuiper/base/error.h"

namespace kuiper {
namespace {

using nlohmann::json;

std::string read_file(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  KUIPER_CHECK(file.good(), "cannot open tokenizer file ", path.string());
  std::ostringstream content;
  content << file.rdbuf();
  KUIPER_CHECK(!file.bad(), "cannot read tokenizer file ", path.string());
  return std::move(content).str();
}

// nlohmann SAX events -> TokenizerJson. Outside model.vocab / model.merges it builds the
// document like nlohmann's own DOM parser; inside them it appends to the vectors.
class Reader {
 public:
  explicit Reader(TokenizerJson& out) : out_(out) {}

  bool null() { return value(nullptr); }
  bool boolean(bool v) { return value(v); }
  bool number_integer(json::number_integer_t v) { return value(v); }
  bool number_unsigned(json::number_unsigned_t v) { return value(v); }
  bool number_float(json::number_float_t v, const std::string&) { return value(v); }
  bool binary(json::binary_t& v) { return value(std::move(v)); }

  bool string(std::string& s) {
    switch (zone_) {
      case Zone::kMerges: return merge_string(s);
      case Zone::kMergePair: pair_.push_back(std::move(s)); return true;
      case Zone::kVocab: return refuse("model.vocab maps tokens to ids, found a string value");
      case Zone::kDocument: return value(std::move(s));
    }
    return false;
  }

  bool key(std::string& k) {
    key_ = std::move(k);
    return true;
  }

  bool start_object(size_t) {
    if (zone_ != Zone::kDocument) return refuse("unexpected object inside model.vocab or model.merges");
    if (entering("vocab")) {
      zone_ = Zone::kVocab;
      out_.has_vocab = true;
      return true;
    }
    return open(json::object());
  }

  bool end_object() {
    if (zone_ == Zone::kVocab) {
      zone_ = Zone::kDocument;
      return true;
    }
    return close();
  }

  bool start_array(size_t) {
    switch (zone_) {
      case Zone::kMerges:
        zone_ = Zone::kMergePair;
        pair_.clear();
        return true;
      case Zone::kDocument:
        if (entering("merges")) {
          zone_ = Zone::kMerges;
          out_.has_merges = true;
          return true;
        }
        return open(json::array());
      default:
        return refuse("unexpected array inside model.vocab or a merge");
    }
  }

  bool end_array() {
    if (zone_ == Zone::kMerges) {
      zone_ = Zone::kDocument;
      return true;
    }
    if (zone_ == Zone::kMergePair) {
      if (pair_.size() != 2) return refuse("a merge pair must hold two strings");
      out_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      zone_ = Zone::kMerges;
      return true;
    }
    return close();
  }

  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    syntax_error_ = e.what();
    return false;
  }

  // Why parsing stopped: not JSON at all, or JSON that is not laid out as a tokenizer.json.
  const std::string& syntax_error() const { return syntax_error_; }
  const std::string& layout_error() const { return layout_error_; }

 private:
  enum class Zone { kDocument, kVocab, kMerges, kMergePair };

  // Whether the container about to open is model.<name>.
  bool entering(const char* name) const { return stack_.size() == 2 && in_model_ && key_ == name; }

  template <class V>
  bool value(V&& v) {
    if (zone_ == Zone::kVocab) {
      if constexpr (std::is_integral_v<std::decay_t<V>> && !std::is_same_v<std::decay_t<V>, bool>) {
        out_.vocab.emplace_back(std::move(key_), int64_t(v));
        return true;
      }
      return refuse("model.vocab maps tokens to ids, found a non-integer value");
    }
    if (zone_ != Zone::kDocument) return refuse("a merge must be a string or a pair of strings");
    place(json(std::forward<V>(v)));
    return true;
  }

  json* place(json v) {
    if (stack_.empty()) {
      out_.doc = std::move(v);
      return &out_.doc;
    }
    json& parent = *stack_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(v));
      return &parent.back();
    }
    return &(parent[key_] = std::move(v));
  }

  bool open(json container) {
    const bool model = stack_.size() == 1 && key_ == "model";
    stack_.push_back(place(std::move(container)));
    if (stack_.size() == 2) in_model_ = model;
    return true;
  }

  bool close() {
    stack_.pop_back();
    return true;
  }

  bool merge_string(const std::string& s) {
    const size_t space = s.find(' ');
    if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
      return refuse("malformed merge \"" + s + "\" (expected \"a b\")");
    out_.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    return true;
  }

  bool refuse(std::string why) {
    layout_error_ = std::move(why);
    return false;
  }

  TokenizerJson& out_;
  std::vector<json*> stack_;  // open containers of the document
  bool in_model_ = false;     // stack_[1] is the top-level "model" object
  std::string key_;
  Zone zone_ = Zone::kDocument;
  std::vector<std::string> pair_;
  std::string syntax_error_, layout_error_;
};

}  // namespace

std::string step_type(const json& spec) {
  return spec.is_object() && spec.contains("type") && spec["type"].is_string() ? spec["type"].get<std::string>()
                                                                                : std::string();
}

const json& sequence_steps(const json& spec, const char* list_key, std::string_view file) {
  KUIPER_CHECK(spec.contains(list_key) && spec[list_key].is_array(), "tokenizer file ", file, ": a Sequence without a \"",
               list_key, "\" list");
  return spec[list_key];
}

TokenizerJson read_tokenizer_json(const std::filesystem::path& path) {
  return parse_tokenizer_json(read_file(path), path.string());
}

TokenizerJson parse_tokenizer_json(std::string_view text, std::string_view name) {
  TokenizerJson out;
  Reader reader(out);
  if (!json::sax_parse(text, &reader, json::input_format_t::json, /*strict=*/true)) {
    KUIPER_CHECK(reader.layout_error().empty(), "tokenizer file ", name, ": ", reader.layout_error());
    fail("cannot parse tokenizer file ", name, " as JSON: ", reader.syntax_error());
  }
  return out;
}

}  // namespace kuiper
