#include "coordinator/shard_assignment.h"

namespace shardserve {

v1::IndexRange IndexRangeToProto(const IndexRange& range) {
  v1::IndexRange out;
  out.set_begin(range.begin);
  out.set_end(range.end);
  return out;
}

IndexRange IndexRangeFromProto(const v1::IndexRange& range) {
  IndexRange out;
  out.begin = range.begin();
  out.end = range.end();
  return out;
}

v1::ParallelLayout LayoutToProto(const ParallelLayout& layout) {
  v1::ParallelLayout out;
  out.set_tp_size(layout.tp_size);
  out.set_pp_size(layout.pp_size);
  out.set_ep_size(layout.ep_size);
  out.set_moe_all_to_all(layout.moe_all_to_all);
  return out;
}

ParallelLayout LayoutFromProto(const v1::ParallelLayout& layout) {
  ParallelLayout out;
  out.tp_size = layout.tp_size();
  out.pp_size = layout.pp_size();
  out.ep_size = layout.ep_size();
  out.moe_all_to_all = layout.moe_all_to_all();
  return out;
}

v1::ShardAssignment ShardSpecToProto(const ShardSpec& spec) {
  v1::ShardAssignment out;
  *out.mutable_layout() = LayoutToProto(spec.layout);
  out.set_tp_rank(spec.tp_rank);
  out.set_pp_rank(spec.pp_rank);
  out.set_group_rank(spec.group_rank());
  *out.mutable_kv_heads() = IndexRangeToProto(spec.kv_heads);
  *out.mutable_q_heads() = IndexRangeToProto(spec.q_heads);
  *out.mutable_mlp_columns() = IndexRangeToProto(spec.mlp_columns);
  *out.mutable_experts() = IndexRangeToProto(spec.experts);
  *out.mutable_expert_columns() = IndexRangeToProto(spec.expert_columns);
  *out.mutable_shared_expert_columns() = IndexRangeToProto(spec.shared_expert_columns);
  *out.mutable_layers() = IndexRangeToProto(spec.layers);
  *out.mutable_vocab() = IndexRangeToProto(spec.vocab);
  return out;
}

ShardSpec ShardSpecFromProto(const v1::ShardAssignment& assignment) {
  ShardSpec out;
  out.layout = LayoutFromProto(assignment.layout());
  out.tp_rank = assignment.tp_rank();
  out.pp_rank = assignment.pp_rank();
  out.kv_heads = IndexRangeFromProto(assignment.kv_heads());
  out.q_heads = IndexRangeFromProto(assignment.q_heads());
  out.mlp_columns = IndexRangeFromProto(assignment.mlp_columns());
  out.experts = IndexRangeFromProto(assignment.experts());
  out.expert_columns = IndexRangeFromProto(assignment.expert_columns());
  out.shared_expert_columns = IndexRangeFromProto(assignment.shared_expert_columns());
  out.layers = IndexRangeFromProto(assignment.layers());
  out.vocab = IndexRangeFromProto(assignment.vocab());
  return out;
}

}  // namespace shardserve
