#include "kuiper/tokenizer/normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>

#include <algorithm>
#include <iterator>
#include <nlohmann/json.hpp>
#include <utility>

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/tokenizer_json.h"

namespace kuiper {
namespace {

using Form = Normalizer::Form;

const icu::Normalizer2& icu_instance(Form form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case Form::kNFC: n = icu::Normalizer2::getNFCInstance(status); break;
    case Form::kNFD: n = icu::Normalizer2::getNFDInstance(status); break;
    case Form::kNFKC: n = icu::Normalizer2::getNFKCInstance(status); break;
    case Form::kNFKD: n = icu::Normalizer2::getNFKDInstance(status); break;
  }
  KUIPER_CHECK(U_SUCCESS(status) && n != nullptr, "ICU cannot load its Unicode normalization data: ",
               u_errorName(status));
  return *n;
}

icu::StringPiece piece_of(std::string_view s) { return {s.data(), int32_t(s.size())}; }

}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& spec, std::string_view file) {
  Normalizer n;
  if (!spec.is_null()) n.add(spec, file);
  for (Form f : n.forms_) icu_instance(f);  // fail at load time, not at the first encode
  return n;
}

void Normalizer::add(const nlohmann::json& spec, std::string_view file) {
  static constexpr std::pair<std::string_view, Form> kForms[] = {
      {"NFC", Form::kNFC}, {"NFD", Form::kNFD}, {"NFKC", Form::kNFKC}, {"NFKD", Form::kNFKD}};
  const std::string type = step_type(spec);
  if (type == "Sequence") {
    for (const auto& inner : sequence_steps(spec, "normalizers", file)) add(inner, file);
    return;
  }
  const auto* form = std::find_if(std::begin(kForms), std::end(kForms), [&](const auto& f) { return f.first == type; });
  KUIPER_CHECK(form != std::end(kForms), "tokenizer file ", file, ": unsupported normalizer \"", type,
               "\" (supported: NFC, NFD, NFKC, NFKD and Sequence of them)");
  forms_.push_back(form->second);
}

std::string_view Normalizer::apply(std::string_view text, std::string& buffer) const {
  std::string scratch;
  std::string_view current = text;
  for (Form form : forms_) {
    const icu::Normalizer2& n = icu_instance(form);
    UErrorCode status = U_ZERO_ERROR;
    if (n.isNormalizedUTF8(piece_of(current), status) && U_SUCCESS(status)) continue;
    status = U_ZERO_ERROR;
    scratch.clear();
    icu::StringByteSink<std::string> sink(&scratch);
    n.normalizeUTF8(0, piece_of(current), sink, nullptr, status);
    KUIPER_CHECK(U_SUCCESS(status), "Unicode normalization failed: ", u_errorName(status));
    buffer.swap(scratch);
    current = buffer;
  }
  return current;
}

}  // namespace kuiper
