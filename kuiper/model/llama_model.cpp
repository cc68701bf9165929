#include "kuiper/model/llama_model.h"

#include <algorithm>

#include "kuiper/base/allocator.h"
#include "kuiper/model/rope_table.h"

namespace kuiper {

// A transformer block as four projections; the norms and residual adds are folded into them.
struct LlamaModel::Block {
  MatmulLayer qkv;         // q, k, v = attention_norm(x) (wq, wk, wv)^T (+ biases)
  MatmulLayer wo;          // x += attention output wo^T
  GatedMatmulLayer ffn;    // h = silu(ffn_norm(x) w1^T) * ffn_norm(x) w3^T
  MatmulLayer w2;          // x += h w2^T
};

// Scratch tensors for up to `batch` rows; a forward pass of n rows uses rows [0, n). `tokens`
// and `rows` view the index tensor that each step uploads.
struct LlamaModel::Activations {
  Tensor tokens;             // int32 [n]
  BatchIndex rows;           // where each row sits: position, cache slot, sequence, block tables
  Tensor x;                  // residual stream [batch, dim]
  Tensor q, k, v, att;       // [batch, q_dim], [batch, kv_dim] x2, [batch, q_dim]
  Tensor h;                  // [batch, hidden_dim]
  Tensor logits;             // [logit_rows, vocab]
  Tensor next_token;         // int32 [1]

  Activations first(int64_t n) const {
    Activations a = *this;
    for (Tensor* t : {&a.x, &a.q, &a.k, &a.v, &a.att, &a.h}) *t = t->rows(0, n);
    return a;
  }
};

namespace {
// Rows of logits computed at once when every position's logits are wanted (tests, perplexity):
// bounded so that a 150k vocabulary does not need a [batch, vocab] buffer.
constexpr int64_t kLogitRows = 16;
constexpr int kDefaultContextCap = 4096;
}  // namespace

std::unique_ptr<LlamaModel> LlamaModel::load(const std::filesystem::path& path,
                                             const ModelOptions& options) {
  return std::make_unique<LlamaModel>(
      ModelFile::open(path, options.mmap ? FileBytes::Mode::kMap : FileBytes::Mode::kRead), options);
}

LlamaModel::LlamaModel(ModelFile file, const ModelOptions& options)
    : file_(std::move(file)), ctx_(options.device) {
  const ModelConfig& c = file_.config();
  context_ = options.context > 0 ? options.context : std::min(c.max_seq_len, kDefaultContextCap);
  KUIPER_CHECK(context_ <= c.max_seq_len, "context of ", context_, " tokens exceeds the model's ",
               c.max_seq_len, " (max_seq_len of ", file_.path().string(), ")");
  KUIPER_CHECK(options.max_batch > 0, "max_batch must be positive");
  batch_ = std::min(options.max_batch, context_);
  KUIPER_CHECK(options.max_sequences > 0, "max_sequences must be positive");
  max_seqs_ = std::min(options.max_sequences, batch_);
  KUIPER_CHECK(options.kv_block_size > 0, "KV block size must be positive");
  kv_block_size_ = options.kv_block_size;
  max_table_ = (context_ + kv_block_size_ - 1) / kv_block_size_;
  kv_blocks_ = options.kv_blocks > 0 ? options.kv_blocks : max_table_;
  KUIPER_CHECK(options.kv_dtype == DType::kF32 || options.kv_dtype == DType::kF16 ||
                   options.kv_dtype == DType::kBF16,
               "KV cache dtype must be fp32, fp16 or bf16, not ", dtype_name(options.kv_dtype));

  // Tensors the header says are not there would be silently ignored: a header that lost a
  // layer, its classifier or its biases is not the model its file holds.
  const auto extra = [&](const std::string& name, const std::string& why) {
    KUIPER_CHECK(!file_.has(name), "model file ", file_.path().string(), ": it has a tensor '",
                 name, "', but ", why);
  };
  extra("layers." + std::to_string(c.n_layers) + ".wq",
        "the header says n_layers " + std::to_string(c.n_layers));
  if (c.tied_embeddings) extra("output", "the header says tied_embeddings");
  if (!c.attention_bias) extra("layers.0.bq", "the header says attention_bias false");

  const int64_t dim = c.dim, hidden = c.hidden_dim, q_dim = c.q_dim(), kv_dim = c.kv_dim();
  // Before anything is uploaded: a model larger than the GPU fails here, naming the sizes.
  const size_t kv_bytes = size_t(2) * size_t(c.n_layers) * size_t(context_) * size_t(kv_dim) * 4;
  check_memory_available(ctx_.device(), file_.tensor_bytes() + kv_bytes,
                         str_cat("the weights of ", file_.path().string(), " (",
                                 file_.tensor_bytes() >> 20, " MiB) and a KV cache of ", context_,
                                 " tokens (", kv_bytes >> 20, " MiB)"));
  auto weight = [&](const std::string& name, Shape shape) { return place(file_.weight(name, shape)); };
  auto vector = [&](const std::string& name, int64_t size) {
    const Tensor t = file_.tensor(name, {size});
    KUIPER_CHECK(t.dtype() == DType::kF32, "model file ", file_.path().string(), ": tensor '", name,
                 "' is ", dtype_name(t.dtype()), ", norms and biases must be fp32");
    return place(t);
  };
  auto bias = [&](const std::string& name, int64_t rows) {
    return c.attention_bias ? vector(name, rows) : Tensor{};
  };

  embedding_ = std::make_unique<EmbeddingLayer>("tok_embeddings",
                                                weight("tok_embeddings", {c.vocab_size, dim}));
  blocks_.reserve(size_t(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    const ProjectionOptions attention_norm{vector(p + "attention_norm", dim), c.norm_eps};
    const ProjectionOptions ffn_norm{vector(p + "ffn_norm", dim), c.norm_eps};
    const ProjectionOptions residual{.residual = true};
    blocks_.push_back(Block{
        MatmulLayer(p + "qkv",
                    {weight(p + "wq", {q_dim, dim}), weight(p + "wk", {kv_dim, dim}),
                     weight(p + "wv", {kv_dim, dim})},
                    {bias(p + "bq", q_dim), bias(p + "bk", kv_dim), bias(p + "bv", kv_dim)},
                    attention_norm),
        MatmulLayer(p + "wo", {weight(p + "wo", {dim, q_dim})}, {}, residual),
        GatedMatmulLayer(p + "ffn", weight(p + "w1", {hidden, dim}), weight(p + "w3", {hidden, dim}),
                         ffn_norm),
        MatmulLayer(p + "w2", {weight(p + "w2", {dim, hidden})}, {}, residual),
    });
  }
  classifier_ = std::make_unique<MatmulLayer>(
      "output",
      std::vector<Weight>{c.tied_embeddings ? embedding_->table()
                                            : weight("output", {c.vocab_size, dim})},
      std::vector<Tensor>{}, ProjectionOptions{vector("norm", dim), c.norm_eps});
  rope_store_ = std::make_unique<RopeStoreLayer>("rope_store", place(make_rope_table(c, context_)),
                                                 c.head_dim, kv_block_size_);
  attention_ = std::make_unique<AttentionLayer>(
      "attention", kernels::AttentionShape{c.n_heads, c.n_kv_heads, c.head_dim}, kv_block_size_,
      context_);

  const Device dev = ctx_.device();
  const int64_t cache_rows = int64_t(kv_blocks_ + 1) * kv_block_size_;
  for (int l = 0; l < c.n_layers; ++l) {
    k_cache_.emplace_back(options.kv_dtype, Shape{cache_rows, kv_dim}, dev);
    v_cache_.emplace_back(options.kv_dtype, Shape{cache_rows, kv_dim}, dev);
  }
  act_ = std::make_unique<Activations>(Activations{
      {}, {}, Tensor(DType::kF32, {batch_, dim}, dev), Tensor(DType::kF32, {batch_, q_dim}, dev),
      Tensor(DType::kF32, {batch_, kv_dim}, dev), Tensor(DType::kF32, {batch_, kv_dim}, dev),
      Tensor(DType::kF32, {batch_, q_dim}, dev), Tensor(DType::kF32, {batch_, hidden}, dev),
      Tensor(DType::kF32, {std::max<int64_t>(kLogitRows, max_seqs_), c.vocab_size}, dev),
      Tensor(DType::kI32, {1}, dev)});
  // Four int32 per row (token, position, slot, sequence), the sequences' starts and tables.
  index_ = Tensor(DType::kI32,
                  {4 * int64_t(batch_) + max_seqs_ + 1 + int64_t(max_seqs_) * max_table_}, dev);
  for (int32_t b = 0; b < max_table_; ++b) identity_table_.push_back(b);
  use_graphs_ = options.cuda_graphs && dev == Device::kCUDA;
  placed_.clear();  // only needed while the layers are built
}

LlamaModel::~LlamaModel() = default;

Tensor LlamaModel::place(const Tensor& host_tensor) {
  if (ctx_.device() == Device::kCPU) return host_tensor;
  // Tied embeddings reach here twice; upload each host tensor once.
  auto [it, inserted] = placed_.try_emplace(host_tensor.raw_data());
  if (inserted) it->second = host_tensor.to(ctx_.device(), &ctx_);
  return it->second;
}

Weight LlamaModel::place(const Weight& host_weight) {
  return {place(host_weight.values),
          host_weight.quantized() ? place(host_weight.scales) : Tensor{}};
}

void LlamaModel::run_block(const Block& b, int l, const Activations& a) const {
  const DeviceContext& ctx = ctx_;
  // Attention: x += wo(attention(rope(q), cache + (rope(k), v))), q, k, v = norm(x) (wq, wk, wv)
  b.qkv.forward({a.x}, {a.q, a.k, a.v}, ctx);
  rope_store_->forward(a.q, a.k, a.v, a.rows, k_cache_[l], v_cache_[l], ctx);
  attention_->forward(a.q, k_cache_[l], v_cache_[l], a.rows, a.att, ctx);
  b.wo.forward({a.att}, {a.x}, ctx);
  // Feed-forward: x += w2(silu(w1(norm(x))) * w3(norm(x)))
  b.ffn.forward({a.x}, {a.h}, ctx);
  b.w2.forward({a.h}, {a.x}, ctx);
}

void LlamaModel::compute(const Activations& a) const {
  embedding_->forward({a.tokens}, {a.x}, ctx_);
  for (size_t l = 0; l < blocks_.size(); ++l) run_block(blocks_[l], int(l), a);
}

// Packs the index as forward passes read it: tokens, positions, slots and sequences of `rows`
// rows, then `seqs` + 1 sequence starts and `seqs` block tables of max_table_ entries. Rows and
// sequences past the chunks' are padding (a recorded decode step of a larger batch): each sits
// at position 0 of a sequence whose one block is the pool's spare one, so it writes nothing that
// matters.
LlamaModel::Activations LlamaModel::stage(std::span<const SequenceChunk> chunks, int64_t rows,
                                          int64_t seqs) {
  const int64_t table = max_table_;
  staging_.assign(size_t(4 * rows + seqs + 1 + seqs * table), 0);
  int32_t *tokens = staging_.data(), *positions = tokens + rows, *slots = positions + rows,
          *row_seqs = slots + rows, *starts = row_seqs + rows, *tables = starts + seqs + 1;
  const int32_t spare = kv_blocks_;
  int64_t r = 0;
  for (int64_t s = 0; s < seqs; ++s) {
    starts[s] = int32_t(r);
    int32_t* t = tables + s * table;
    if (s >= int64_t(chunks.size())) {  // padding: one row in the spare block
      t[0] = spare;
      slots[r] = spare * kv_block_size_;
      row_seqs[r++] = int32_t(s);
      continue;
    }
    const SequenceChunk& c = chunks[size_t(s)];
    std::copy(c.blocks.begin(), c.blocks.end(), t);
    for (size_t i = 0; i < c.tokens.size(); ++i, ++r) {
      const int32_t p = c.start + int32_t(i);
      tokens[r] = c.tokens[i];
      positions[r] = p;
      slots[r] = c.blocks[size_t(p / kv_block_size_)] * kv_block_size_ + p % kv_block_size_;
      row_seqs[r] = int32_t(s);
    }
  }
  starts[seqs] = int32_t(r);
  copy_bytes(index_.raw_data(), device(), staging_.data(), Device::kCPU,
             staging_.size() * sizeof(int32_t), &ctx_);

  Activations a = act_->first(rows);
  int64_t at = 0;
  auto next = [&](int64_t n) {
    const Tensor t = index_.rows(at, at + n);
    at += n;
    return t;
  };
  a.tokens = next(rows);
  a.rows.positions = next(rows);
  a.rows.slots = next(rows);
  a.rows.row_seqs = next(rows);
  a.rows.seq_starts = next(seqs + 1);
  a.rows.block_tables = next(seqs * table).reshape({seqs, table});
  return a;
}

void LlamaModel::check_chunks(std::span<const SequenceChunk> chunks) const {
  KUIPER_CHECK(!chunks.empty() && int64_t(chunks.size()) <= max_seqs_, "a forward pass takes 1 to ",
               max_seqs_, " sequences, got ", chunks.size());
  int64_t n = 0;
  for (const SequenceChunk& c : chunks) {
    const int64_t end = c.start + int64_t(c.tokens.size());
    KUIPER_CHECK(!c.tokens.empty(), "forward of no tokens");
    KUIPER_CHECK(c.start >= 0 && end <= context_, "context full: ", c.tokens.size(),
                 " tokens at position ", c.start, " do not fit the context of ", context_,
                 " tokens");
    KUIPER_CHECK(int64_t(c.blocks.size()) * kv_block_size_ >= end &&
                     int64_t(c.blocks.size()) <= max_table_,
                 "the sequence's ", c.blocks.size(), " KV blocks of ", kv_block_size_,
                 " positions do not hold positions up to ", end);
    for (int32_t b : c.blocks)
      KUIPER_CHECK(b >= 0 && b < kv_blocks_, "KV block ", b, " outside the pool of ", kv_blocks_);
    for (int32_t t : c.tokens)
      KUIPER_CHECK(t >= 0 && t < config().vocab_size, "token id ", t, " outside the vocabulary of ",
                   config().vocab_size);
    n += int64_t(c.tokens.size());
  }
  KUIPER_CHECK(n <= batch_, "a forward pass takes at most ", batch_, " tokens, got ", n);
}

namespace {
// Decode steps are recorded for batches of these sizes; a batch runs in the smallest that holds it.
int64_t padded_rows(int64_t n, int64_t most) {
  int64_t rows = 1;
  while (rows < n) rows *= 2;
  return std::min(rows, most);
}
}  // namespace

Tensor LlamaModel::forward_batch(std::span<const SequenceChunk> chunks) {
  check_chunks(chunks);
  const auto seqs = int64_t(chunks.size());
  const bool decode_step = std::all_of(chunks.begin(), chunks.end(), [](const SequenceChunk& c) {
    return c.tokens.size() == 1 && c.logits;
  });
  if (decode_step) {
    // Every sequence feeds one token and wants its logits: rows are sequences, and on CUDA the
    // step replays the graph recorded for its padded size.
    const int64_t rows = use_graphs_ ? padded_rows(seqs, max_seqs_) : seqs;
    const Activations a = stage(chunks, rows, rows);
    const auto body = [this, a, rows] {
      compute(a);
      classify(0, rows);
    };
    // A size's first step runs eagerly so that kernels size their scratch before it is recorded.
    if (!use_graphs_ || eager_steps_[rows]++ == 0) {
      body();
    } else {
      auto& graph = decode_graphs_[rows];
      if (!graph) graph = std::make_unique<CudaGraph>(ctx_, body);
      graph->launch();
    }
    return act_->logits.rows(0, seqs);
  }
  int64_t n = 0;
  for (const SequenceChunk& c : chunks) n += int64_t(c.tokens.size());
  const Activations a = stage(chunks, n, seqs);
  compute(a);
  // The wanted rows (each chunk's last) move up to rows [0, m) of the residual stream: row
  // indices only grow, so no row is overwritten before it is read.
  int64_t m = 0, end = 0;
  for (const SequenceChunk& c : chunks) {
    end += int64_t(c.tokens.size());
    if (!c.logits) continue;
    if (end - 1 != m) a.x.rows(m, m + 1).copy_from(a.x.rows(end - 1, end), &ctx_);
    ++m;
  }
  return m == 0 ? act_->logits.rows(0, 0) : classify(0, m);
}

Tensor LlamaModel::classify(int64_t first, int64_t count) {
  const Tensor logits = act_->logits.rows(0, count);
  classifier_->forward({act_->x.rows(first, first + count)}, {logits}, ctx_);
  return logits;
}

SequenceChunk LlamaModel::identity_chunk(std::span<const int32_t> tokens, int32_t pos,
                                         bool logits) const {
  const int64_t end = pos + int64_t(tokens.size());
  KUIPER_CHECK(pos >= 0 && end <= context_, "context full: ", tokens.size(), " tokens at position ",
               pos, " do not fit the context of ", context_, " tokens");
  const auto blocks = std::min<int64_t>((end + kv_block_size_ - 1) / kv_block_size_, kv_blocks_);
  return {tokens, pos, std::span(identity_table_).first(size_t(blocks)), logits};
}

Tensor LlamaModel::last_logits(std::span<const int32_t> tokens, int32_t pos) {
  KUIPER_CHECK(!tokens.empty(), "forward of no tokens");
  Tensor logits;
  for (size_t c0 = 0; c0 < tokens.size(); c0 += size_t(batch_)) {
    const auto chunk = tokens.subspan(c0, std::min(tokens.size() - c0, size_t(batch_)));
    const SequenceChunk c =
        identity_chunk(chunk, pos + int32_t(c0), c0 + chunk.size() == tokens.size());
    logits = forward_batch({&c, 1});
  }
  return logits;
}

Tensor LlamaModel::forward(std::span<const int32_t> tokens, int32_t pos, bool all_positions) {
  const int64_t vocab = config().vocab_size;
  if (!all_positions) {
    Tensor result(DType::kF32, {1, vocab});
    result.copy_from(last_logits(tokens, pos), &ctx_);
    return result;
  }
  KUIPER_CHECK(!tokens.empty(), "forward of no tokens");
  const auto n = int64_t(tokens.size());
  Tensor result(DType::kF32, {n, vocab});
  for (int64_t c0 = 0; c0 < n; c0 += batch_) {
    const int64_t m = std::min<int64_t>(batch_, n - c0);
    const SequenceChunk c =
        identity_chunk(tokens.subspan(size_t(c0), size_t(m)), pos + int32_t(c0), false);
    check_chunks({&c, 1});
    compute(stage({&c, 1}, m, 1));
    for (int64_t r = 0; r < m; r += kLogitRows) {
      const int64_t rows = std::min(kLogitRows, m - r);
      result.rows(c0 + r, c0 + r + rows).copy_from(classify(r, rows), &ctx_);
    }
  }
  ctx_.synchronize();
  return result;
}

int32_t LlamaModel::forward_greedy(std::span<const int32_t> tokens, int32_t pos) {
  kernels::registry().argmax.find(device(), DType::kF32)(last_logits(tokens, pos),
                                                         act_->next_token, ctx_);
  int32_t next = 0;
  copy_bytes(&next, Device::kCPU, act_->next_token.raw_data(), device(), sizeof(next), &ctx_);
  return next;
}

size_t LlamaModel::kv_bytes_per_token() const {
  return 2 * size_t(config().n_layers) * storage_bytes(kv_dtype(), config().kv_dim());
}

size_t LlamaModel::weight_bytes_per_token() const {
  size_t bytes = embedding_->table().row_bytes();  // one embedding row
  auto add = [&](const Layer& layer) {
    for (const Tensor& w : layer.weights()) bytes += w.empty() ? 0 : w.bytes();
  };
  for (const Block& b : blocks_)
    for (const Layer* layer : std::initializer_list<const Layer*>{&b.qkv, &b.wo, &b.ffn, &b.w2})
      add(*layer);
  add(*classifier_);
  return bytes;
}

}  // namespace kuiper
