// One step of an engine group, as the leader decides it and every rank executes it: the packed
// inputs of Decoder::Forward (model/forward_batch.h) plus a command. The leader serialises a
// plan and broadcasts it over the group's control communicator; each follower parses it and
// runs the same Forward (SPMD).
//
//   StepPlan plan;  // leader: filled from the BlockAllocator's tables
//   std::string bytes = SerializeStepPlan(plan);
//   ...broadcast bytes...
//   ASSIGN_OR_RETURN(StepPlan got, ParseStepPlan(bytes, limits));  // follower
//   RETURN_IF_ERROR(decoder->Forward(ctx, got.AsForwardBatch(), kv, nullptr));
//
// Wire format (every rank of a group runs the same build on the same byte order, so arrays are
// copied as host-endian integers): u32 magic "SSP1", u32 command, then nine arrays in field
// order, each a u32 element count followed by its elements, then kv_work as a u32 byte count and
// its bytes. ParseStepPlan checks everything a
// follower relies on (array lengths agree, CSR pointers are monotone, every block id and slot
// lies inside the cache), so a corrupted or mismatched plan is an error, never an out-of-bounds
// write into the KV cache.
#ifndef SHARDSERVE_WORKER_STEP_PLAN_H_
#define SHARDSERVE_WORKER_STEP_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "model/forward_batch.h"
#include "worker/block_allocator.h"

namespace shardserve {

struct StepPlan {
  enum class Command : uint32_t {
    kRun = 1,   // run Decoder::Forward on the batch below
    kStop = 2,  // leave the follower loop (the group shuts down)
    kPing = 3,  // nothing to run; keeps idle followers' waits from timing out
  };

  Command command = Command::kRun;
  std::vector<int32_t> token_ids;     // [num_tokens]
  std::vector<int32_t> positions;     // [num_tokens]
  std::vector<int64_t> slot_mapping;  // [num_tokens] KV slot each token writes
  std::vector<int32_t> qo_indptr;     // [num_seqs + 1] CSR over the token rows
  std::vector<int32_t> kv_indptr;     // [num_seqs + 1] CSR over kv_indices
  std::vector<int32_t> kv_indices;    // [sum of blocks] block ids of each sequence, in order
  std::vector<int32_t> kv_lens;       // [num_seqs] tokens of KV each sequence attends over
  std::vector<int32_t> logits_rows;   // [num_outputs] token rows whose logits are wanted
  // KV transfer work of disaggregated serving that every rank does with this step: a serialised
  // v1::StepKvWork (worker.proto), empty when there is none. A RUN plan may carry only this
  // (no tokens, no sequences): then no forward pass runs.
  std::string kv_work;

  // Views into this plan's arrays; valid while the plan is alive and unchanged.
  ForwardBatch AsForwardBatch() const;
};

// Fills `plan` with a RUN step of one sequence: `tokens` appended to sequence `seq_id` at
// `start_position`, its KV slots and blocks from `blocks`, the last token's logits wanted.
// REQUIRES: the tokens are already appended to the sequence in `blocks`.
void PlanSequenceStep(const BlockAllocator& blocks, int64_t seq_id,
                      absl::Span<const int32_t> tokens, int64_t start_position, StepPlan* plan);

// The KV cache a plan must stay within.
struct StepPlanLimits {
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t vocab_size = 0;
};

std::string SerializeStepPlan(const StepPlan& plan);

// INVALID_ARGUMENT naming the first problem for truncated bytes, a bad magic or command, or a
// batch that is inconsistent or outside `limits`.
absl::StatusOr<StepPlan> ParseStepPlan(absl::string_view bytes, const StepPlanLimits& limits);

// The checks ParseStepPlan applies, for plans built in process.
absl::Status ValidateStepPlan(const StepPlan& plan, const StepPlanLimits& limits);

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_STEP_PLAN_H_
