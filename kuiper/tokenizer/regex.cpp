#include "kuiper/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <optional>

#include "kuiper/base/error.h"

namespace kuiper {
namespace {

struct CodeDeleter {
  void operator()(pcre2_code* p) const { pcre2_code_free(p); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* p) const { pcre2_match_data_free(p); }
};
struct MatchContextDeleter {
  void operator()(pcre2_match_context* p) const { pcre2_match_context_free(p); }
};
struct JitStackDeleter {
  void operator()(pcre2_jit_stack* p) const { pcre2_jit_stack_free(p); }
};

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

size_t utf8_char_length(uint8_t lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

// Oniguruma's \s is Unicode's White_Space property. PCRE2's (in UCP mode) also matches U+180E
// MONGOLIAN VOWEL SEPARATOR, a space before Unicode 6.3, which changes how text around it splits.
// So \s and \S are spelled out with this list.
constexpr std::string_view kWhiteSpace =
    R"(\t-\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

// `pattern` (Oniguruma syntax, as Hugging Face writes it) in PCRE2 syntax.
std::string from_oniguruma(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      if (e == 's') {
        out.append(in_class ? "" : "[").append(kWhiteSpace).append(in_class ? "" : "]");
      } else if (e == 'S' && !in_class) {
        out.append("[^").append(kWhiteSpace).append("]");
      } else {
        out.append(1, c).append(1, e);
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

// The JIT runs on a 32 KiB stack by default; a pattern that backtracks over a very long run
// of one character class may need more. This larger stack is made only when that happens.
constexpr size_t kLargeJitStack = size_t{64} << 20;

}  // namespace

struct Regex::Code {
  std::unique_ptr<pcre2_code, CodeDeleter> code;
};

Regex::Regex(std::string_view pattern, bool literal) : pattern_(pattern), code_(std::make_unique<Code>()) {
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  // PCRE2 refuses UCP together with LITERAL; a literal has no classes for UCP to affect.
  const uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  const std::string source = literal ? std::string(pattern) : from_oniguruma(pattern);
  code_->code.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(), options, &error,
                                  &error_offset, nullptr));
  KUIPER_CHECK(code_->code != nullptr, "cannot compile regex \"", pattern, "\": ", pcre2_message(error),
               " at offset ", error_offset);
  // Without JIT support (an unusual PCRE2 build) matching still works, only slower.
  pcre2_jit_compile(code_->code.get(), PCRE2_JIT_COMPLETE);
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

void Regex::find_all(std::string_view text, std::vector<MatchSpan>& out) const {
  pcre2_code* code = code_->code.get();
  std::unique_ptr<pcre2_match_data, MatchDataDeleter> data(pcre2_match_data_create_from_pattern(code, nullptr));
  KUIPER_CHECK(data != nullptr, "out of memory creating regex match data");
  std::unique_ptr<pcre2_match_context, MatchContextDeleter> context;
  std::unique_ptr<pcre2_jit_stack, JitStackDeleter> jit_stack;

  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  std::optional<size_t> last_end;
  size_t pos = 0;
  while (pos <= text.size()) {
    // The caller has validated the UTF-8 once; PCRE2 need not check it again at every call.
    const int rc = pcre2_match(code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK, data.get(), context.get());
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !jit_stack) {
      jit_stack.reset(pcre2_jit_stack_create(32 << 10, kLargeJitStack, nullptr));
      context.reset(pcre2_match_context_create(nullptr));
      KUIPER_CHECK(jit_stack && context, "out of memory creating a regex JIT stack");
      pcre2_jit_stack_assign(context.get(), nullptr, jit_stack.get());
      continue;
    }
    KUIPER_CHECK(rc >= 0, "regex \"", pattern_, "\" failed on a text of ", text.size(),
                 " bytes: ", pcre2_message(rc));
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    const size_t begin = ovector[0], end = ovector[1];
    if (begin == end && last_end == end) {
      if (pos >= text.size()) break;
      pos += utf8_char_length(uint8_t(text[pos]));
      continue;
    }
    out.push_back({begin, end});
    pos = end;
    last_end = end;
  }
}

}  // namespace kuiper
