// Which part of a model one rank holds: its tensor-parallel slice of heads and MLP columns, its
// experts, its pipeline stage's layers, and its slice of the vocabulary.
//
// Tensor parallelism (Megatron): query heads are split by KV-head groups, so a rank holds whole
// groups (a KV head and the query heads that share it), as evenly as they go: SmolLM2-135M (3 KV
// heads, 9 query heads) over TP=2 gives ranks of 2 and 1 KV heads, 6 and 3 query heads. Dense MLP
// columns and vocabulary rows are split as evenly as they go. Experts are spread over the EP
// ranks (a rank computes its experts whole); with EP=1 every rank holds every expert's
// tensor-parallel slice of columns.
//
// Pipeline parallelism: layers are split into pp_size contiguous stages as evenly as they go.
#ifndef SHARDSERVE_MODEL_SHARD_SPEC_H_
#define SHARDSERVE_MODEL_SHARD_SPEC_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "model/model_config.h"

namespace shardserve {

// [begin, end) of some index.
struct IndexRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
  bool operator==(const IndexRange& o) const { return begin == o.begin && end == o.end; }
};

struct ParallelLayout {
  int tp_size = 1;  // tensor-parallel ranks per stage
  int pp_size = 1;  // pipeline stages
  int ep_size = 1;  // ranks experts are spread over: 1, or tp_size (experts over the TP ranks)
  // Expert-parallel MoE layers use all-to-all dispatch/combine instead of an all-reduce
  // (MoeCombine in model/decoder.h). REQUIRES: ep_size == tp_size > 1 when set.
  bool moe_all_to_all = false;
};

struct ShardSpec {
  ParallelLayout layout;
  int tp_rank = 0;
  int pp_rank = 0;

  IndexRange kv_heads;        // of num_kv_heads
  IndexRange q_heads;         // of num_heads: the query heads of kv_heads' groups
  IndexRange mlp_columns;     // of intermediate_size (dense MLP)
  IndexRange experts;         // of num_experts held whole (EP); all experts when ep_size == 1
  IndexRange expert_columns;  // of moe_intermediate_size: whole under EP, a TP slice otherwise
  IndexRange shared_expert_columns;  // of shared_expert_intermediate_size (TP slice)
  IndexRange layers;                 // of num_layers: this stage's layers
  IndexRange vocab;  // of vocab_size: rows of the embedding and LM head this rank holds

  bool first_stage() const { return pp_rank == 0; }
  bool last_stage() const { return pp_rank == layout.pp_size - 1; }
  // The rank in a group of tp_size * pp_size ranks, stage-major.
  int group_rank() const { return pp_rank * layout.tp_size + tp_rank; }
  std::string DebugString() const;
};

// Checks that `layout` can shard `config` (enough KV heads, experts and layers for the ranks;
// EP equal to 1 or to TP) with a message naming the constraint.
absl::Status ValidateLayout(const ModelConfig& config, const ParallelLayout& layout);

// The shard of rank (tp_rank, pp_rank). REQUIRES: ValidateLayout(config, layout).ok().
absl::StatusOr<ShardSpec> MakeShardSpec(const ModelConfig& config, const ParallelLayout& layout,
                                        int tp_rank, int pp_rank);

// Splits [0, n) into `parts` contiguous ranges whose sizes differ by at most one (larger first);
// returns range `idx`.
IndexRange EvenSplit(int64_t n, int parts, int idx);

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_SHARD_SPEC_H_
