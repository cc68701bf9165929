#pragma once
// The pre-tokenizer of a tokenizer.json: cuts normalized text into the pieces that BPE encodes
// one by one. Supported: Split (regex or string pattern, any delimiter behaviour, invert),
// ByteLevel (optionally with GPT-2's regex and a prefix space), and Sequence of them.
#include <nlohmann/json_fwd.hpp>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kuiper/tokenizer/regex.h"

namespace kuiper {

class PreTokenizer {
 public:
  // `spec` is the file's "pre_tokenizer" value; `file` names the file in error messages.
  static PreTokenizer from_json(const nlohmann::json& spec, std::string_view file);

  // Whether a ByteLevel step is present, i.e. the vocabulary is written in byte-level characters.
  bool byte_level() const;

  // Appends the non-empty pieces of `text`. They view `text`, or strings appended to `storage`
  // when a step adds characters (ByteLevel's prefix space).
  void split(std::string_view text, std::vector<std::string_view>& pieces,
             std::deque<std::string>& storage) const;

  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

 private:
  struct SplitStep {
    Regex regex;
    Behavior behavior;
    bool invert;
  };
  struct ByteLevelStep {
    bool add_prefix_space;
    std::optional<SplitStep> gpt2_split;  // GPT-2's regex, Isolated, when use_regex is set
  };
  using Step = std::variant<SplitStep, ByteLevelStep>;
  struct Scratch;

  void add(const nlohmann::json& spec, std::string_view file);
  static void apply(const SplitStep& step, std::string_view piece, std::vector<std::string_view>& out,
                    Scratch& scratch);
  static void apply(const ByteLevelStep& step, std::string_view piece, std::vector<std::string_view>& out,
                    Scratch& scratch);

  std::vector<Step> steps_;
};

}  // namespace kuiper
