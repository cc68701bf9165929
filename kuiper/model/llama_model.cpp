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

// Scratch tensors for up to `batch` positions; a forward pass of n positions uses rows [0, n).
struct LlamaModel::Activations {
  Tensor tokens, positions;  // int32 [batch]
  Tensor x;                  // residual stream [batch, dim]
  Tensor q, k, v, att;       // [batch, q_dim], [batch, kv_dim] x2, [batch, q_dim]
  Tensor h;                  // [batch, hidden_dim]
  Tensor logits;             // [logit_rows, vocab]
  Tensor next_token;         // int32 [1]

  Activations first(int64_t n) const {
    Activations a = *this;
    for (Tensor* t : {&a.tokens, &a.positions, &a.x, &a.q, &a.k, &a.v, &a.att, &a.h})
      *t = t->rows(0, n);
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
                                                 c.head_dim);
  attention_ = std::make_unique<AttentionLayer>(
      "attention", kernels::AttentionShape{c.n_heads, c.n_kv_heads, c.head_dim});

  const Device dev = ctx_.device();
  for (int l = 0; l < c.n_layers; ++l) {
    k_cache_.emplace_back(DType::kF32, Shape{context_, kv_dim}, dev);
    v_cache_.emplace_back(DType::kF32, Shape{context_, kv_dim}, dev);
  }
  act_ = std::make_unique<Activations>(Activations{
      Tensor(DType::kI32, {batch_}, dev), Tensor(DType::kI32, {batch_}, dev),
      Tensor(DType::kF32, {batch_, dim}, dev), Tensor(DType::kF32, {batch_, q_dim}, dev),
      Tensor(DType::kF32, {batch_, kv_dim}, dev), Tensor(DType::kF32, {batch_, kv_dim}, dev),
      Tensor(DType::kF32, {batch_, q_dim}, dev), Tensor(DType::kF32, {batch_, hidden}, dev),
      Tensor(DType::kF32, {std::min<int64_t>(kLogitRows, batch_), c.vocab_size}, dev),
      Tensor(DType::kI32, {1}, dev)});
  step_ = Tensor(DType::kI32, {2}, dev);
  step_act_ = std::make_unique<Activations>(act_->first(1));
  step_act_->tokens = step_.rows(0, 1);
  step_act_->positions = step_.rows(1, 2);
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
  rope_store_->forward({a.q, a.k, a.v, a.positions}, {a.q, k_cache_[l], v_cache_[l]}, ctx);
  attention_->forward({a.q, k_cache_[l], v_cache_[l], a.positions}, {a.att}, ctx);
  b.wo.forward({a.att}, {a.x}, ctx);
  // Feed-forward: x += w2(silu(w1(norm(x))) * w3(norm(x)))
  b.ffn.forward({a.x}, {a.h}, ctx);
  b.w2.forward({a.h}, {a.x}, ctx);
}

void LlamaModel::compute(const Activations& a) const {
  embedding_->forward({a.tokens}, {a.x}, ctx_);
  for (size_t l = 0; l < blocks_.size(); ++l) run_block(blocks_[l], int(l), a);
}

void LlamaModel::run_batch(std::span<const int32_t> tokens, int32_t pos) {
  const auto n = int64_t(tokens.size());
  const Activations a = act_->first(n);
  std::vector<int32_t> positions(tokens.size());
  for (int64_t i = 0; i < n; ++i) positions[i] = pos + int32_t(i);
  copy_bytes(a.tokens.raw_data(), device(), tokens.data(), Device::kCPU, tokens.size_bytes(), &ctx_);
  copy_bytes(a.positions.raw_data(), device(), positions.data(), Device::kCPU,
             positions.size() * sizeof(int32_t), &ctx_);
  compute(a);
}

void LlamaModel::decode(int32_t token, int32_t pos) {
  const int32_t step[2] = {token, pos};
  copy_bytes(step_.raw_data(), device(), step, Device::kCPU, sizeof(step), &ctx_);
  const auto body = [this] {
    compute(*step_act_);
    classify(0, 1);
  };
  // The first step runs eagerly so that kernels size their scratch memory before it is recorded.
  if (!use_graphs_ || eager_steps_ == 0) {
    ++eager_steps_;
    return body();
  }
  if (!decode_graph_) decode_graph_ = std::make_unique<CudaGraph>(ctx_, body);
  decode_graph_->launch();
}

Tensor LlamaModel::classify(int64_t first, int64_t count) {
  const Tensor logits = act_->logits.rows(0, count);
  classifier_->forward({act_->x.rows(first, first + count)}, {logits}, ctx_);
  return logits;
}

void LlamaModel::check_fits(int64_t n, int32_t pos) const {
  KUIPER_CHECK(n > 0, "forward of no tokens");
  KUIPER_CHECK(pos >= 0 && pos + n <= context_, "context full: ", n, " tokens at position ", pos,
               " do not fit the context of ", context_, " tokens");
}

Tensor LlamaModel::last_logits(std::span<const int32_t> tokens, int32_t pos) {
  const auto n = int64_t(tokens.size());
  check_fits(n, pos);
  if (n == 1) {
    decode(tokens[0], pos);
    return act_->logits.rows(0, 1);
  }
  int64_t last_rows = 0;
  for (int64_t c0 = 0; c0 < n; c0 += batch_) {
    last_rows = std::min<int64_t>(batch_, n - c0);
    run_batch(tokens.subspan(size_t(c0), size_t(last_rows)), pos + int32_t(c0));
  }
  return classify(last_rows - 1, 1);
}

Tensor LlamaModel::forward(std::span<const int32_t> tokens, int32_t pos, bool all_positions) {
  const int64_t vocab = config().vocab_size;
  if (!all_positions) {
    Tensor result(DType::kF32, {1, vocab});
    result.copy_from(last_logits(tokens, pos), &ctx_);
    return result;
  }
  const auto n = int64_t(tokens.size());
  check_fits(n, pos);
  Tensor result(DType::kF32, {n, vocab});
  for (int64_t c0 = 0; c0 < n; c0 += batch_) {
    const int64_t m = std::min<int64_t>(batch_, n - c0);
    run_batch(tokens.subspan(size_t(c0), size_t(m)), pos + int32_t(c0));
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
