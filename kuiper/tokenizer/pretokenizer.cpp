#include "kuiper/tokenizer/pretokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/tokenizer_json.h"

namespace kuiper {
namespace {

// GPT-2's pre-tokenizer regex, which ByteLevel applies when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Segment {
  size_t begin;
  size_t end;
  bool is_match;
};

PreTokenizer::Behavior parse_behavior(const std::string& name, std::string_view file) {
  using B = PreTokenizer::Behavior;
  if (name == "Removed") return B::kRemoved;
  if (name == "Isolated") return B::kIsolated;
  if (name == "MergedWithPrevious") return B::kMergedWithPrevious;
  if (name == "MergedWithNext") return B::kMergedWithNext;
  if (name == "Contiguous") return B::kContiguous;
  fail("tokenizer file ", file, ": unsupported Split behavior \"", name, "\"");
}

// Folds delimiter segments into their neighbours the way Hugging Face's
// NormalizedString::split does for each behaviour; the result still covers the whole text
// except for removed delimiters.
void apply_behavior(PreTokenizer::Behavior behavior, std::vector<Segment>& segments) {
  using B = PreTokenizer::Behavior;
  if (behavior == B::kIsolated) return;
  if (behavior == B::kRemoved) {
    std::erase_if(segments, [](const Segment& s) { return s.is_match; });
    return;
  }
  std::vector<Segment> folded;
  folded.reserve(segments.size());
  bool previous_match = false;
  switch (behavior) {
    case B::kIsolated:
    case B::kRemoved:
      break;  // handled above
    case B::kContiguous:
    case B::kMergedWithPrevious:
      for (const Segment& s : segments) {
        // Contiguous joins runs of like segments; MergedWithPrevious joins a delimiter to what precedes it.
        const bool joins = behavior == B::kContiguous ? s.is_match == previous_match : s.is_match && !previous_match;
        if (joins && !folded.empty()) {
          folded.back().end = s.end;
        } else {
          folded.push_back(s);
        }
        previous_match = s.is_match;
      }
      break;
    case B::kMergedWithNext:
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->is_match && !previous_match && !folded.empty()) {
          folded.back().begin = it->begin;
        } else {
          folded.push_back(*it);
        }
        previous_match = it->is_match;
      }
      std::reverse(folded.begin(), folded.end());
      break;
  }
  segments.swap(folded);
}

}  // namespace

struct PreTokenizer::Scratch {
  std::vector<MatchSpan> matches;
  std::vector<Segment> segments;
  std::deque<std::string>& storage;
};

PreTokenizer PreTokenizer::from_json(const nlohmann::json& spec, std::string_view file) {
  PreTokenizer p;
  if (!spec.is_null()) p.add(spec, file);
  return p;
}

void PreTokenizer::add(const nlohmann::json& spec, std::string_view file) {
  const std::string type = step_type(spec);
  if (type == "Sequence") {
    for (const auto& inner : sequence_steps(spec, "pretokenizers", file)) add(inner, file);
  } else if (type == "Split") {
    const auto& pattern = spec.at("pattern");
    const bool literal = pattern.contains("String");
    KUIPER_CHECK(literal || pattern.contains("Regex"), "tokenizer file ", file,
                 ": Split pattern is neither \"String\" nor \"Regex\"");
    const std::string text = pattern.at(literal ? "String" : "Regex").get<std::string>();
    try {
      steps_.push_back(SplitStep{Regex(text, literal), parse_behavior(spec.at("behavior").get<std::string>(), file),
                                 spec.value("invert", false)});
    } catch (const Error& e) {
      fail("tokenizer file ", file, ": ", e.what());
    }
  } else if (type == "ByteLevel") {
    ByteLevelStep step{spec.value("add_prefix_space", false), std::nullopt};
    // Braces, not emplace: clang 14 (the fuzz build) has no parenthesized aggregate init.
    if (spec.value("use_regex", true)) step.gpt2_split = SplitStep{Regex(kGpt2Pattern, false), Behavior::kIsolated, false};
    steps_.push_back(std::move(step));
  } else {
    fail("tokenizer file ", file, ": unsupported pre_tokenizer \"", type,
         "\" (supported: Split, ByteLevel and Sequence of them)");
  }
}

bool PreTokenizer::byte_level() const {
  return std::ranges::any_of(steps_, [](const Step& s) { return std::holds_alternative<ByteLevelStep>(s); });
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces,
                         std::deque<std::string>& storage) const {
  if (text.empty()) return;
  Scratch scratch{{}, {}, storage};
  std::vector<std::string_view> current{text}, next;
  for (const Step& step : steps_) {
    next.clear();
    for (std::string_view piece : current) {
      std::visit([&](const auto& s) { apply(s, piece, next, scratch); }, step);
    }
    current.swap(next);
  }
  pieces.insert(pieces.end(), current.begin(), current.end());
}

void PreTokenizer::apply(const SplitStep& step, std::string_view piece, std::vector<std::string_view>& out,
                         Scratch& scratch) {
  scratch.matches.clear();
  step.regex.find_all(piece, scratch.matches);
  // Matches and the gaps between them, as Hugging Face's Pattern::find_matches lists them.
  auto& segments = scratch.segments;
  segments.clear();
  size_t prev = 0;
  for (const MatchSpan& m : scratch.matches) {
    if (prev != m.begin) segments.push_back({prev, m.begin, step.invert});
    segments.push_back({m.begin, m.end, !step.invert});
    prev = m.end;
  }
  if (prev != piece.size()) segments.push_back({prev, piece.size(), step.invert});
  apply_behavior(step.behavior, segments);
  for (const Segment& s : segments) {
    if (s.end > s.begin) out.push_back(piece.substr(s.begin, s.end - s.begin));
  }
}

void PreTokenizer::apply(const ByteLevelStep& step, std::string_view piece, std::vector<std::string_view>& out,
                         Scratch& scratch) {
  if (step.add_prefix_space && !piece.starts_with(' ')) {
    std::string& spaced = scratch.storage.emplace_back();
    spaced.reserve(piece.size() + 1);
    spaced.append(1, ' ').append(piece);
    piece = spaced;
  }
  if (step.gpt2_split) {
    apply(*step.gpt2_split, piece, out, scratch);
  } else {
    out.push_back(piece);
  }
}

}  // namespace kuiper
