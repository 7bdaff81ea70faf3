// Paged KV-cache bookkeeping: which physical blocks hold which sequence's tokens. No tensors;
// the KV cache itself indexes its per-layer K/V arrays with the block tables and slots kept here.
//
// Blocks hold block_size tokens. A sequence's block table lists its blocks in token order;
// token i lives in slot BlockTable(seq)[i / block_size] * block_size + i % block_size.
//
// Prefix caching: a full block is identified by a chained hash (HashBlock of its parent's hash
// and its own token ids), so equal hashes mean equal prefixes. Once MarkComputed says a full
// block's KV is written, the block is published and later sequences starting with the same
// tokens share it (reference counted) instead of recomputing it. When no sequence uses a
// published block any more it stays cached on an LRU list; it is reused, and its hash
// forgotten, only when no never-cached free block is left.
//
//   BlockAllocator kv(/*num_blocks=*/1024, /*block_size=*/16);
//   ASSIGN_OR_RETURN(int num_cached, kv.Allocate(seq, prompt));  // compute prompt[num_cached:]
//   kv.MarkComputed(seq, prompt.size());                           // once that step is scheduled
//   RETURN_IF_ERROR(kv.AppendTokens(seq, {sampled}));              // slot for the next step
//   ...
//   kv.Free(seq);
//
// Thread-compatible, not thread-safe: one scheduler thread owns an allocator.
#ifndef SHARDSERVE_WORKER_BLOCK_ALLOCATOR_H_
#define SHARDSERVE_WORKER_BLOCK_ALLOCATOR_H_

#include <cstdint>
#include <deque>
#include <list>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace shardserve {

class BlockAllocator {
 public:
  using SeqId = int64_t;

  // Prefix-cache effectiveness, in tokens, over successful Allocate calls.
  struct PrefixCacheStats {
    int64_t queried_tokens = 0;
    int64_t hit_tokens = 0;
  };

  // Parent hash of a sequence's first block.
  static constexpr uint64_t kRootHash = 0;

  // Stable across processes and platforms, so that routers can compute the same block hashes
  // to send a request where its prefix is cached.
  static uint64_t HashBlock(uint64_t parent_hash, absl::Span<const int32_t> token_ids);

  // num_blocks blocks of block_size tokens each. REQUIRES: num_blocks >= 1, block_size >= 1.
  BlockAllocator(int num_blocks, int block_size, bool enable_prefix_caching = true);

  BlockAllocator(const BlockAllocator&) = delete;
  BlockAllocator& operator=(const BlockAllocator&) = delete;

  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  int block_size() const { return block_size_; }
  // Blocks that can be handed out: never-cached free blocks plus evictable cached ones.
  int NumFreeBlocks() const { return static_cast<int>(free_.size() + evictable_.size()); }
  // Cached blocks that no sequence uses.
  int NumEvictableBlocks() const { return static_cast<int>(evictable_.size()); }
  // Fraction of blocks in use by some sequence, in [0, 1].
  double Usage() const { return 1.0 - static_cast<double>(NumFreeBlocks()) / num_blocks(); }
  const PrefixCacheStats& prefix_cache_stats() const { return stats_; }
  int BlocksForTokens(int num_tokens) const { return (num_tokens + block_size_ - 1) / block_size_; }

  // Whether a new sequence of num_tokens tokens fits, not counting on prefix-cache hits. A
  // false answer may be wrong when the prefix is cached; Allocate itself is exact.
  bool CanAllocate(int num_tokens) const { return BlocksForTokens(num_tokens) <= NumFreeBlocks(); }

  // Gives a new sequence blocks for `token_ids` (its prompt, or prompt and output when
  // recomputing after preemption), reusing cached blocks for its longest cached prefix. Returns
  // the number of leading tokens whose KV is already cached: a multiple of block_size, and
  // always less than token_ids.size() so that the last token is computed and yields logits.
  // Errors (nothing changes): INVALID_ARGUMENT for no tokens, ALREADY_EXISTS for a known
  // seq_id, RESOURCE_EXHAUSTED when the free blocks do not suffice.
  // With use_prefix_cache false every block is a fresh private one (returns 0): for KV that
  // arrives from elsewhere and is written into the blocks, which must not be shared while it is.
  absl::StatusOr<int> Allocate(SeqId seq_id, absl::Span<const int32_t> token_ids,
                               bool use_prefix_cache = true);

  // Whether AppendTokens(seq_id, num_tokens tokens) would succeed. REQUIRES: HasSequence.
  bool CanAppendTokens(SeqId seq_id, int num_tokens) const;

  // AppendTokens for one token: the usual decode step.
  absl::Status AppendSlot(SeqId seq_id, int32_t token_id) {
    return AppendTokens(seq_id, absl::MakeConstSpan(&token_id, 1));
  }

  // Reserves slots for tokens appended to a sequence (decode), taking a new block whenever the
  // last one fills. RESOURCE_EXHAUSTED (nothing changes) when free blocks run out: preempt
  // someone. NOT_FOUND for an unknown seq_id.
  absl::Status AppendTokens(SeqId seq_id, absl::Span<const int32_t> token_ids);

  // Declares that the KV of the first num_computed_tokens tokens is (or, by the time any later
  // step reads it, will be) written, which publishes the full blocks among them to the prefix
  // cache. Calls with a smaller count than before do nothing.
  // REQUIRES: HasSequence(seq_id), num_computed_tokens <= NumTokens(seq_id).
  void MarkComputed(SeqId seq_id, int num_computed_tokens);

  // Releases a sequence's blocks: published ones become evictable (the sequence's last blocks
  // ahead of its first, so shared prefixes are evicted last), the rest free. Returns false (and
  // does nothing) for an unknown seq_id, so abort paths may call it unconditionally.
  bool Free(SeqId seq_id);

  // Forgets every cached prefix: evictable blocks become free, and blocks in use will be freed
  // rather than cached when released.
  void ResetPrefixCache();

  bool HasSequence(SeqId seq_id) const { return seqs_.contains(seq_id); }
  // REQUIRES for the accessors below: HasSequence(seq_id).
  int NumTokens(SeqId seq_id) const;
  // The sequence's block ids in token order. Invalidated by any non-const call.
  const std::vector<int32_t>& BlockTable(SeqId seq_id) const;
  // The KV slot of token `token_idx`. REQUIRES: 0 <= token_idx < NumTokens(seq_id).
  int64_t Slot(SeqId seq_id, int token_idx) const;
  // Appends the slots of tokens [begin, end) to *slots (one step's slot mapping for a sequence).
  // REQUIRES: 0 <= begin <= end <= NumTokens(seq_id).
  void AppendSlotMapping(SeqId seq_id, int begin, int end, std::vector<int64_t>* slots) const;

  // Verifies the bookkeeping (reference counts match the block tables; every block is exactly
  // one of free, evictable or in use; the cache index agrees with the blocks). O(total table
  // size); for tests and debugging.
  absl::Status CheckInvariants() const;

 private:
  struct Block {
    int32_t ref_count = 0;
    // Published in cache_ under `hash`; parent_hash and token_ids guard against collisions.
    bool cached = false;
    uint64_t hash = 0;
    uint64_t parent_hash = 0;
    std::vector<int32_t> token_ids;
    std::list<int32_t>::iterator lru_pos;  // valid while cached && ref_count == 0
  };
  struct Sequence {
    std::vector<int32_t> block_ids;
    std::vector<int32_t> token_ids;
    // Chained hashes of the leading full blocks computed so far.
    std::vector<uint64_t> block_hashes;
    // Leading blocks already published or taken from the cache.
    int num_committed_blocks = 0;
  };

  const Sequence& GetSequence(SeqId seq_id) const;
  // Hashes of the full blocks of `seq` up to `num_full_blocks`, extending seq.block_hashes.
  void ExtendHashes(Sequence& seq, int num_full_blocks) const;
  // The cached block holding exactly these tokens after `parent_hash`, or -1.
  int32_t Lookup(uint64_t hash, uint64_t parent_hash, absl::Span<const int32_t> tokens) const;
  // Takes an uncached free block, or else evicts the least recently released cached one.
  // REQUIRES: NumFreeBlocks() > 0.
  int32_t TakeFreeBlock();
  void Acquire(int32_t block_id);
  void Release(int32_t block_id);
  void Uncache(Block& block);

  const int block_size_;
  const bool enable_prefix_caching_;
  std::vector<Block> blocks_;
  std::deque<int32_t> free_;                      // unused, uncached; reused in FIFO order
  std::list<int32_t> evictable_;                  // cached, unused; front = least recently released
  absl::flat_hash_map<uint64_t, int32_t> cache_;  // block hash -> block id
  absl::flat_hash_map<SeqId, Sequence> seqs_;
  PrefixCacheStats stats_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_BLOCK_ALLOCATOR_H_
