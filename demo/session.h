#pragma once
#include <memory>

#include "demo/options.h"
#include "kuiper/model/llama_model.h"
#include "kuiper/tokenizer/tokenizer.h"

namespace kuiper::demo {

// A model and the tokenizer that belongs to it, loaded and checked against each other.
struct Session {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<LlamaModel> model;
  double load_seconds = 0;
};

// Throws kuiper::Error when either file is bad or the tokenizer does not fit the model.
Session open_session(const Options& options);

// One line on stderr: what was loaded, where, how fast. Printed once the request is known to be
// valid, so that a bad request gets nothing but its error line.
void report_loaded(const Options& options, const Session& session);

}  // namespace kuiper::demo
