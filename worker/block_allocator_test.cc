#include "worker/block_allocator.h"

#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

using ::testing::ElementsAreArray;
using SeqId = BlockAllocator::SeqId;

std::vector<int32_t> Tokens(int32_t first, int n) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

// One row of a per-iteration table: an operation and the state expected after it.
struct Op {
  enum Kind { kAllocate, kAppend, kMarkComputed, kFree, kReset };
  Kind kind;
  SeqId seq;
  std::vector<int32_t> tokens = {};  // kAllocate, kAppend
  int count = 0;                     // kMarkComputed
  absl::StatusCode want_code = absl::StatusCode::kOk;
  int want_cached_tokens = 0;            // kAllocate
  std::vector<int32_t> want_table = {};  // when the sequence exists afterwards
  int want_free = 0;
  int want_evictable = 0;
};

// Row builders. The trailing arguments are the expected state after the operation: the
// number of cached tokens Allocate reports, the sequence's block table, NumFreeBlocks() and
// NumEvictableBlocks().
Op Row(Op::Kind kind, SeqId seq, int free, int evictable) {
  Op op{kind, seq};
  op.want_free = free;
  op.want_evictable = evictable;
  return op;
}
Op Allocate(SeqId seq, std::vector<int32_t> tokens, int cached, std::vector<int32_t> table,
            int free, int evictable) {
  Op op = Row(Op::kAllocate, seq, free, evictable);
  op.tokens = std::move(tokens);
  op.want_cached_tokens = cached;
  op.want_table = std::move(table);
  return op;
}
Op AllocateFails(SeqId seq, std::vector<int32_t> tokens, absl::StatusCode code, int free,
                 int evictable) {
  Op op = Row(Op::kAllocate, seq, free, evictable);
  op.tokens = std::move(tokens);
  op.want_code = code;
  return op;
}
Op Append(SeqId seq, std::vector<int32_t> tokens, std::vector<int32_t> table, int free,
          int evictable, absl::StatusCode code = absl::StatusCode::kOk) {
  Op op = Row(Op::kAppend, seq, free, evictable);
  op.tokens = std::move(tokens);
  op.want_table = std::move(table);
  op.want_code = code;
  return op;
}
Op MarkComputed(SeqId seq, int count, int free, int evictable) {
  Op op = Row(Op::kMarkComputed, seq, free, evictable);
  op.count = count;
  return op;
}
Op Free(SeqId seq, int free, int evictable) { return Row(Op::kFree, seq, free, evictable); }
Op Reset(int free, int evictable) { return Row(Op::kReset, 0, free, evictable); }

void RunTable(BlockAllocator& kv, const std::vector<Op>& ops) {
  for (size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    SCOPED_TRACE("row " + std::to_string(i) + " seq " + std::to_string(op.seq));
    switch (op.kind) {
      case Op::kAllocate: {
        const absl::StatusOr<int> cached = kv.Allocate(op.seq, op.tokens);
        ASSERT_EQ(cached.status().code(), op.want_code) << cached.status();
        if (cached.ok()) {
          EXPECT_EQ(*cached, op.want_cached_tokens);
        }
        break;
      }
      case Op::kAppend:
        ASSERT_EQ(kv.AppendTokens(op.seq, op.tokens).code(), op.want_code);
        break;
      case Op::kMarkComputed:
        kv.MarkComputed(op.seq, op.count);
        break;
      case Op::kFree:
        EXPECT_TRUE(kv.Free(op.seq));
        EXPECT_FALSE(kv.HasSequence(op.seq));
        break;
      case Op::kReset:
        kv.ResetPrefixCache();
        break;
    }
    if (!op.want_table.empty()) {
      EXPECT_THAT(kv.BlockTable(op.seq), ElementsAreArray(op.want_table));
    }
    EXPECT_EQ(kv.NumFreeBlocks(), op.want_free);
    EXPECT_EQ(kv.NumEvictableBlocks(), op.want_evictable);
    ASSERT_TRUE(kv.CheckInvariants().ok()) << kv.CheckInvariants();
  }
}

constexpr absl::StatusCode kExhausted = absl::StatusCode::kResourceExhausted;

TEST(BlockAllocatorTest, AllocateAppendShareEvictTable) {
  BlockAllocator kv(/*num_blocks=*/8, /*block_size=*/4);
  RunTable(
      kv,
      {
          Allocate(1, Tokens(0, 10), 0, {0, 1, 2}, 5, 0),
          MarkComputed(1, 10, 5, 0),  // publishes blocks 0 and 1 (tokens 0..7)
          Append(1, {10, 11}, {0, 1, 2}, 5, 0),
          Append(1, {12}, {0, 1, 2, 3}, 4, 0),  // block boundary
          // Same 9-token prefix: blocks 0 and 1 are shared.
          Allocate(2, Tokens(0, 9), 8, {0, 1, 4}, 3, 0),
          AllocateFails(3, Tokens(100, 20), kExhausted, 3, 0),
          // Blocks 0 and 1 are still used by sequence 2; 3 and 2 were never published.
          Free(1, 5, 0),
          MarkComputed(2, 9, 5, 0),  // nothing new to publish
          Free(2, 8, 2),             // 1, then 0, become evictable
          // Hit on an evictable block: it leaves the LRU list. Free list is now 5, 6, 7, 3, 2, 4.
          Allocate(3, Tokens(0, 5), 4, {0, 5}, 6, 1),
          // Needs every block: the five free ones, then evicts block 1 (forgetting tokens 4..7).
          Allocate(4, Tokens(200, 24), 0, {6, 7, 3, 2, 4, 1}, 0, 0),
          Append(4, {1}, {6, 7, 3, 2, 4, 1}, 0, 0, kExhausted),
          Free(3, 2, 1),
          // Block 0 hits but its evictable copy is one of the two free blocks: 1 block short.
          AllocateFails(5, Tokens(0, 9), kExhausted, 2, 1),
          Free(4, 8, 1),
          Allocate(5, Tokens(0, 9), 4, {0, 5, 1}, 5, 0),
      });
  EXPECT_EQ(kv.prefix_cache_stats().queried_tokens, 10 + 9 + 5 + 24 + 9);
  EXPECT_EQ(kv.prefix_cache_stats().hit_tokens, 8 + 4 + 4);
}

TEST(BlockAllocatorTest, EvictsLeastRecentlyReleasedAndTailsFirst) {
  BlockAllocator kv(/*num_blocks=*/6, /*block_size=*/2);
  RunTable(kv, {
                   Allocate(1, Tokens(0, 5), 0, {0, 1, 2}, 3, 0),
                   MarkComputed(1, 5, 3, 0),  // publishes 0 ([0,1]) and 1 ([2,3])
                   Allocate(2, Tokens(50, 3), 0, {3, 4}, 1, 0),
                   MarkComputed(2, 3, 1, 0),  // publishes 3
                   Free(1, 4, 2),             // LRU: 1 (tail of seq 1), then 0
                   Free(2, 6, 3),             // LRU: 1, 0, 3; free list: 5, 2, 4
                   // Three never-cached blocks go first, then eviction follows the LRU order.
                   Allocate(3, Tokens(100, 8), 0, {5, 2, 4, 1}, 2, 2),
                   Allocate(4, Tokens(200, 2), 0, {0}, 1, 1),
                   Free(3, 5, 1),
                   // Sequence 2's prefix survived; sequence 1's did not.
                   Allocate(5, Tokens(50, 3), 2, {3, 1}, 3, 0),
                   Allocate(6, Tokens(0, 5), 0, {4, 2, 5}, 0, 0),
               });
}

TEST(BlockAllocatorTest, FullyCachedPromptStillComputesItsLastToken) {
  BlockAllocator kv(/*num_blocks=*/6, /*block_size=*/4);
  RunTable(kv,
           {
               Allocate(1, Tokens(0, 8), 0, {0, 1}, 4, 0),
               MarkComputed(1, 8, 4, 0),
               // Both blocks are cached, but the last one is recomputed into a private block.
               Allocate(2, Tokens(0, 8), 4, {0, 2}, 3, 0),
               MarkComputed(2, 8, 3, 0),  // an identical block is already cached: 2 stays private
               Free(2, 4, 0),
               Free(1, 6, 2),
               Allocate(3, Tokens(0, 9), 8, {0, 1, 3}, 3, 0),
           });
}

TEST(BlockAllocatorTest, DecodeTokensArePublishedWhenComputed) {
  BlockAllocator kv(/*num_blocks=*/6, /*block_size=*/2);
  std::vector<int32_t> seq1 = {7, 8, 9};
  RunTable(kv, {
                   Allocate(1, seq1, 0, {0, 1}, 4, 0),
                   MarkComputed(1, 3, 4, 0),
                   Append(1, {10}, {0, 1}, 4, 0),  // [9, 10] is full but not computed yet
                   Allocate(2, {7, 8, 9, 10, 11}, 2, {0, 2, 3}, 2, 0),
                   Free(2, 4, 0),
                   MarkComputed(1, 4, 4, 0),
                   Allocate(3, {7, 8, 9, 10, 11}, 4, {0, 1, 4}, 3, 0),
               });
}

TEST(BlockAllocatorTest, ResetPrefixCacheForgetsEverything) {
  BlockAllocator kv(/*num_blocks=*/4, /*block_size=*/2);
  RunTable(kv, {
                   Allocate(1, Tokens(0, 3), 0, {0, 1}, 2, 0),
                   MarkComputed(1, 3, 2, 0),
                   Allocate(2, Tokens(10, 3), 0, {2, 3}, 0, 0),
                   MarkComputed(2, 3, 0, 0),
                   Free(1, 2, 1),
                   Reset(2, 0),
                   Free(2, 4, 0),  // its published block 2 was forgotten: freed, not cached
                   Allocate(3, Tokens(0, 3), 0, {1, 0}, 2, 0),
                   Allocate(4, Tokens(10, 3), 0, {3, 2}, 0, 0),
               });
}

TEST(BlockAllocatorTest, PrefixCachingDisabled) {
  BlockAllocator kv(/*num_blocks=*/4, /*block_size=*/2, /*enable_prefix_caching=*/false);
  RunTable(kv, {
                   Allocate(1, Tokens(0, 3), 0, {0, 1}, 2, 0),
                   MarkComputed(1, 3, 2, 0),
                   Free(1, 4, 0),
                   Allocate(2, Tokens(0, 3), 0, {2, 3}, 2, 0),
               });
  EXPECT_EQ(kv.prefix_cache_stats().queried_tokens, 0);
}

TEST(BlockAllocatorTest, ErrorsAndSlots) {
  BlockAllocator kv(/*num_blocks=*/4, /*block_size=*/4);
  EXPECT_EQ(kv.Allocate(1, {}).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(kv.Allocate(1, Tokens(0, 6)).ok());
  EXPECT_EQ(kv.Allocate(1, Tokens(0, 6)).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(kv.AppendTokens(9, {1}).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(kv.Free(9));
  EXPECT_TRUE(kv.CanAllocate(8));
  EXPECT_FALSE(kv.CanAllocate(9));
  EXPECT_TRUE(kv.CanAppendTokens(1, 10));
  EXPECT_FALSE(kv.CanAppendTokens(1, 11));
  EXPECT_DOUBLE_EQ(kv.Usage(), 0.5);

  ASSERT_TRUE(kv.Allocate(2, Tokens(100, 3)).ok());  // block 2
  ASSERT_TRUE(kv.AppendTokens(1, Tokens(6, 2)).ok());
  ASSERT_TRUE(kv.AppendSlot(1, 8).ok());  // 9 tokens: blocks 0, 1, 3
  EXPECT_THAT(kv.BlockTable(1), ElementsAreArray({0, 1, 3}));
  EXPECT_EQ(kv.NumTokens(1), 9);
  EXPECT_EQ(kv.Slot(1, 0), 0);
  EXPECT_EQ(kv.Slot(1, 5), 1 * 4 + 1);
  EXPECT_EQ(kv.Slot(1, 8), 3 * 4 + 0);
  std::vector<int64_t> slots = {-1};
  kv.AppendSlotMapping(1, 3, 9, &slots);
  kv.AppendSlotMapping(2, 2, 3, &slots);
  EXPECT_THAT(slots, ElementsAreArray({-1, 3, 4, 5, 6, 7, 12, 10}));
  EXPECT_DOUBLE_EQ(kv.Usage(), 1.0);
}

TEST(BlockAllocatorTest, HashIsChainedAndStable) {
  const std::vector<int32_t> a = {1, 2, 3, 4};
  const uint64_t h = BlockAllocator::HashBlock(BlockAllocator::kRootHash, a);
  EXPECT_EQ(h, BlockAllocator::HashBlock(BlockAllocator::kRootHash, a));
  EXPECT_NE(h, BlockAllocator::HashBlock(h, a));
  EXPECT_NE(h, BlockAllocator::HashBlock(BlockAllocator::kRootHash, {1, 2, 4, 3}));
  EXPECT_NE(h, BlockAllocator::HashBlock(BlockAllocator::kRootHash, {1, 2, 3}));
  // Pinned so that a change to the function (which would split caches across versions of a
  // cluster) is deliberate.
  EXPECT_EQ(h, uint64_t{8745863751232664018u});
}

// Random operations against a simulated KV cache: every cache hit must hand out blocks that
// really hold the sequence's tokens, and the bookkeeping must stay consistent throughout.
TEST(BlockAllocatorTest, RandomizedInvariants) {
  constexpr int kBlockSize = 4;
  for (uint64_t seed : {1, 2, 3}) {
    SCOPED_TRACE(seed);
    BlockAllocator kv(/*num_blocks=*/48, kBlockSize);
    std::vector<int32_t> kv_content(48 * kBlockSize, -1);  // the token whose KV a slot holds
    std::mt19937_64 rng(seed);
    auto uniform = [&](int n) { return static_cast<int>(rng() % n); };
    // A few shared prefixes make hits common.
    std::vector<std::vector<int32_t>> prefixes;
    for (int p = 0; p < 4; ++p) prefixes.push_back(Tokens(1000 * p, 4 + uniform(20)));
    std::vector<SeqId> live;
    SeqId next_seq = 0;
    int hits = 0;

    for (int step = 0; step < 3000; ++step) {
      const int action = uniform(10);
      if (action < 4 && next_seq < 1000) {
        std::vector<int32_t> tokens = prefixes[uniform(prefixes.size())];
        tokens.resize(uniform(static_cast<int>(tokens.size())) + 1);
        for (int extra = uniform(12); extra > 0; --extra) tokens.push_back(uniform(50));
        const SeqId s = next_seq++;
        const absl::StatusOr<int> cached = kv.Allocate(s, tokens);
        if (!cached.ok()) {
          ASSERT_EQ(cached.status().code(), kExhausted);
          ASSERT_LT(kv.NumFreeBlocks(), kv.BlocksForTokens(tokens.size()));
        } else {
          ASSERT_EQ(*cached % kBlockSize, 0);
          ASSERT_LT(*cached, static_cast<int>(tokens.size()));
          for (int i = 0; i < *cached; ++i) {
            ASSERT_EQ(kv_content[kv.Slot(s, i)], tokens[i]) << "stale cache hit";
          }
          hits += *cached > 0;
          // The step computes the rest of the prompt.
          for (int i = *cached; i < static_cast<int>(tokens.size()); ++i) {
            kv_content[kv.Slot(s, i)] = tokens[i];
          }
          kv.MarkComputed(s, tokens.size());
          live.push_back(s);
        }
      } else if (action < 8 && !live.empty()) {
        const SeqId s = live[uniform(live.size())];
        const int32_t token = uniform(50);
        if (!kv.CanAppendTokens(s, 1)) {
          ASSERT_EQ(kv.AppendTokens(s, {token}).code(), kExhausted);
          continue;
        }
        ASSERT_TRUE(kv.AppendTokens(s, {token}).ok());
        kv_content[kv.Slot(s, kv.NumTokens(s) - 1)] = token;
        kv.MarkComputed(s, kv.NumTokens(s));
      } else if (!live.empty()) {
        const size_t idx = uniform(live.size());
        ASSERT_TRUE(kv.Free(live[idx]));
        live.erase(live.begin() + idx);
      }
      ASSERT_TRUE(kv.CheckInvariants().ok()) << "step " << step << ": " << kv.CheckInvariants();
    }
    EXPECT_GT(hits, 50);
    for (SeqId s : live) ASSERT_TRUE(kv.Free(s));
    EXPECT_TRUE(kv.CheckInvariants().ok());
    EXPECT_EQ(kv.NumFreeBlocks(), kv.num_blocks());
    EXPECT_DOUBLE_EQ(kv.Usage(), 0.0);
  }
}

}  // namespace
}  // namespace shardserve
