#pragma once
// The BPE model proper: the vocabulary and ranked merges of a tokenizer.json, and the encoding
// of one pre-tokenized piece (raw bytes) into ids, lowest-rank merge first, as Hugging Face's
// tokenizers do.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
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
  struct Options {
    bool ignore_merges = false;            // a piece that is a token is taken whole (Llama 3)
    std::optional<std::string> unk_token;  // stands for bytes the vocabulary lacks
    bool fuse_unk = false;
  };

  // `vocab`: (spelling in the byte-level alphabet, id); `merges`: spelling pairs in rank order
  // (a later duplicate of a pair overrides the earlier one). Throws kuiper::Error, naming
  // `file`, for a merge or unk token outside the vocabulary.
  BpeModel(std::span<const std::pair<std::string, int64_t>> vocab,
           std::span<const std::pair<std::string, std::string>> merges, Options options, std::string_view file);

  // One more than the largest id.
  int32_t size() const { return int32_t(bytes_.size()); }
  bool has_token(int32_t id) const { return id >= 0 && id < size() && present_[size_t(id)]; }
  // The bytes token `id` stands for (its spelling as is if that is not byte-level).
  const std::string& token_bytes(int32_t id) const { return bytes_[size_t(id)]; }
  std::optional<int32_t> id_of_spelling(std::string_view spelling) const;

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
  // Raw bytes -> id by open addressing; the keys are bytes_[id], so the table holds no strings.
  class BytesIndex {
   public:
    void build(const std::vector<std::string>& bytes, const std::vector<bool>& indexed);
    int32_t find(std::string_view key, const std::vector<std::string>& bytes) const;  // -1 if absent

   private:
    struct Slot {
      uint32_t tag;  // high bits of the hash, to skip most string compares
      int32_t id;    // -1: empty
    };
    std::vector<Slot> slots_;
  };

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

  int32_t id_of_bytes(std::string_view bytes) const { return index_.find(bytes, bytes_); }
  void push_candidate(Scratch& s, int32_t pos) const;

  std::vector<std::string> bytes_;  // id -> bytes
  std::vector<bool> present_;       // id -> whether the vocabulary has it (ids may have gaps)
  BytesIndex index_;                // byte-level tokens
  StringMap<int32_t> odd_spellings_;  // tokens whose spelling is not byte-level (rare)
  int32_t byte_ids_[256];           // token of each single byte, -1 if missing
  PairTable pairs_{0};
  Options options_;
  std::optional<int32_t> unk_;
};

}  // namespace kuiper
