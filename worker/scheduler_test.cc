#include "worker/scheduler.h"

#include <iterator>
#include <map>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace shardserve {
namespace {

std::vector<int32_t> Range(int32_t first, int n) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The token "sampled" as output k (from 0) of a sequence: never a prompt token in these tests.
int32_t OutputToken(int64_t seq_id, int k) { return static_cast<int32_t>(1000 + 100 * seq_id + k); }

SchedulerOptions Options(int max_num_seqs, int max_num_batched_tokens, int max_waiting = 16) {
  SchedulerOptions options;
  options.max_num_seqs = max_num_seqs;
  options.max_num_batched_tokens = max_num_batched_tokens;
  options.max_waiting = max_waiting;
  return options;
}

// ScheduledChunk as a comparable, printable row entry.
struct Chunk {
  int64_t seq_id;
  int32_t start;
  int32_t num_tokens;
  bool wants_logits;

  bool operator==(const Chunk& o) const {
    return seq_id == o.seq_id && start == o.start && num_tokens == o.num_tokens &&
           wants_logits == o.wants_logits;
  }
};

void PrintTo(const Chunk& c, std::ostream* os) {
  *os << "{seq " << c.seq_id << ", [" << c.start << ", " << c.start + c.num_tokens << ")"
      << (c.wants_logits ? ", logits" : "") << "}";
}

struct Request {
  int64_t seq_id;
  std::vector<int32_t> prompt;
  int num_outputs;  // finished after this many sampled tokens
};

// One row of a per-iteration table. `arrivals` are added before Schedule; `chunks` and
// `preempted` are what Schedule returns; the counts are the state after every chunk that wanted
// logits got its token (AppendToken, or Finish on the sequence's last output).
struct Step {
  std::vector<Request> arrivals;
  std::vector<Chunk> chunks;
  std::vector<int64_t> preempted;
  int num_running;
  int num_waiting;
  int num_free_blocks;
};

class Harness {
 public:
  Harness(int num_blocks, int block_size, const SchedulerOptions& options)
      : blocks_(num_blocks, block_size), scheduler_(&blocks_, options) {}

  void Run(const std::vector<Step>& steps) {
    for (const Step& step : steps) {
      SCOPED_TRACE("step " + std::to_string(step_index_++));
      RunStep(step);
    }
  }

  BlockAllocator& blocks() { return blocks_; }
  Scheduler& scheduler() { return scheduler_; }

 private:
  void RunStep(const Step& step) {
    for (const Request& r : step.arrivals) {
      const absl::Status status = scheduler_.Add(r.seq_id, r.prompt);
      ASSERT_TRUE(status.ok()) << status;
      num_outputs_[r.seq_id] = r.num_outputs;
    }
    const SchedulerOutput out = scheduler_.Schedule();
    std::vector<Chunk> chunks;
    int num_tokens = 0;
    for (const ScheduledChunk& c : out.chunks) {
      chunks.push_back({c.seq_id, c.start_position, c.num_tokens, c.wants_logits});
      num_tokens += c.num_tokens;
    }
    EXPECT_EQ(chunks, step.chunks);
    EXPECT_EQ(out.preempted, step.preempted);
    EXPECT_EQ(out.num_batched_tokens, num_tokens);
    for (const ScheduledChunk& c : out.chunks) {
      if (!c.wants_logits) continue;
      const int k = num_sampled_[c.seq_id]++;
      if (k + 1 == num_outputs_[c.seq_id]) {
        EXPECT_TRUE(scheduler_.Finish(c.seq_id));
      } else {
        scheduler_.AppendToken(c.seq_id, OutputToken(c.seq_id, k));
      }
    }
    EXPECT_EQ(scheduler_.num_running(), step.num_running);
    EXPECT_EQ(scheduler_.num_waiting(), step.num_waiting);
    EXPECT_EQ(blocks_.NumFreeBlocks(), step.num_free_blocks);
    const absl::Status invariants = blocks_.CheckInvariants();
    EXPECT_TRUE(invariants.ok()) << invariants;
  }

  BlockAllocator blocks_;
  Scheduler scheduler_;
  int step_index_ = 0;
  std::map<int64_t, int> num_outputs_;
  std::map<int64_t, int> num_sampled_;
};

TEST(SchedulerTest, LongPromptIsChunkedThenDecodes) {
  Harness h(/*num_blocks=*/8, /*block_size=*/4, Options(4, /*max_num_batched_tokens=*/4));
  h.Run({
      // arrivals, chunks, preempted, running, waiting, free blocks
      {{{1, Range(1, 10), 5}}, {{1, 0, 4, false}}, {}, 1, 0, 5},
      {{}, {{1, 4, 4, false}}, {}, 1, 0, 5},
      {{}, {{1, 8, 2, true}}, {}, 1, 0, 5},
      {{}, {{1, 10, 1, true}}, {}, 1, 0, 5},
      {{}, {{1, 11, 1, true}}, {}, 1, 0, 5},
      {{}, {{1, 12, 1, true}}, {}, 1, 0, 4},  // token 12 opened a fourth block
      {{}, {{1, 13, 1, true}}, {}, 0, 0, 8},
  });
  EXPECT_FALSE(h.scheduler().HasWork());
}

TEST(SchedulerTest, DecodesComeFirstAndNewPromptTakesTheRestOfTheBudget) {
  Harness h(16, 4, Options(4, /*max_num_batched_tokens=*/6));
  h.Run({
      {{{1, Range(1, 5), 3}}, {{1, 0, 5, true}}, {}, 1, 0, 14},
      {{{2, Range(101, 8), 2}}, {{1, 5, 1, true}, {2, 0, 5, false}}, {}, 2, 0, 12},
      {{}, {{1, 6, 1, true}, {2, 5, 3, true}}, {}, 1, 0, 14},
      {{}, {{2, 8, 1, true}}, {}, 0, 0, 16},
  });
}

TEST(SchedulerTest, MaxNumSeqsCapsAdmission) {
  Harness h(16, 4, Options(/*max_num_seqs=*/2, 16));
  h.Run({
      {{{1, Range(1, 3), 2}, {2, Range(101, 3), 2}, {3, Range(201, 3), 2}},
       {{1, 0, 3, true}, {2, 0, 3, true}},
       {},
       2,
       1,
       14},
      // 1 and 2 finish only after Schedule, so 3 still has no seat in this step.
      {{}, {{1, 3, 1, true}, {2, 3, 1, true}}, {}, 0, 1, 16},
      {{}, {{3, 0, 3, true}}, {}, 1, 0, 15},
      {{}, {{3, 3, 1, true}}, {}, 0, 0, 16},
  });
}

TEST(SchedulerTest, WaitingPromptThatDoesNotFitBlocksLaterOnes) {
  Harness h(/*num_blocks=*/4, 4, Options(8, 32));
  h.Run({
      {{{1, Range(1, 8), 2}, {2, Range(101, 12), 1}, {3, Range(201, 4), 1}},
       {{1, 0, 8, true}},
       {},
       1,
       2,
       2},
      // 1's ninth token takes a block, leaving one: enough for 3 but not for 2, ahead of it.
      {{}, {{1, 8, 1, true}}, {}, 0, 2, 4},
      {{}, {{2, 0, 12, true}, {3, 0, 4, true}}, {}, 0, 0, 4},
  });
}

TEST(SchedulerTest, PreemptsLatestAdmittedAndRecomputesItsOutput) {
  Harness h(/*num_blocks=*/4, 4, Options(4, 16));
  h.Run({
      {{{1, Range(1, 7), 4}, {2, Range(101, 7), 4}},
       {{1, 0, 7, true}, {2, 0, 7, true}},
       {},
       2,
       0,
       0},
      {{}, {{1, 7, 1, true}, {2, 7, 1, true}}, {}, 2, 0, 0},
      // 1 needs a third block: 2 is preempted, and 1 reuses 2's second (evicted) block; 2's first
      // block stays cached.
      {{}, {{1, 8, 1, true}}, {2}, 1, 1, 1},
      // 2 needs 3 blocks (one cached) and has none to spare until 1 finishes.
      {{}, {{1, 9, 1, true}}, {}, 0, 1, 4},
  });
  Scheduler& s = h.scheduler();
  EXPECT_EQ(s.num_preemptions(), 1);
  EXPECT_EQ(s.State(2), SequenceState::kWaiting);
  EXPECT_EQ(s.NumComputedTokens(2), 0);
  EXPECT_FALSE(h.blocks().HasSequence(2));
  EXPECT_EQ(s.Tokens(2), Concat(Range(101, 7), {OutputToken(2, 0), OutputToken(2, 1)}));
  h.Run({
      // Recompute prompt and both outputs after the cached first block, up to tokens.size().
      {{}, {{2, 4, 5, true}}, {}, 1, 0, 1},
  });
  EXPECT_EQ(s.NumCachedTokens(2), 4);
  EXPECT_EQ(s.Tokens(2),
            Concat(Range(101, 7), {OutputToken(2, 0), OutputToken(2, 1), OutputToken(2, 2)}));
  h.Run({
      {{}, {{2, 9, 1, true}}, {}, 0, 0, 4},
  });
}

TEST(SchedulerTest, DecodingSequenceThatIsLastPreemptsItself) {
  Harness h(/*num_blocks=*/4, 4, Options(4, 16));
  h.Run({
      {{{1, Range(1, 6), 3}, {2, Range(101, 8), 3}},
       {{1, 0, 6, true}, {2, 0, 8, true}},
       {},
       2,
       0,
       0},
      // 2's ninth token needs a block; 2 is the latest admitted, so it gives way and is skipped.
      {{}, {{1, 6, 1, true}}, {2}, 1, 1, 2},
      // Both of 2's blocks are cached but a third is needed: no room until 1 finishes.
      {{}, {{1, 7, 1, true}}, {}, 0, 1, 4},
      // Readmitted with its whole prompt cached: only its output token is recomputed.
      {{}, {{2, 8, 1, true}}, {}, 1, 0, 1},
  });
  EXPECT_EQ(h.scheduler().NumCachedTokens(2), 8);
  EXPECT_EQ(h.scheduler().num_preemptions(), 1);
  h.Run({
      {{}, {{2, 9, 1, true}}, {}, 0, 0, 4},
  });
}

TEST(SchedulerTest, SharedPrefixStartsFromTheCache) {
  Harness h(16, /*block_size=*/4, Options(4, 32));
  const std::vector<int32_t> prefix = Range(1, 8);
  h.Run({
      {{{1, Concat(prefix, {51, 52, 53}), 2}}, {{1, 0, 11, true}}, {}, 1, 0, 13},
      // 2 shares 1's two full prefix blocks and computes only its own two tokens. When 1
      // finishes, only its third block is released; the shared two stay with 2.
      {{{2, Concat(prefix, {61, 62}), 2}}, {{1, 11, 1, true}, {2, 8, 2, true}}, {}, 1, 0, 13},
  });
  EXPECT_EQ(h.scheduler().NumCachedTokens(2), 8);
  EXPECT_EQ(h.scheduler().NumComputedTokens(2), 10);
  EXPECT_EQ(h.blocks().prefix_cache_stats().hit_tokens, 8);
  h.Run({
      {{}, {{2, 10, 1, true}}, {}, 0, 0, 16},
  });
}

TEST(SchedulerTest, FinishFreesWaitingAndRunningSequences) {
  BlockAllocator blocks(8, 4);
  Scheduler s(&blocks, Options(/*max_num_seqs=*/1, /*max_num_batched_tokens=*/4));
  ASSERT_TRUE(s.Add(1, Range(1, 6)).ok());
  ASSERT_TRUE(s.Add(2, Range(101, 5)).ok());
  const SchedulerOutput out = s.Schedule();
  ASSERT_EQ(out.chunks.size(), 1u);
  EXPECT_EQ(out.chunks[0].seq_id, 1);
  EXPECT_EQ(out.chunks[0].num_tokens, 4);  // part-way through its prompt
  EXPECT_EQ(blocks.NumFreeBlocks(), 6);

  EXPECT_TRUE(s.Finish(2));
  EXPECT_FALSE(s.Contains(2));
  EXPECT_EQ(s.num_waiting(), 0);
  EXPECT_TRUE(s.Finish(1));
  EXPECT_FALSE(s.Contains(1));
  EXPECT_EQ(s.num_running(), 0);
  EXPECT_FALSE(s.HasWork());
  EXPECT_EQ(blocks.NumFreeBlocks(), 8);
  EXPECT_FALSE(blocks.HasSequence(1));
  const absl::Status invariants = blocks.CheckInvariants();
  EXPECT_TRUE(invariants.ok()) << invariants;

  EXPECT_FALSE(s.Finish(1));
  EXPECT_FALSE(s.Finish(99));
  EXPECT_TRUE(s.Schedule().chunks.empty());
}

TEST(SchedulerTest, AddComputedJoinsRunningAndDecodesNext) {
  BlockAllocator blocks(/*num_blocks=*/8, /*block_size=*/4);
  Scheduler s(&blocks, Options(4, 16));
  const std::vector<int32_t> prompt = Range(1, 6);
  // The KV of the prompt arrived from elsewhere into fresh blocks.
  ASSERT_TRUE(blocks.Allocate(7, prompt, /*use_prefix_cache=*/false).ok());
  ASSERT_TRUE(s.AddComputed(7, prompt, /*first_token=*/42).ok());
  EXPECT_EQ(s.State(7), SequenceState::kRunning);
  EXPECT_EQ(s.NumComputedTokens(7), 6);
  EXPECT_EQ(s.Tokens(7).back(), 42);
  const SchedulerOutput out = s.Schedule();
  ASSERT_EQ(out.chunks.size(), 1u);
  EXPECT_EQ(out.chunks[0].seq_id, 7);
  EXPECT_EQ(out.chunks[0].start_position, 6);  // the first token's KV, computed here
  EXPECT_EQ(out.chunks[0].num_tokens, 1);
  EXPECT_TRUE(out.chunks[0].wants_logits);
  // Its full block went to the prefix cache once computed.
  EXPECT_EQ(blocks.NumEvictableBlocks(), 0);
  EXPECT_TRUE(s.Finish(7));
  EXPECT_EQ(blocks.NumEvictableBlocks(), 1);

  EXPECT_EQ(s.AddComputed(8, prompt, 1).code(), absl::StatusCode::kInvalidArgument);  // no blocks
  ASSERT_TRUE(blocks.Allocate(8, Range(1, 3), false).ok());
  EXPECT_EQ(s.AddComputed(8, prompt, 1).code(), absl::StatusCode::kInvalidArgument);  // mismatch
  ASSERT_TRUE(s.Add(9, prompt).ok());
  EXPECT_EQ(s.AddComputed(9, prompt, 1).code(), absl::StatusCode::kAlreadyExists);
}

TEST(SchedulerTest, AddErrors) {
  BlockAllocator blocks(/*num_blocks=*/8, /*block_size=*/4);
  Scheduler s(&blocks, Options(1, 64, /*max_waiting=*/2));
  EXPECT_EQ(s.Add(1, {}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.Add(1, Range(1, 33)).code(), absl::StatusCode::kInvalidArgument);  // 9 blocks
  EXPECT_TRUE(s.Add(1, Range(1, 32)).ok());  // exactly the whole cache
  EXPECT_EQ(s.Add(1, Range(1, 4)).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(s.Add(2, Range(1, 4)).ok());
  EXPECT_EQ(s.Add(3, Range(1, 4)).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(s.Contains(3));

  ASSERT_EQ(s.Schedule().chunks.size(), 1u);  // admits 1: one seat left in the queue
  EXPECT_EQ(s.Add(1, Range(1, 4)).code(), absl::StatusCode::kAlreadyExists);  // while running
  EXPECT_TRUE(s.Add(3, Range(1, 4)).ok());
  EXPECT_TRUE(s.Finish(1));
  EXPECT_TRUE(s.Finish(2));
  EXPECT_TRUE(s.Add(1, Range(1, 4)).ok());  // a finished id may be reused
}

TEST(SchedulerDeathTest, AppendTokenRequiresARunningComputedSequence) {
  BlockAllocator blocks(8, 4);
  Scheduler s(&blocks, Options(1, 4));
  ASSERT_TRUE(s.Add(1, Range(1, 6)).ok());
  ASSERT_TRUE(s.Add(2, Range(101, 2)).ok());
  s.Schedule();  // 1 runs [0, 4); 2 waits for a seat
  EXPECT_DEATH(s.AppendToken(2, 7), "is waiting");
  EXPECT_DEATH(s.AppendToken(1, 7), "tokens left to compute");
}

// What the stress test knows about a live sequence, independently of the scheduler.
struct Model {
  std::vector<int32_t> tokens;
  int num_outputs = 0;
  int num_sampled = 0;
  int next_position = -1;  // where its next chunk starts; -1 until (re)admitted
};

TEST(SchedulerTest, RandomizedStress) {
  constexpr int kNumBlocks = 16;
  constexpr int kBlockSize = 4;
  constexpr int kArrivalSteps = 300;
  const SchedulerOptions options = Options(/*max_num_seqs=*/4, /*max_num_batched_tokens=*/16,
                                           /*max_waiting=*/6);
  BlockAllocator blocks(kNumBlocks, kBlockSize);
  Scheduler s(&blocks, options);
  std::mt19937 rng(12345);
  auto uniform = [&rng](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  // Shared prefixes and a tiny vocabulary, so that prefix-cache hits happen, also after
  // preemptions.
  const std::vector<std::vector<int32_t>> prefixes = {{}, Range(1, 8), Range(11, 8), Range(21, 4)};

  std::map<int64_t, Model> live;
  int64_t next_id = 0;
  int num_added = 0, num_finished = 0, num_aborted = 0;
  int step = 0;
  for (; step < 5000 && (step < kArrivalSteps || s.HasWork()); ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    if (step < kArrivalSteps && uniform(0, 9) < 4) {
      // At most 24 prompt tokens and 12 outputs: 9 blocks, so four sequences overflow 16 blocks.
      std::vector<int32_t> prompt = prefixes[uniform(0, 3)];
      for (int n = uniform(1, 16); n > 0; --n) prompt.push_back(uniform(100, 103));
      const bool queue_full = s.num_waiting() >= options.max_waiting;
      const absl::Status status = s.Add(next_id, prompt);
      if (queue_full) {
        EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
      } else {
        ASSERT_TRUE(status.ok()) << status;
        live[next_id] = Model{prompt, uniform(1, 12)};
        ++num_added;
      }
      ++next_id;
    }
    if (step < kArrivalSteps && !live.empty() && uniform(0, 29) == 0) {
      auto victim = std::next(live.begin(), uniform(0, static_cast<int>(live.size()) - 1));
      EXPECT_TRUE(s.Finish(victim->first));
      live.erase(victim);
      ++num_aborted;
    }

    const SchedulerOutput out = s.Schedule();
    for (int64_t seq_id : out.preempted) {
      ASSERT_TRUE(live.count(seq_id));
      EXPECT_EQ(s.State(seq_id), SequenceState::kWaiting);
      EXPECT_FALSE(blocks.HasSequence(seq_id));
      live[seq_id].next_position = -1;
    }
    int num_tokens = 0;
    int last_kind = 0;  // 0 decode, 1 prefill of a running sequence, 2 admitted this step
    std::map<int64_t, int> seen;
    for (const ScheduledChunk& c : out.chunks) {
      ASSERT_TRUE(live.count(c.seq_id));
      ASSERT_EQ(seen[c.seq_id]++, 0) << "sequence " << c.seq_id << " scheduled twice";
      Model& m = live[c.seq_id];
      const int size = static_cast<int>(m.tokens.size());
      EXPECT_EQ(s.Tokens(c.seq_id), m.tokens);  // outputs survive preemption
      EXPECT_EQ(s.State(c.seq_id), SequenceState::kRunning);
      ASSERT_GE(c.num_tokens, 1);
      ASSERT_LE(c.start_position + c.num_tokens, size);
      if (m.next_position >= 0) {
        EXPECT_EQ(c.start_position, m.next_position);
      } else {
        EXPECT_EQ(c.start_position % kBlockSize, 0);
      }
      const int kind = m.next_position < 0 ? 2 : (size - m.next_position == 1 ? 0 : 1);
      EXPECT_GE(kind, last_kind) << "chunk of sequence " << c.seq_id << " out of order";
      last_kind = kind;
      EXPECT_EQ(c.wants_logits, c.start_position + c.num_tokens == size);
      EXPECT_EQ(s.NumComputedTokens(c.seq_id), c.start_position + c.num_tokens);
      m.next_position = c.start_position + c.num_tokens;
      num_tokens += c.num_tokens;
    }
    EXPECT_EQ(out.num_batched_tokens, num_tokens);
    EXPECT_LE(num_tokens, options.max_num_batched_tokens);
    EXPECT_LE(s.num_running(), options.max_num_seqs);

    for (const ScheduledChunk& c : out.chunks) {
      if (!c.wants_logits) continue;
      Model& m = live[c.seq_id];
      if (++m.num_sampled == m.num_outputs) {
        EXPECT_TRUE(s.Finish(c.seq_id));
        live.erase(c.seq_id);
        ++num_finished;
      } else {
        const int32_t token = uniform(100, 103);
        s.AppendToken(c.seq_id, token);
        m.tokens.push_back(token);
      }
    }
    const absl::Status invariants = blocks.CheckInvariants();
    ASSERT_TRUE(invariants.ok()) << invariants;
    ASSERT_EQ(s.num_running() + s.num_waiting(), static_cast<int>(live.size()));
    for (const auto& [seq_id, m] : live) {
      EXPECT_EQ(blocks.HasSequence(seq_id), s.State(seq_id) == SequenceState::kRunning);
    }
  }

  EXPECT_FALSE(s.HasWork()) << "no progress after " << step << " steps";
  EXPECT_TRUE(live.empty());
  EXPECT_EQ(num_finished + num_aborted, num_added);
  EXPECT_EQ(blocks.NumFreeBlocks(), kNumBlocks);
  EXPECT_TRUE(blocks.CheckInvariants().ok());
  // The workload must actually exercise what it is meant to.
  EXPECT_GT(num_finished, 50);
  EXPECT_GT(num_aborted, 0);
  EXPECT_GT(s.num_preemptions(), 0);
  EXPECT_GT(blocks.prefix_cache_stats().hit_tokens, 0);
}

}  // namespace
}  // namespace shardserve
