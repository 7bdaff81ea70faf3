// Conversions between the wire's ShardAssignment / ParallelLayout / IndexRange
// (proto/shardserve/v1/cluster.proto) and model/shard_spec.h's ShardSpec, in both directions, so
// the planner (which writes assignments) and workers (which load the shard) agree by
// construction.
//
//   v1::ShardAssignment a = ShardSpecToProto(spec);
//   ShardSpec back = ShardSpecFromProto(a);  // back == spec, field by field
#ifndef SHARDSERVE_COORDINATOR_SHARD_ASSIGNMENT_H_
#define SHARDSERVE_COORDINATOR_SHARD_ASSIGNMENT_H_

#include "model/shard_spec.h"
#include "proto/shardserve/v1/cluster.pb.h"

namespace shardserve {

v1::IndexRange IndexRangeToProto(const IndexRange& range);
IndexRange IndexRangeFromProto(const v1::IndexRange& range);

v1::ParallelLayout LayoutToProto(const ParallelLayout& layout);
ParallelLayout LayoutFromProto(const v1::ParallelLayout& layout);

// Fills the layout, ranks and ranges of a ShardAssignment (worker id, group and role are the
// caller's to set).
v1::ShardAssignment ShardSpecToProto(const ShardSpec& spec);
ShardSpec ShardSpecFromProto(const v1::ShardAssignment& assignment);

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_SHARD_ASSIGNMENT_H_
