#pragma once
// The BPE model proper: turns one pre-tokenized piece (raw bytes) into token ids by applying
// the ranked merges, lowest rank first, as Hugging Face's tokenizers do.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kuiper {

// Transparent hashing, so maps keyed by std::string can be searched with a string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  struct Merge {
    int32_t left;
    int32_t right;
    int32_t merged;
  };

  // `byte_ids[b]` is the token of the single byte b (-1 if the vocabulary lacks it). Merges are
  // in rank order; a later duplicate of a pair overrides the earlier one. `whole_pieces` maps
  // the raw bytes of every vocabulary token to its id and is used only with ignore_merges.
  BpeModel(const std::vector<int32_t>& byte_ids, const std::vector<Merge>& merges,
           StringMap<int32_t> whole_pieces, bool ignore_merges, std::optional<int32_t> unk, bool fuse_unk);

  // Per-thread working memory, reused across pieces so encoding does not allocate per piece.
  struct Scratch {
    struct Symbol {
      int32_t id;    // -1 once merged into its left neighbour
      int32_t prev;  // index of the neighbours still alive, -1 at the ends
      int32_t next;
    };
    struct Candidate {
      uint32_t rank;
      int32_t pos;  // index of the left symbol
      int32_t merged;
    };
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
  };

  // Appends the ids of `piece` (raw bytes) to `out`.
  void encode(std::string_view piece, std::vector<int32_t>& out, Scratch& scratch) const;

 private:
  // Open addressing over (left << 32 | right): pair lookups are the inner loop of encoding,
  // and std::unordered_map's node chasing would dominate it.
  class PairTable {
   public:
    struct Entry {
      uint64_t key;
      uint32_t rank;
      int32_t merged;
    };
    explicit PairTable(size_t count);
    void insert(int32_t left, int32_t right, uint32_t rank, int32_t merged);
    const Entry* find(int32_t left, int32_t right) const;

   private:
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    static uint64_t key_of(int32_t left, int32_t right) { return uint64_t(uint32_t(left)) << 32 | uint32_t(right); }
    size_t slot_of(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> shift_); }
    std::vector<Entry> slots_;
    int shift_ = 64;
  };

  void push_candidate(Scratch& s, int32_t pos) const;

  int32_t byte_ids_[256];
  PairTable pairs_;
  StringMap<int32_t> whole_pieces_;
  bool ignore_merges_;
  std::optional<int32_t> unk_;
  bool fuse_unk_;
};

}  // namespace kuiper
