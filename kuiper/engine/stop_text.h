#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace kuiper::engine {

// Streams generated text while watching for stop strings: text that might be the start of one is
// held back until the next piece decides it, and once one appears the stream ends before it (as
// OpenAI's `stop` parameter does).
class StopText {
 public:
  explicit StopText(std::vector<std::string> stops);

  // Appends a piece; returns the text that can no longer be part of a stop string. After a stop
  // string was found, returns "" for good.
  std::string push(std::string_view piece);
  bool stopped() const { return stopped_; }
  // The held-back text, when generation ends for another reason.
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace kuiper::engine
