// Placeholder until the byte-level BPE tokenizer lands (issue 4).
#include "kuiper/tokenizer/bpe_tokenizer.h"

#include "kuiper/base/error.h"

namespace kuiper {

std::unique_ptr<Tokenizer> load_bpe_tokenizer(const std::filesystem::path& path) {
  fail("tokenizer.json files are not supported yet: ", path.string());
}

}  // namespace kuiper
