#include "kuiper/model/llama_model.h"

#include <algorithm>
#include <chrono>

#include "kuiper/base/allocator.h"
#include "kuiper/model/rope_table.h"
#include "kuiper/parallel/rank_threads.h"

namespace kuiper {

// A transformer block as four projections; the norms and residual adds are folded into them.
// Split over ranks, q, k, v and the FFN's hidden units are a rank's output rows, and wo and w2
// produce partial sums of the residual update that an all-reduce adds up (see the constructor).
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
  Tensor q, k, v, att;       // [batch, q_dim], [batch, kv_dim] x2, [batch, q_dim] (the rank's)
  Tensor h;                  // [batch, hidden_dim] (the rank's)
  Tensor logits;             // [logit_rows, vocab]
  Tensor logit_shard;        // [logit_rows, this rank's vocabulary]: logits itself for one rank
  Tensor next_token;         // int32 [1]
  // h quantized once, by the ffn layer, for w2 (kernels.h: MatmulInput::codes): one row, on
  // CUDA where w2 holds int8 or q4 codes; else empty.
  Tensor h_codes{};
  // x times the next norm weight quantized once, by wo (for ffn) and w2 (for the next block's
  // qkv): one row, on CUDA with one rank (the ranks' x is a partial sum until the all-reduce)
  // where qkv and ffn hold int8 or q4 codes; else empty.
  Tensor x_codes{};
  // att quantized once, by the attention kernel, for wo: one row, on CUDA with one rank where
  // wo holds int8 or q4 codes; else empty.
  Tensor att_codes{};

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

// The ranks other than 0 of a model split by load(), with the threads they run on.
struct LlamaModel::Peers {
  std::unique_ptr<RankThreads> threads;
  std::vector<std::unique_ptr<LlamaModel>> ranks;  // [0] is empty: rank 0 owns this

  // Each rank goes on its own thread, where its device memory and stream were made.
  static void destroy(RankThreads& threads, std::vector<std::unique_ptr<LlamaModel>>& ranks) {
    threads.run([&](int r) { ranks[size_t(r)].reset(); }, [] {});
  }
  ~Peers() { destroy(*threads, ranks); }
};

std::unique_ptr<LlamaModel> LlamaModel::load(const std::filesystem::path& path,
                                             const ModelOptions& options) {
  const auto mode = options.mmap ? FileBytes::Mode::kMap : FileBytes::Mode::kRead;
  const int ranks = options.tensor_parallel;
  KUIPER_CHECK(ranks >= 1, "--tensor-parallel must be at least 1, got ", ranks);
  auto comms = make_communicators(options.device, ranks);
  auto peers = std::make_unique<Peers>();
  peers->threads = std::make_unique<RankThreads>(ranks, options.device);
  peers->ranks.resize(size_t(ranks));
  // Every rank opens the file itself (mapped, its pages are shared) and places its share on
  // its own device, all at once.
  try {
    peers->threads->run(
        [&](int r) {
          peers->ranks[size_t(r)] = std::make_unique<LlamaModel>(ModelFile::open(path, mode),
                                                                 options, std::move(comms[size_t(r)]));
        },
        [] {});
  } catch (...) {
    Peers::destroy(*peers->threads, peers->ranks);
    throw;
  }
  std::unique_ptr<LlamaModel> leader = std::move(peers->ranks[0]);
  leader->peers_ = std::move(peers);
  return leader;
}

template <class Work>
auto LlamaModel::on_every_rank(const Work& work) {
  if (!peers_) return work(*this);
  decltype(work(*this)) mine{};
  peers_->threads->run(
      [&](int r) {
        if (r == 0) {
          mine = work(*this);
        } else {
          work(*peers_->ranks[size_t(r)]);
        }
      },
      [this] { comm_->abort(); });
  return mine;
}

LlamaModel::LlamaModel(ModelFile file, const ModelOptions& options,
                       std::unique_ptr<Communicator> comm)
    : file_(std::move(file)),
      comm_(comm ? std::move(comm) : make_single_rank_communicator()),
      ctx_(options.device),
      share_(RankShare::of(file_.config(), comm_->rank(), comm_->size())) {
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
  // This rank's share: rows [first, first + count) of the q, k, v, w1, w3 and classifier rows,
  // the same columns of wo and w2 (everything, for one rank).
  const RankShare& s = share_;
  const int64_t q0 = s.q_row(c), qn = s.q_rows(c), kv0 = s.kv_row(c), kvn = s.kv_rows(c);
  // Before anything is uploaded: a model larger than the GPU fails here, naming the sizes. A
  // rank holds about its share of the weights, and the embedding whole.
  const size_t weight_bytes = file_.tensor_bytes() / size_t(s.ranks) +
                              (s.ranks > 1 ? storage_bytes(c.dtype, int64_t(c.vocab_size) * dim) : 0);
  const size_t kv_bytes = size_t(2) * size_t(c.n_layers) * size_t(context_) * size_t(kvn) * 4;
  check_memory_available(ctx_.device(), weight_bytes + kv_bytes,
                         str_cat("the weights of ", file_.path().string(), " (",
                                 weight_bytes >> 20, " MiB", s.ranks > 1 ? " of this rank" : "",
                                 ") and a KV cache of ", context_, " tokens (", kv_bytes >> 20,
                                 " MiB)"));
  auto weight = [&](const std::string& name, Shape shape) { return place(file_.weight(name, shape)); };
  auto host_rows = [&](const std::string& name, Shape shape, int64_t first, int64_t count) {
    return row_slice(file_.weight(name, shape), first, first + count);
  };
  auto rows = [&](const std::string& name, Shape shape, int64_t first, int64_t count) {
    return place(host_rows(name, shape, first, count));
  };
  auto columns = [&](const std::string& name, Shape shape, int64_t first, int64_t count) {
    return place(column_slice(file_.weight(name, shape), first, first + count));
  };
  auto vector = [&](const std::string& name, int64_t size, int64_t first, int64_t count) {
    const Tensor t = file_.tensor(name, {size});
    KUIPER_CHECK(t.dtype() == DType::kF32, "model file ", file_.path().string(), ": tensor '", name,
                 "' is ", dtype_name(t.dtype()), ", norms and biases must be fp32");
    return place(t.rows(first, first + count));
  };
  auto norm = [&](const std::string& name) { return vector(name, dim, 0, dim); };
  auto bias = [&](const std::string& name, int64_t size, int64_t first, int64_t count) {
    return c.attention_bias ? vector(name, size, first, count) : Tensor{};
  };

  // The embedding stays whole on every rank: a lookup reads one row a token, so splitting it
  // would save memory only, at the price of one more collective per forward pass.
  embedding_ = std::make_unique<EmbeddingLayer>("tok_embeddings",
                                                weight("tok_embeddings", {c.vocab_size, dim}));
  // wo and w2 give each rank a partial sum of the residual update, which the all-reduce after
  // them adds up. Rank 0 accumulates its part onto the residual stream; the others overwrite
  // it with theirs (the same as starting from zero), so the sum holds the stream once. This
  // keeps the projections' fused residual add and needs no buffer or kernel of its own.
  ProjectionOptions partial_sum;
  partial_sum.residual = s.rank == 0;
  blocks_.reserve(size_t(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    const ProjectionOptions attention_norm{norm(p + "attention_norm"), c.norm_eps};
    const ProjectionOptions ffn_norm{norm(p + "ffn_norm"), c.norm_eps};
    const auto [wk, wv] = place_pair(host_rows(p + "wk", {kv_dim, dim}, kv0, kvn),
                                     host_rows(p + "wv", {kv_dim, dim}, kv0, kvn));
    const auto [w1, w3] = place_pair(host_rows(p + "w1", {hidden, dim}, s.first_hidden, s.hidden),
                                     host_rows(p + "w3", {hidden, dim}, s.first_hidden, s.hidden));
    // wo's and w2's outputs' codes (a.x_codes) are for the norm of the layer that reads x next.
    ProjectionOptions wo_options = partial_sum, w2_options = partial_sum;
    wo_options.codes_norm = ffn_norm.norm;
    if (l + 1 < c.n_layers)
      w2_options.codes_norm = norm("layers." + std::to_string(l + 1) + ".attention_norm");
    blocks_.push_back(Block{
        MatmulLayer(p + "qkv", {rows(p + "wq", {q_dim, dim}, q0, qn), wk, wv},
                    {bias(p + "bq", q_dim, q0, qn), bias(p + "bk", kv_dim, kv0, kvn),
                     bias(p + "bv", kv_dim, kv0, kvn)},
                    attention_norm),
        MatmulLayer(p + "wo", {columns(p + "wo", {dim, q_dim}, q0, qn)}, {}, wo_options),
        GatedMatmulLayer(p + "ffn", w1, w3, ffn_norm),
        MatmulLayer(p + "w2", {columns(p + "w2", {dim, hidden}, s.first_hidden, s.hidden)}, {},
                    w2_options),
    });
  }
  classifier_ = std::make_unique<MatmulLayer>(
      "output",
      std::vector<Weight>{
          c.tied_embeddings ? row_slice(embedding_->table(), s.first_vocab, s.first_vocab + s.vocab)
                            : rows("output", {c.vocab_size, dim}, s.first_vocab, s.vocab)},
      std::vector<Tensor>{}, ProjectionOptions{norm("norm"), c.norm_eps});
  rope_store_ = std::make_unique<RopeStoreLayer>("rope_store", place(make_rope_table(c, context_)),
                                                 c.head_dim, kv_block_size_);
  attention_ = std::make_unique<AttentionLayer>(
      "attention", kernels::AttentionShape{s.heads, s.kv_heads, c.head_dim}, kv_block_size_,
      context_);

  const Device dev = ctx_.device();
  const int64_t cache_rows = int64_t(kv_blocks_ + 1) * kv_block_size_;
  for (int l = 0; l < c.n_layers; ++l) {
    k_cache_.emplace_back(options.kv_dtype, Shape{cache_rows, kvn}, dev);
    v_cache_.emplace_back(options.kv_dtype, Shape{cache_rows, kvn}, dev);
  }
  const int64_t logit_rows = std::max<int64_t>(kLogitRows, max_seqs_);
  const Tensor logits(DType::kF32, {logit_rows, c.vocab_size}, dev);
  // k and v in one allocation, k first, as their weights (place_pair): one strided GEMM writes
  // both.
  const Tensor kv(DType::kF32, {2 * int64_t(batch_), kvn}, dev);
  act_ = std::make_unique<Activations>(Activations{
      {}, {}, Tensor(DType::kF32, {batch_, dim}, dev), Tensor(DType::kF32, {batch_, qn}, dev),
      kv.rows(0, batch_), kv.rows(batch_, 2 * int64_t(batch_)),
      Tensor(DType::kF32, {batch_, qn}, dev), Tensor(DType::kF32, {batch_, s.hidden}, dev), logits,
      s.ranks == 1 ? logits : Tensor(DType::kF32, {logit_rows, s.vocab}, dev),
      Tensor(DType::kI32, {1}, dev)});
  // The inputs whose readers take codes (int8 or q4 weights) come quantized by their writers.
  auto reads_codes = [&](auto layer_of) {
    return dev == Device::kCUDA && std::all_of(blocks_.begin(), blocks_.end(), [&](const Block& b) {
             const DType t = (b.*layer_of).weights()[0].dtype();
             return t == DType::kI8 || t == DType::kQ4;
           });
  };
  if (reads_codes(&Block::w2) && s.hidden % 32 == 0)
    act_->h_codes = Tensor(DType::kI8, {kernels::input_codes_bytes(s.hidden)}, dev);
  if (reads_codes(&Block::qkv) && reads_codes(&Block::ffn) && s.ranks == 1 && dim % 32 == 0)
    act_->x_codes = Tensor(DType::kI8, {kernels::input_codes_bytes(dim)}, dev);
  if (reads_codes(&Block::wo) && s.ranks == 1 && qn % 32 == 0)
    act_->att_codes = Tensor(DType::kI8, {kernels::input_codes_bytes(qn)}, dev);
  // Four int32 per row (token, position, slot, sequence), the sequences' starts and tables.
  index_ = Tensor(DType::kI32,
                  {4 * int64_t(batch_) + max_seqs_ + 1 + int64_t(max_seqs_) * max_table_}, dev);
  for (int32_t b = 0; b < max_table_; ++b) identity_table_.push_back(b);
  use_graphs_ = options.cuda_graphs && dev == Device::kCUDA;
  placed_.clear();  // only needed while the layers are built
}

// The ranks end together, each on its own thread: an NCCL communicator may flush work shared
// with its peers as it goes, so rank 0's communicator ends beside the other ranks.
LlamaModel::~LlamaModel() {
  if (!peers_) return;
  peers_->threads->run(
      [&](int r) {
        if (r == 0) {
          try {
            ctx_.synchronize();  // no collective of this rank still queued
          } catch (const Error&) {
            // a failed kernel was reported to the call that queued it
          }
          comm_.reset();
        } else {
          peers_->ranks[size_t(r)].reset();
        }
      },
      [] {});
}

Tensor LlamaModel::place(const Tensor& host_tensor) {
  if (ctx_.device() == Device::kCPU) return host_tensor;
  // Tied embeddings reach here twice; upload each host tensor once.
  auto [it, inserted] = placed_.try_emplace({host_tensor.raw_data(), host_tensor.bytes()});
  if (inserted) it->second = host_tensor.to(ctx_.device(), &ctx_);
  return it->second;
}

Weight LlamaModel::place(const Weight& host_weight) {
  return {place(host_weight.values),
          host_weight.quantized() ? place(host_weight.scales) : Tensor{}};
}

std::pair<Weight, Weight> LlamaModel::place_pair(const Weight& a, const Weight& b) {
  const DType t = a.dtype();
  const bool float_pair = t == b.dtype() && a.values.shape() == b.values.shape() &&
                          (t == DType::kF32 || t == DType::kF16 || t == DType::kBF16);
  if (ctx_.device() == Device::kCPU || !float_pair) return {place(a), place(b)};
  const int64_t rows = a.rows(), cols = a.cols();
  const Tensor both(t, {2 * rows, cols}, ctx_.device());
  const Tensor first = both.rows(0, rows), second = both.rows(rows, 2 * rows);
  first.copy_from(a.values, &ctx_);
  second.copy_from(b.values, &ctx_);
  return {Weight(first), Weight(second)};
}

void LlamaModel::run_block(const Block& b, int l, const Activations& a) const {
  const DeviceContext& ctx = ctx_;
  // The codes of x and h (or empty): each quantized once by the layer that writes it, for the
  // one that reads it; block 0's x comes from the embedding, the last w2's x goes to the
  // classifier, both without.
  const bool last = l + 1 == int(blocks_.size());
  const Tensor x_codes_in = l > 0 ? a.x_codes : Tensor(), x_codes_out = last ? Tensor() : a.x_codes;
  // Attention: x += wo(attention(rope(q), cache + (rope(k), v))), q, k, v = norm(x) (wq, wk, wv),
  // the rope and the cache stores folded into the projection's kernel where it can
  b.qkv.forward({a.x, x_codes_in}, {a.q, a.k, a.v}, ctx,
                {*rope_store_, a.rows, k_cache_[l], v_cache_[l]});
  attention_->forward(a.q, k_cache_[l], v_cache_[l], a.rows, a.att, ctx, a.att_codes);
  b.wo.forward({a.att, a.att_codes}, {a.x, a.x_codes}, ctx);
  comm_->all_reduce_sum(a.x, ctx);  // the ranks' heads' parts of the update (one rank: nothing)
  // Feed-forward: x += w2(silu(w1(norm(x))) * w3(norm(x)))
  b.ffn.forward({a.x, a.x_codes}, {a.h, a.h_codes}, ctx);
  b.w2.forward({a.h, a.h_codes}, {a.x, x_codes_out}, ctx);
  comm_->all_reduce_sum(a.x, ctx);  // the ranks' hidden units' parts
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
  return on_every_rank([&](LlamaModel& m) { return m.forward_batch_rank(chunks); });
}

Tensor LlamaModel::forward_batch_rank(std::span<const SequenceChunk> chunks) {
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
    // A step of one row on one GPU tells the backend where it starts and ends (CUDA chains its
    // kernels with flag waits in between, kernels.h: DecodeStepFn).
    const auto& marks = kernels::registry().decode_step;
    kernels::DecodeStepFn* const mark =
        rows == 1 && tensor_parallel() == 1 && marks.has(device(), DType::kF32)
            ? marks.find(device(), DType::kF32)
            : nullptr;
    const auto body = [this, a, rows, mark] {
      // Ends the step's chain however the step ends (a failed check throws).
      struct StepMark {
        kernels::DecodeStepFn* mark;
        const DeviceContext& ctx;
        ~StepMark() {
          if (mark) mark(false, ctx);
        }
      } step{mark, ctx_};
      if (step.mark) step.mark(true, ctx_);
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
  const Tensor logits = act_->logits.rows(0, count), shard = act_->logit_shard.rows(0, count);
  classifier_->forward({act_->x.rows(first, first + count)}, {shard}, ctx_);
  comm_->all_gather_columns(shard, logits, ctx_);  // the ranks' vocabulary shards, side by side
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
    logits = forward_batch_rank({&c, 1});
  }
  return logits;
}

Tensor LlamaModel::forward(std::span<const int32_t> tokens, int32_t pos, bool all_positions) {
  return on_every_rank([&](LlamaModel& m) { return m.forward_rank(tokens, pos, all_positions); });
}

Tensor LlamaModel::forward_rank(std::span<const int32_t> tokens, int32_t pos, bool all_positions) {
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
  return on_every_rank([&](LlamaModel& m) { return m.forward_greedy_rank(tokens, pos); });
}

int32_t LlamaModel::forward_greedy_rank(std::span<const int32_t> tokens, int32_t pos) {
  kernels::registry().argmax.find(device(), DType::kF32)(last_logits(tokens, pos),
                                                         act_->next_token, ctx_);
  int32_t next = 0;
  copy_bytes(&next, Device::kCPU, act_->next_token.raw_data(), device(), sizeof(next), &ctx_);
  return next;
}

size_t LlamaModel::kv_bytes_per_token() const {
  return 2 * size_t(config().n_layers) * storage_bytes(kv_dtype(), share_.kv_rows(config()));
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

double LlamaModel::collective_seconds_per_step(int64_t rows, int repeat) {
  if (tensor_parallel() == 1) return 0;
  KUIPER_CHECK(rows >= 1 && rows <= batch_ && rows <= act_->logits.dim(0) && repeat >= 1,
               "collective timing of ", rows, " rows");
  std::vector<double> times;
  on_every_rank([&](LlamaModel& m) {
    const Tensor x = m.act_->x.rows(0, rows);
    const auto step = [&] {
      for (size_t l = 0; l < m.blocks_.size(); ++l) {
        m.comm_->all_reduce_sum(x, m.ctx_);
        m.comm_->all_reduce_sum(x, m.ctx_);
      }
      m.comm_->all_gather_columns(m.act_->logit_shard.rows(0, rows), m.act_->logits.rows(0, rows),
                                  m.ctx_);
      m.ctx_.synchronize();
    };
    step();  // warm-up: connections, workspace
    for (int i = 0; i < repeat; ++i) {
      const auto start = std::chrono::steady_clock::now();
      step();
      if (&m == this)
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return 0;
  });
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace kuiper
