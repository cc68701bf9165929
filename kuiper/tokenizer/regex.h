#pragma once
// A compiled PCRE2 pattern for the pre-tokenizer's Split rules. Hugging Face writes them for
// Oniguruma with Unicode classes (\p{L}, \p{N}), case-insensitive groups and lookahead; PCRE2 in
// UTF + UCP mode reads the same syntax with the same meaning, and its JIT keeps splitting fast.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kuiper {

struct MatchSpan {
  size_t begin = 0;
  size_t end = 0;
};

class Regex {
 public:
  // `literal` takes the pattern as a plain string. Throws kuiper::Error with PCRE2's message
  // and the offset in the pattern when it does not compile.
  Regex(std::string_view pattern, bool literal);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // Appends the successive non-overlapping matches in `text` (which must be valid UTF-8), the
  // way Oniguruma's find_iter reports them: an empty match right where the previous match ended
  // is skipped.
  void find_all(std::string_view text, std::vector<MatchSpan>& out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::string pattern_;
  std::unique_ptr<Code> code_;
};

}  // namespace kuiper
