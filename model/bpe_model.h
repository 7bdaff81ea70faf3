// The BPE model of a byte-level tokenizer: vocabulary, merge ranks, and the merge loop that turns
// one pre-tokenized piece into token ids.
//
// A piece starts as one symbol per byte (the byte's byte-level character looked up in the
// vocabulary); then, as in Hugging Face's `BPE::merge_word`, the adjacent pair with the lowest
// merge rank is merged, leftmost first on ties, until no adjacent pair has a merge. A heap of
// candidate pairs over a linked list of symbols makes a piece of n bytes cost O(n log n), and a
// bounded cache of recent short pieces skips the merging for the words that recur in text.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<BpeModel> bpe, BpeModel::Create(tokens, merges, {}));
//   std::vector<int32_t> ids;
//   bpe->Encode(" hello", &ids);
//
// Encode may run on many threads at once (the cache is sharded and locked).
#ifndef SHARDSERVE_MODEL_BPE_MODEL_H_
#define SHARDSERVE_MODEL_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace shardserve {

struct BpeModelOptions {
  // Emit a piece that is itself a vocabulary token as that token, without merging (Llama 3's
  // `ignore_merges`).
  bool ignore_merges = false;
  // Token for bytes whose character is not in the vocabulary; -1 drops such bytes, which is what
  // Hugging Face does when the model has no unk_token.
  int32_t unk_id = -1;
  // Consecutive unknown bytes become a single unk token.
  bool fuse_unk = false;
};

class BpeModel {
 public:
  // `tokens`: id -> token in the byte-level alphabet; an empty string marks an unused id.
  // When two ids share a string, the later one is what encoding produces.
  // `merges`: "left right" in rank order (rank = index). A merge naming a token that is not in
  // the vocabulary, or whose concatenation is not, fails with INVALID_ARGUMENT (as in Hugging
  // Face); a repeated pair keeps its last rank.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(const std::vector<std::string>& tokens,
                                                          const std::vector<std::string>& merges,
                                                          const BpeModelOptions& options);

  // Appends the ids of the piece `word` (raw bytes; empty appends nothing).
  void Encode(absl::string_view word, std::vector<int32_t>* ids) const;

  // The id of `token` (byte-level alphabet), or -1.
  int32_t TokenId(absl::string_view token) const;

  size_t num_merges() const { return merges_.size(); }

 private:
  struct Merge {
    uint32_t rank;
    int32_t new_id;
  };

  // Pieces up to this many bytes are cached; longer ones are rare and costly to key.
  static constexpr size_t kMaxCachedBytes = 48;
  static constexpr size_t kCacheShards = 16;
  // A full shard is emptied, which bounds memory at about a few MB per model.
  static constexpr size_t kMaxEntriesPerShard = 4096;

  struct CacheShard {
    absl::Mutex mutex;
    absl::flat_hash_map<std::string, std::vector<int32_t>> entries ABSL_GUARDED_BY(mutex);
  };

  BpeModel() = default;
  void MergeWord(absl::string_view word, std::vector<int32_t>* ids) const;

  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  const Merge* FindMerge(int32_t left, int32_t right) const;

  BpeModelOptions options_;
  absl::flat_hash_map<std::string, int32_t> vocab_;     // byte-level token -> id
  absl::flat_hash_map<std::string, int32_t> by_bytes_;  // raw bytes of a token -> id
  std::array<int32_t, 256> byte_ids_;                   // id of each single byte, or -1
  absl::flat_hash_map<uint64_t, Merge> merges_;         // (left id, right id) -> merge
  mutable std::array<CacheShard, kCacheShards> cache_;  // piece bytes -> ids
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_BPE_MODEL_H_
