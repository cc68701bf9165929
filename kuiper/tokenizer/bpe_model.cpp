#include "kuiper/tokenizer/bpe_model.h"

#include <algorithm>
#include <bit>

#include "kuiper/base/error.h"

namespace kuiper {
namespace {

// Heap order: lowest rank first, and among equal ranks the leftmost pair.
bool lower_priority(const BpeModel::Scratch::Candidate& a, const BpeModel::Scratch::Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

}  // namespace

BpeModel::PairTable::PairTable(size_t count) {
  // At most ~2/3 full, so probe sequences stay short.
  const size_t capacity = std::bit_ceil(std::max<size_t>(16, count + count / 2));
  slots_.assign(capacity, Entry{kEmpty, 0, 0});
  shift_ = 64 - std::countr_zero(capacity);
}

void BpeModel::PairTable::insert(int32_t left, int32_t right, uint32_t rank, int32_t merged) {
  const uint64_t key = key_of(left, right);
  const size_t mask = slots_.size() - 1;
  for (size_t i = slot_of(key);; i = (i + 1) & mask) {
    if (slots_[i].key == kEmpty || slots_[i].key == key) {
      slots_[i] = {key, rank, merged};
      return;
    }
  }
}

const BpeModel::PairTable::Entry* BpeModel::PairTable::find(int32_t left, int32_t right) const {
  const uint64_t key = key_of(left, right);
  const size_t mask = slots_.size() - 1;
  for (size_t i = slot_of(key);; i = (i + 1) & mask) {
    if (slots_[i].key == key) return &slots_[i];
    if (slots_[i].key == kEmpty) return nullptr;
  }
}

BpeModel::BpeModel(const std::vector<int32_t>& byte_ids, const std::vector<Merge>& merges,
                   StringMap<int32_t> whole_pieces, bool ignore_merges, std::optional<int32_t> unk,
                   bool fuse_unk)
    : pairs_(merges.size()),
      whole_pieces_(std::move(whole_pieces)),
      ignore_merges_(ignore_merges),
      unk_(unk),
      fuse_unk_(fuse_unk) {
  KUIPER_CHECK(byte_ids.size() == 256, "BPE model needs the ids of all 256 bytes");
  std::copy(byte_ids.begin(), byte_ids.end(), byte_ids_);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const Merge& m = merges[rank];
    pairs_.insert(m.left, m.right, uint32_t(rank), m.merged);
  }
}

void BpeModel::push_candidate(Scratch& s, int32_t pos) const {
  const Scratch::Symbol& left = s.symbols[size_t(pos)];
  if (left.next < 0) return;
  if (const PairTable::Entry* e = pairs_.find(left.id, s.symbols[size_t(left.next)].id)) {
    s.heap.push_back({e->rank, pos, e->merged});
    std::push_heap(s.heap.begin(), s.heap.end(), lower_priority);
  }
}

void BpeModel::encode(std::string_view piece, std::vector<int32_t>& out, Scratch& s) const {
  if (ignore_merges_) {
    // Llama 3: a piece that is itself a token is taken whole, even where the merges would
    // have produced something else.
    if (const auto it = whole_pieces_.find(piece); it != whole_pieces_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  auto& symbols = s.symbols;
  symbols.clear();
  for (char c : piece) {
    int32_t id = byte_ids_[uint8_t(c)];
    if (id < 0) {
      // Hugging Face drops a character the vocabulary lacks when there is no unknown token.
      if (!unk_ || (fuse_unk_ && !symbols.empty() && symbols.back().id == *unk_)) continue;
      id = *unk_;
    }
    const auto index = int32_t(symbols.size());
    symbols.push_back({id, index - 1, index + 1});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  s.heap.clear();
  for (int32_t i = 0; i + 1 < int32_t(symbols.size()); ++i) push_candidate(s, i);
  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), lower_priority);
    const Scratch::Candidate top = s.heap.back();
    s.heap.pop_back();
    Scratch::Symbol& left = symbols[size_t(top.pos)];
    // A candidate goes stale when either side has since been merged into something else.
    if (left.id < 0 || left.next < 0) continue;
    Scratch::Symbol& right = symbols[size_t(left.next)];
    const PairTable::Entry* e = pairs_.find(left.id, right.id);
    if (e == nullptr || e->merged != top.merged) continue;

    left.id = top.merged;
    right.id = -1;
    left.next = right.next;
    if (left.next >= 0) symbols[size_t(left.next)].prev = top.pos;
    if (left.prev >= 0) push_candidate(s, left.prev);
    push_candidate(s, top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[size_t(i)].next) out.push_back(symbols[size_t(i)].id);
}

}  // namespace kuiper
