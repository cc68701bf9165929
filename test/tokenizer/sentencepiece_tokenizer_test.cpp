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

// Inside plain-text ranges (a chat message's content) control pieces are spelled out; outside
// them, and where a range ends right before one, they are still tokens.
TEST_F(SentencePiece, ControlPiecesInPlainTextAreText) {
  const std::string text = "<s>[INST] a</s><s>b [/INST]</s>";
  const std::vector<TextRange> content{{10, 19}};  // "a</s><s>b"
  const auto ids = tok_->encode(text, true, content);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 1), 1) << "only the leading <s>";
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 1) << "only the trailing </s>";
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(tok_->decode(ids), " [INST] a</s><s>b [/INST]");
  // Without special-token strings in the ranges, the ids are those of the whole text.
  const std::string benign = "<s>[INST] hello [/INST]";
  EXPECT_EQ(tok_->encode(benign, true, std::vector<TextRange>{{10, 15}}), tok_->encode(benign, true));
  // A BOS the text starts with inside plain text is text: BOS is still added.
  const auto plain_bos = tok_->encode("<s>x", true, std::vector<TextRange>{{0, 4}});
  EXPECT_EQ(std::count(plain_bos.begin(), plain_bos.end(), 1), 1);
  EXPECT_THROW(tok_->encode("abc", false, std::vector<TextRange>{{2, 4}}), Error);
  EXPECT_THROW(tok_->encode("abc", false, std::vector<TextRange>{{2, 3}, {0, 1}}), Error);
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
