// Continuous batching for one engine group's leader: which sequences run in the next step and
// how many of their tokens. Pure CPU bookkeeping over a BlockAllocator; no tensors.
//
// Each step has a token budget (max_num_batched_tokens). Running sequences that are decoding
// come first (one token each), then running sequences part-way through their prompt, then
// waiting sequences in arrival order (chunked prefill: a prompt longer than the remaining budget
// is split over several steps). A sequence enters the running set only when its blocks can be
// allocated (prefix-cache hits count); when a decoding sequence needs a new block and none is
// free, the most recently admitted running sequence is preempted: its blocks are freed and it
// goes back to the front of the waiting queue, to be recomputed (prompt and output so far) when
// blocks free up again. A step that preempts admits no one, so a sequence is never both
// preempted and scheduled in the same step.
//
//   Scheduler sched(&blocks, SchedulerOptions{});
//   RETURN_IF_ERROR(sched.Add(seq_id, prompt));
//   while (sched.HasWork()) {
//     SchedulerOutput out = sched.Schedule();
//     ...run the step; for each chunk with wants_logits, sample a token...
//     sched.AppendToken(chunk.seq_id, token);   // or sched.Finish(chunk.seq_id) when done
//   }
//
// Lifecycle of a sequence (asserted on every change):
//   Add -> kWaiting -> (Schedule admits) kRunning -> (preempted) kWaiting -> ... -> Finish.
// Finish may be called in any state (it is also the abort path) and forgets the sequence.
//
// Thread-compatible: one scheduler thread owns it (and the BlockAllocator).
#ifndef SHARDSERVE_WORKER_SCHEDULER_H_
#define SHARDSERVE_WORKER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "worker/block_allocator.h"

namespace shardserve {

struct SchedulerOptions {
  int max_num_seqs = 64;             // running sequences at most
  int max_num_batched_tokens = 512;  // tokens per step (decode tokens plus prefill chunks)
  int max_waiting = 256;             // Add refuses beyond this many waiting sequences
};

enum class SequenceState { kWaiting, kRunning };

// Part of one sequence in a step: its tokens [start_position, start_position + num_tokens).
struct ScheduledChunk {
  int64_t seq_id = 0;
  int32_t start_position = 0;
  int32_t num_tokens = 0;
  // The chunk ends at the sequence's last token, so its logits are sampled after the step.
  bool wants_logits = false;
};

struct SchedulerOutput {
  // Decode chunks first (in running order), then prefill chunks. Every chunk's KV slots are
  // reserved in the BlockAllocator and MarkComputed has been called for them.
  std::vector<ScheduledChunk> chunks;
  // Sequences preempted during this Schedule call (now waiting, blocks freed).
  std::vector<int64_t> preempted;
  int32_t num_batched_tokens = 0;
};

class Scheduler {
 public:
  // REQUIRES: blocks outlives the scheduler and no one else allocates from it.
  Scheduler(BlockAllocator* blocks, const SchedulerOptions& options);

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a new sequence with its prompt. RESOURCE_EXHAUSTED when max_waiting sequences are
  // already waiting; ALREADY_EXISTS for a known id; INVALID_ARGUMENT for an empty prompt or one
  // that needs more blocks than the whole cache has.
  absl::Status Add(int64_t seq_id, std::vector<int32_t> prompt);

  // Adds a sequence whose prompt's KV is already in its blocks (computed elsewhere: a prefill
  // group sent it), running, with `first_token` appended as if sampled after its prompt. The
  // next Schedule decodes it. Counts towards max_num_seqs like any running sequence; the caller
  // checks room first (num_running()). INVALID_ARGUMENT unless the BlockAllocator holds the
  // sequence with exactly the prompt's tokens; ALREADY_EXISTS for a known id. After a later
  // preemption it is recomputed here like any other sequence.
  absl::Status AddComputed(int64_t seq_id, std::vector<int32_t> prompt, int32_t first_token);

  // Decides the next step (see the file comment). Returns no chunks when nothing can run.
  SchedulerOutput Schedule();

  // Appends a sampled token to a running sequence whose last chunk wanted logits; the next
  // Schedule reserves its KV slot and runs it. REQUIRES: the sequence is running with all its
  // tokens computed, and its tokens still fit the whole cache afterwards (a longer one could
  // never be readmitted after a preemption): callers cap prompt plus output length.
  void AppendToken(int64_t seq_id, int32_t token_id);

  // Forgets a sequence in any state and frees its blocks (finish, abort, error). Returns false
  // for an unknown id.
  bool Finish(int64_t seq_id);

  bool HasWork() const { return !running_.empty() || !waiting_.empty(); }
  bool Contains(int64_t seq_id) const { return seqs_.contains(seq_id); }
  // REQUIRES for the accessors below: Contains(seq_id).
  SequenceState State(int64_t seq_id) const;
  // Prompt then output tokens.
  const std::vector<int32_t>& Tokens(int64_t seq_id) const;
  int32_t NumPromptTokens(int64_t seq_id) const;
  // Tokens whose KV is computed (or scheduled to be in the step just returned).
  int32_t NumComputedTokens(int64_t seq_id) const;
  // Prompt tokens that came from the prefix cache when the sequence was last admitted.
  int32_t NumCachedTokens(int64_t seq_id) const;

  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int64_t num_preemptions() const { return num_preemptions_; }
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Sequence {
    SequenceState state = SequenceState::kWaiting;
    std::vector<int32_t> tokens;  // prompt then output
    int32_t num_prompt_tokens = 0;
    int32_t num_computed_tokens = 0;
    int32_t num_cached_tokens = 0;
    // Tokens covered by KV slots in the BlockAllocator (allocated or appended).
    int32_t num_reserved_tokens = 0;

    int32_t num_tokens() const { return static_cast<int32_t>(tokens.size()); }
  };

  const Sequence& GetSequence(int64_t seq_id) const;
  Sequence& GetSequence(int64_t seq_id);
  void SetState(int64_t seq_id, Sequence& seq, SequenceState next);
  // Gives running sequences their chunks: decodes first, then prefill chunks.
  void ScheduleRunning(int32_t* budget, SchedulerOutput* out);
  // Admits waiting sequences in order while blocks, the budget and max_num_seqs allow.
  void AdmitWaiting(int32_t* budget, SchedulerOutput* out);
  // Reserves KV slots for all of seq's tokens, preempting from the back of running_ as needed.
  // Returns false when seq itself had to be preempted.
  bool ReserveSlots(int64_t seq_id, Sequence& seq, SchedulerOutput* out);
  // Schedules seq's next num_tokens tokens and marks them computed.
  void EmitChunk(int64_t seq_id, Sequence& seq, int32_t num_tokens, SchedulerOutput* out);
  // Frees the blocks of the most recently admitted running sequence and moves it to the front
  // of the waiting queue. Returns its id.
  int64_t PreemptLast();

  BlockAllocator* const blocks_;
  const SchedulerOptions options_;
  absl::flat_hash_map<int64_t, Sequence> seqs_;
  std::vector<int64_t> running_;  // admission order
  std::deque<int64_t> waiting_;   // arrival order; preempted ones at the front
  int64_t num_preemptions_ = 0;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_SCHEDULER_H_
