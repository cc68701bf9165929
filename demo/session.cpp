#include "demo/session.h"

#include <chrono>
#include <cstdio>

#include "kernels/cpu/cpu_kernels.h"
#include "kuiper/model/embedded_tokenizer.h"

namespace kuiper::demo {
namespace {

// A model exported with its tokenizer records that tokenizer's size, which must match exactly;
// otherwise (llama2.c files, Meta checkpoints without a tokenizer) the tokenizer must at least
// fit the model's vocabulary and agree on BOS.
void check_tokenizer_fits(const Tokenizer& tok, const ModelConfig& c, const Options& o) {
  const int n = tok.vocab_size();
  const auto mismatch = [&](auto... why) {
    if (o.tokenizer_path.empty())
      fail("model file ", o.model_path, ": its embedded tokenizer does not fit it: ", why...);
    fail("tokenizer ", o.tokenizer_path, " does not belong to model ", o.model_path, ": ", why...);
  };
  if (c.tokenizer_vocab_size > 0 && n != c.tokenizer_vocab_size)
    mismatch("it has ", n, " tokens, the model was exported with a tokenizer of ",
             c.tokenizer_vocab_size);
  if (n > c.vocab_size) mismatch("it has ", n, " tokens, the model only ", c.vocab_size);
  if (c.tokenizer_vocab_size == 0 && n != c.vocab_size)
    mismatch("it has ", n, " tokens, the model ", c.vocab_size);
  if (c.bos_id >= 0 && c.add_bos && tok.bos_id() && *tok.bos_id() != c.bos_id)
    mismatch("its BOS token is ", *tok.bos_id(), ", the model's is ", c.bos_id);
}

}  // namespace

Session open_session(const Options& o) {
  const auto start = std::chrono::steady_clock::now();
  if (o.threads > 0) kernels::cpu::set_threads(o.threads);
  Session s;
  // A tokenizer given on the command line wins over the model file's (and is read first, so that
  // a bad one is reported before the model is loaded).
  if (!o.tokenizer_path.empty()) s.tokenizer = Tokenizer::load(o.tokenizer_path);
  ModelOptions mo;
  mo.device = o.device;
  mo.context = o.context;
  mo.kv_blocks = o.kv_blocks;
  mo.kv_dtype = o.kv_dtype;
  mo.max_sequences = o.max_sequences;
  mo.max_batch = o.max_batch;
  mo.mmap = !o.no_mmap;
  mo.tensor_parallel = o.tensor_parallel;
  s.model = LlamaModel::load(o.model_path, mo);
  if (!s.tokenizer) s.tokenizer = embedded_tokenizer(s.model->file());
  KUIPER_CHECK(s.tokenizer != nullptr, "model file ", o.model_path,
               " carries no tokenizer (a llama2.c file, or exported before export.py embedded one): "
               "give its tokenizer.model or tokenizer.json after MODEL");
  check_tokenizer_fits(*s.tokenizer, s.model->config(), o);
  s.load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return s;
}

void report_loaded(const Options& o, const Session& s) {
  const ModelConfig& c = s.model->config();
  std::fprintf(stderr, "kuiper: loaded %s (%s, %s, %d layers, dim %d, %s) on %s in %.2f s\n",
               o.model_path.c_str(), std::string(s.model->file().format()).c_str(),
               c.architecture.c_str(), c.n_layers, c.dim, std::string(dtype_name(c.dtype)).c_str(),
               std::string(device_name(o.device)).c_str(), s.load_seconds);
}

}  // namespace kuiper::demo
