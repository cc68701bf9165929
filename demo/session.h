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

}  // namespace kuiper::demo
