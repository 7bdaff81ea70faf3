#include "worker/block_allocator.h"

#include <algorithm>
#include <numeric>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace shardserve {
namespace {

// splitmix64's finaliser: a fixed bijective mixer, so hashes never depend on the process.
uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

}  // namespace

uint64_t BlockAllocator::HashBlock(uint64_t parent_hash, absl::Span<const int32_t> token_ids) {
  uint64_t h = Mix64(parent_hash ^ 0x6a09e667f3bcc908ull);
  for (int32_t t : token_ids) h = Mix64(h + 0x9e3779b97f4a7c15ull + static_cast<uint32_t>(t));
  return Mix64(h ^ token_ids.size());
}

BlockAllocator::BlockAllocator(int num_blocks, int block_size, bool enable_prefix_caching)
    : block_size_(block_size), enable_prefix_caching_(enable_prefix_caching) {
  CHECK_GE(num_blocks, 1);
  CHECK_GE(block_size, 1);
  blocks_.resize(num_blocks);
  for (int32_t i = 0; i < num_blocks; ++i) free_.push_back(i);
}

const BlockAllocator::Sequence& BlockAllocator::GetSequence(SeqId seq_id) const {
  auto it = seqs_.find(seq_id);
  CHECK(it != seqs_.end()) << "unknown sequence " << seq_id;
  return it->second;
}

void BlockAllocator::ExtendHashes(Sequence& seq, int num_full_blocks) const {
  for (int b = seq.block_hashes.size(); b < num_full_blocks; ++b) {
    const uint64_t parent = b == 0 ? kRootHash : seq.block_hashes[b - 1];
    seq.block_hashes.push_back(HashBlock(
        parent, absl::MakeConstSpan(seq.token_ids).subspan(b * block_size_, block_size_)));
  }
}

int32_t BlockAllocator::Lookup(uint64_t hash, uint64_t parent_hash,
                               absl::Span<const int32_t> tokens) const {
  auto it = cache_.find(hash);
  if (it == cache_.end()) return -1;
  const Block& block = blocks_[it->second];
  if (block.parent_hash != parent_hash || absl::MakeConstSpan(block.token_ids) != tokens) {
    return -1;  // a 64-bit collision: treat as a miss
  }
  return it->second;
}

int32_t BlockAllocator::TakeFreeBlock() {
  int32_t id;
  if (!free_.empty()) {
    id = free_.front();
    free_.pop_front();
  } else {
    CHECK(!evictable_.empty()) << "no free KV block";
    id = evictable_.front();
    evictable_.pop_front();
    Uncache(blocks_[id]);
  }
  blocks_[id].ref_count = 1;
  return id;
}

void BlockAllocator::Acquire(int32_t block_id) {
  Block& block = blocks_[block_id];
  if (block.ref_count == 0) evictable_.erase(block.lru_pos);  // only cached blocks are found
  ++block.ref_count;
}

void BlockAllocator::Release(int32_t block_id) {
  Block& block = blocks_[block_id];
  CHECK_GT(block.ref_count, 0);
  if (--block.ref_count > 0) return;
  if (block.cached) {
    block.lru_pos = evictable_.insert(evictable_.end(), block_id);
  } else {
    free_.push_back(block_id);
  }
}

void BlockAllocator::Uncache(Block& block) {
  cache_.erase(block.hash);
  block.cached = false;
  block.token_ids.clear();
}

absl::StatusOr<int> BlockAllocator::Allocate(SeqId seq_id, absl::Span<const int32_t> token_ids,
                                             bool use_prefix_cache) {
  if (token_ids.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("sequence ", seq_id, " has no tokens"));
  }
  if (HasSequence(seq_id)) {
    return absl::AlreadyExistsError(absl::StrCat("sequence ", seq_id, " already has KV blocks"));
  }
  Sequence seq;
  seq.token_ids.assign(token_ids.begin(), token_ids.end());
  const int num_tokens = static_cast<int>(token_ids.size());

  std::vector<int32_t> hits;
  int evictable_hits = 0;
  const bool lookup = enable_prefix_caching_ && use_prefix_cache;
  if (lookup) {
    // Stop one token short of the end: the last prompt token must run to produce logits.
    const int max_hits = (num_tokens - 1) / block_size_;
    ExtendHashes(seq, max_hits);
    for (int b = 0; b < max_hits; ++b) {
      const int32_t id =
          Lookup(seq.block_hashes[b], b == 0 ? kRootHash : seq.block_hashes[b - 1],
                 absl::MakeConstSpan(seq.token_ids).subspan(b * block_size_, block_size_));
      if (id < 0) break;
      hits.push_back(id);
      if (blocks_[id].ref_count == 0) ++evictable_hits;
    }
  }
  const int num_new = BlocksForTokens(num_tokens) - static_cast<int>(hits.size());
  const int available = NumFreeBlocks() - evictable_hits;
  if (num_new > available) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "sequence ", seq_id, " needs ", num_new, " free KV blocks for ", num_tokens, " tokens (",
        hits.size() * block_size_, " cached), ", available, " available"));
  }

  // Take the hits first so that finding new blocks cannot evict them.
  for (int32_t id : hits) Acquire(id);
  seq.block_ids = hits;
  for (int i = 0; i < num_new; ++i) seq.block_ids.push_back(TakeFreeBlock());
  seq.num_committed_blocks = static_cast<int>(hits.size());

  const int num_cached_tokens = static_cast<int>(hits.size()) * block_size_;
  if (lookup) {
    stats_.queried_tokens += num_tokens;
    stats_.hit_tokens += num_cached_tokens;
  }
  seqs_.emplace(seq_id, std::move(seq));
  return num_cached_tokens;
}

bool BlockAllocator::CanAppendTokens(SeqId seq_id, int num_tokens) const {
  const Sequence& seq = GetSequence(seq_id);
  const int needed = BlocksForTokens(static_cast<int>(seq.token_ids.size()) + num_tokens) -
                     static_cast<int>(seq.block_ids.size());
  return needed <= NumFreeBlocks();
}

absl::Status BlockAllocator::AppendTokens(SeqId seq_id, absl::Span<const int32_t> token_ids) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return absl::NotFoundError(absl::StrCat("unknown sequence ", seq_id));
  if (!CanAppendTokens(seq_id, static_cast<int>(token_ids.size()))) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no free KV block to extend sequence ", seq_id));
  }
  Sequence& seq = it->second;
  seq.token_ids.insert(seq.token_ids.end(), token_ids.begin(), token_ids.end());
  const int needed = BlocksForTokens(static_cast<int>(seq.token_ids.size()));
  while (static_cast<int>(seq.block_ids.size()) < needed) seq.block_ids.push_back(TakeFreeBlock());
  return absl::OkStatus();
}

void BlockAllocator::MarkComputed(SeqId seq_id, int num_computed_tokens) {
  auto it = seqs_.find(seq_id);
  CHECK(it != seqs_.end()) << "unknown sequence " << seq_id;
  Sequence& seq = it->second;
  CHECK_LE(num_computed_tokens, static_cast<int>(seq.token_ids.size()));
  if (!enable_prefix_caching_) return;
  const int num_full = num_computed_tokens / block_size_;
  ExtendHashes(seq, num_full);
  for (int b = seq.num_committed_blocks; b < num_full; ++b) {
    const uint64_t hash = seq.block_hashes[b];
    // An identical block may already be cached (two sequences computed the same prefix at
    // once, or the block after a fully cached prefix); then this copy stays private.
    if (cache_.contains(hash)) continue;
    Block& block = blocks_[seq.block_ids[b]];
    block.cached = true;
    block.hash = hash;
    block.parent_hash = b == 0 ? kRootHash : seq.block_hashes[b - 1];
    block.token_ids.assign(seq.token_ids.begin() + b * block_size_,
                           seq.token_ids.begin() + (b + 1) * block_size_);
    cache_.emplace(hash, seq.block_ids[b]);
  }
  seq.num_committed_blocks = std::max(seq.num_committed_blocks, num_full);
}

bool BlockAllocator::Free(SeqId seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return false;
  const std::vector<int32_t>& ids = it->second.block_ids;
  for (auto b = ids.rbegin(); b != ids.rend(); ++b) Release(*b);
  seqs_.erase(it);
  return true;
}

void BlockAllocator::ResetPrefixCache() {
  for (int32_t id : evictable_) {
    Uncache(blocks_[id]);
    free_.push_back(id);
  }
  evictable_.clear();
  for (Block& block : blocks_) {
    if (block.cached) Uncache(block);
  }
}

int BlockAllocator::NumTokens(SeqId seq_id) const {
  return static_cast<int>(GetSequence(seq_id).token_ids.size());
}

const std::vector<int32_t>& BlockAllocator::BlockTable(SeqId seq_id) const {
  return GetSequence(seq_id).block_ids;
}

int64_t BlockAllocator::Slot(SeqId seq_id, int token_idx) const {
  const Sequence& seq = GetSequence(seq_id);
  CHECK_GE(token_idx, 0);
  CHECK_LT(token_idx, static_cast<int>(seq.token_ids.size()));
  return static_cast<int64_t>(seq.block_ids[token_idx / block_size_]) * block_size_ +
         token_idx % block_size_;
}

void BlockAllocator::AppendSlotMapping(SeqId seq_id, int begin, int end,
                                       std::vector<int64_t>* slots) const {
  const Sequence& seq = GetSequence(seq_id);
  CHECK(0 <= begin && begin <= end && end <= static_cast<int>(seq.token_ids.size()))
      << "slot range [" << begin << ", " << end << ") of sequence " << seq_id;
  for (int i = begin; i < end; ++i) {
    slots->push_back(static_cast<int64_t>(seq.block_ids[i / block_size_]) * block_size_ +
                     i % block_size_);
  }
}

absl::Status BlockAllocator::CheckInvariants() const {
  const int n = num_blocks();
  std::vector<int> refs(n, 0);
  for (const auto& [seq_id, seq] : seqs_) {
    if (static_cast<int>(seq.block_ids.size()) !=
        BlocksForTokens(static_cast<int>(seq.token_ids.size()))) {
      return absl::InternalError(absl::StrCat("sequence ", seq_id, " has ", seq.block_ids.size(),
                                              " blocks for ", seq.token_ids.size(), " tokens"));
    }
    absl::flat_hash_set<int32_t> own;
    for (int32_t id : seq.block_ids) {
      if (id < 0 || id >= n || !own.insert(id).second) {
        return absl::InternalError(absl::StrCat("sequence ", seq_id, " has bad block ", id));
      }
      ++refs[id];
    }
  }
  // 0 = unseen, 1 = free, 2 = evictable.
  std::vector<int> list_of(n, 0);
  for (int32_t id : free_) {
    if (list_of[id] != 0) return absl::InternalError(absl::StrCat("block ", id, " listed twice"));
    list_of[id] = 1;
    if (blocks_[id].cached) return absl::InternalError(absl::StrCat("free block ", id, " cached"));
  }
  for (auto it = evictable_.begin(); it != evictable_.end(); ++it) {
    const int32_t id = *it;
    if (list_of[id] != 0) return absl::InternalError(absl::StrCat("block ", id, " listed twice"));
    list_of[id] = 2;
    if (!blocks_[id].cached || blocks_[id].lru_pos != it) {
      return absl::InternalError(absl::StrCat("evictable block ", id, " is not indexed"));
    }
  }
  int num_cached = 0;
  for (int32_t id = 0; id < n; ++id) {
    const Block& block = blocks_[id];
    if (block.ref_count != refs[id]) {
      return absl::InternalError(absl::StrCat("block ", id, " has ref_count ", block.ref_count,
                                              " but ", refs[id], " users"));
    }
    if ((refs[id] == 0) != (list_of[id] != 0)) {
      return absl::InternalError(
          absl::StrCat("block ", id, " with ", refs[id], " users is on list ", list_of[id]));
    }
    if (block.cached) {
      ++num_cached;
      auto it = cache_.find(block.hash);
      if (it == cache_.end() || it->second != id ||
          static_cast<int>(block.token_ids.size()) != block_size_) {
        return absl::InternalError(absl::StrCat("cached block ", id, " is not indexed"));
      }
    }
  }
  if (num_cached != static_cast<int>(cache_.size())) {
    return absl::InternalError(
        absl::StrCat(cache_.size(), " cache entries for ", num_cached, " cached blocks"));
  }
  return absl::OkStatus();
}

}  // namespace shardserve
