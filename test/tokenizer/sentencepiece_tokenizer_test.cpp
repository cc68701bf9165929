#include "kuiper/tokenizer/sentencepiece_tokenizer.h"

#include <fstream>

#include "test/test_util.h"

namespace kuiper::test {
namespace {

class SentencePiece : public ::testing::Test {
 protected:
  void SetUp() override {
    KUIPER_REQUIRE_SHARED("models/llama2/tokenizer.model");
    tok_ = Tokenizer::load(shared_dir() / "models/llama2/tokenizer.model");
  }
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(SentencePiece, EncodesTheGoldenPrompts) {
  for (const auto& p : golden().at("llama2").at("prompts"))
    EXPECT_EQ(tok_->encode(p.at("prompt").get<std::string>(), true),
              p.at("prompt_ids").get<std::vector<int32_t>>());
}

TEST_F(SentencePiece, RoundTripsText) {
  EXPECT_EQ(tok_->vocab_size(), 32000);
  EXPECT_EQ(tok_->bos_id(), 1);
  for (const std::string s : {"Hello, world!", "naïve café 你好 🙂", "tabs\tand\nnewlines  spaces",
                              "x = f(y) + 3.14159;", "ünïcödé ÅÄÖ"}) {
    const auto ids = tok_->encode(s, false);
    EXPECT_EQ(tok_->decode(ids), " " + s) << "sentencepiece marks the first word with a space";
  }
}

TEST_F(SentencePiece, ParsesControlTokensInTextAndDoesNotDoubleBos) {
  EXPECT_EQ(tok_->encode("<s>[INST] hi [/INST]", true), tok_->encode("[INST] hi [/INST]", true));
  const auto ids = tok_->encode("a</s><s>b", false);
  EXPECT_NE(std::find(ids.begin(), ids.end(), 2), ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), 1), ids.end());
  EXPECT_EQ(tok_->decode_token(1), "");
  EXPECT_EQ(tok_->decode_token(2), "");
}

TEST_F(SentencePiece, ByteTokensDecodeToRawBytes) {
  EXPECT_EQ(tok_->decode_token(13), "\n") << "<0x0A>";
  const auto ids = tok_->encode("🙂", false);  // not in the vocabulary: byte fallback
  std::string bytes;
  for (int32_t id : ids) bytes += tok_->decode_token(id);
  EXPECT_EQ(bytes, " 🙂");
}

TEST_F(SentencePiece, RejectsInvalidUtf8AndUnknownIds) {
  EXPECT_THROW(tok_->encode("ab\xff", false), Error);
  EXPECT_THROW(tok_->decode_token(32000), Error);
  EXPECT_THROW(tok_->decode_token(-1), Error);
}

TEST(Tokenizer, RecognisesTokenizerJsonAfterAByteOrderMark) {
  KUIPER_REQUIRE_SHARED("models/qwen2-kjv/tokenizer.json");
  std::ifstream in(shared_dir() / "models/qwen2-kjv/tokenizer.json", std::ios::binary);
  std::ofstream out(scratch_dir() / "bom.json", std::ios::binary);
  out << "\xEF\xBB\xBF" << in.rdbuf();
  out.close();
  EXPECT_EQ(Tokenizer::load(scratch_dir() / "bom.json")->vocab_size(), 151665);
}

TEST(Tokenizer, MissingAndEmptyFilesAreClearErrors) {
  EXPECT_THROW(Tokenizer::load(scratch_dir() / "none.model"), Error);
  std::ofstream{scratch_dir() / "empty.model"};
  EXPECT_THROW(Tokenizer::load(scratch_dir() / "empty.model"), Error);
}

}  // namespace
}  // namespace kuiper::test
