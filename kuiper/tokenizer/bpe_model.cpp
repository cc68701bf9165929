#include "kuiper/tokenizer/bpe_model.h"

#include <algorithm>
#include <bit>
#include <limits>

#include "kuiper/base/error.h"
#include "kuiper/tokenizer/byte_level.h"

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

void BpeModel::BytesIndex::build(const std::vector<std::string>& bytes, const std::vector<bool>& indexed) {
  slots_.assign(std::bit_ceil(std::max<size_t>(16, bytes.size() + bytes.size() / 2)), Slot{0, -1});
  const size_t mask = slots_.size() - 1;
  for (size_t id = 0; id < bytes.size(); ++id) {
    if (!indexed[id]) continue;
    const size_t h = std::hash<std::string_view>{}(bytes[id]);
    const auto tag = uint32_t(h >> 32);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      Slot& slot = slots_[i];
      // The same bytes listed twice: the later entry wins, as when Hugging Face reads the file.
      if (slot.id < 0 || (slot.tag == tag && bytes[size_t(slot.id)] == bytes[id])) {
        slot = {tag, int32_t(id)};
        break;
      }
    }
  }
}

int32_t BpeModel::BytesIndex::find(std::string_view key, const std::vector<std::string>& bytes) const {
  const size_t h = std::hash<std::string_view>{}(key);
  const auto tag = uint32_t(h >> 32);
  const size_t mask = slots_.size() - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& slot = slots_[i];
    if (slot.id < 0) return -1;
    if (slot.tag == tag && bytes[size_t(slot.id)] == key) return slot.id;
  }
}

BpeModel::BpeModel(std::span<const std::pair<std::string, int64_t>> vocab,
                   std::span<const std::pair<std::string, std::string>> merges, Options options,
                   std::string_view file)
    : pairs_(merges.size()), options_(std::move(options)) {
  int64_t max_id = -1;
  for (const auto& [spelling, id] : vocab) {
    KUIPER_CHECK(id >= 0 && id < std::numeric_limits<int32_t>::max(), "tokenizer file ", file, ": bad id ", id,
                 " for token \"", spelling, "\"");
    max_id = std::max(max_id, id);
  }
  bytes_.resize(size_t(max_id + 1));
  present_.assign(bytes_.size(), false);
  std::vector<bool> indexed(bytes_.size(), false);
  for (const auto& [spelling, id] : vocab) {
    std::string& bytes = bytes_[size_t(id)];
    present_[size_t(id)] = true;
    if (byte_level::decode_into(spelling, bytes)) {
      indexed[size_t(id)] = true;
    } else {
      bytes = spelling;  // printed as written, as Hugging Face's ByteLevel decoder does
      odd_spellings_.insert_or_assign(spelling, int32_t(id));
    }
  }
  index_.build(bytes_, indexed);

  for (int b = 0; b < 256; ++b) byte_ids_[b] = id_of_bytes(std::string(1, char(b)));

  std::string left_bytes, right_bytes, joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    int32_t left_id = -1, right_id = -1, merged_id = -1;
    if (byte_level::decode_into(left, left_bytes) && byte_level::decode_into(right, right_bytes)) {
      left_id = id_of_bytes(left_bytes);
      right_id = id_of_bytes(right_bytes);
      joined.assign(left_bytes).append(right_bytes);
      merged_id = id_of_bytes(joined);
    } else {
      left_id = id_of_spelling(left).value_or(-1);
      right_id = id_of_spelling(right).value_or(-1);
      joined.assign(left).append(right);
      merged_id = id_of_spelling(joined).value_or(-1);
    }
    if (left_id < 0 || right_id < 0 || merged_id < 0) {
      fail("tokenizer file ", file, ": merge ", rank, " (\"", left, "\" + \"", right, "\") needs \"",
           left_id < 0 ? left : right_id < 0 ? right : left + right, "\", which is not in the vocabulary");
    }
    pairs_.insert(left_id, right_id, uint32_t(rank), merged_id);
  }

  if (options_.unk_token) {
    unk_ = id_of_spelling(*options_.unk_token);
    KUIPER_CHECK(unk_.has_value(), "tokenizer file ", file, ": unk_token \"", *options_.unk_token,
                 "\" is not in the vocabulary");
  }
}

std::optional<int32_t> BpeModel::id_of_spelling(std::string_view spelling) const {
  if (std::string bytes; byte_level::decode_into(spelling, bytes)) {
    const int32_t id = id_of_bytes(bytes);
    return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
  }
  const auto it = odd_spellings_.find(spelling);
  return it == odd_spellings_.end() ? std::nullopt : std::optional<int32_t>(it->second);
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
  if (options_.ignore_merges) {
    // Llama 3: a piece that is itself a token is taken whole, even where the merges would
    // have produced something else.
    if (const int32_t id = id_of_bytes(piece); id >= 0) {
      out.push_back(id);
      return;
    }
  }
  auto& symbols = s.symbols;
  symbols.clear();
  for (char c : piece) {
    int32_t id = byte_ids_[uint8_t(c)];
    if (id < 0) {
      // Hugging Face drops a character the vocabulary lacks when there is no unknown token.
      if (!unk_ || (options_.fuse_unk && !symbols.empty() && symbols.back().id == *unk_)) continue;
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
