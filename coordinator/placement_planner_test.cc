#include "coordinator/placement_planner.h"

#include <string>
#include <vector>

#include "coordinator/shard_assignment.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

ModelConfig SmolLm2() {
  ModelConfig c;
  c.arch_name = "llama";
  c.num_layers = 30;
  c.hidden_size = 576;
  c.num_heads = 9;
  c.num_kv_heads = 3;
  c.head_dim = 64;
  c.intermediate_size = 1536;
  c.vocab_size = 49152;
  return c;
}

// A small Qwen2-MoE-like model: 8 routed experts and a shared expert.
ModelConfig TinyMoe() {
  ModelConfig c;
  c.arch = Architecture::kQwen2Moe;
  c.arch_name = "qwen2moe";
  c.num_layers = 4;
  c.hidden_size = 64;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 1000;
  c.num_experts = 8;
  c.num_experts_per_tok = 2;
  c.moe_intermediate_size = 128;
  c.shared_expert_intermediate_size = 256;
  return c;
}

v1::WorkerInfo Worker(const std::string& id, v1::PoolRole role = v1::POOL_ROLE_BOTH,
                      const std::string& device = "cpu",
                      const std::string& fingerprint = "f00dfeed") {
  v1::WorkerInfo w;
  w.set_worker_id(id);
  w.set_host("127.0.0.1");
  w.set_role(role);
  w.set_device(device);
  w.set_model_path("/models/m.gguf");
  w.set_model_fingerprint(fingerprint);
  return w;
}

std::vector<v1::WorkerInfo> Workers(int n, v1::PoolRole role = v1::POOL_ROLE_BOTH) {
  std::vector<v1::WorkerInfo> workers;
  for (int i = 0; i < n; ++i) workers.push_back(Worker("w" + std::to_string(i), role));
  return workers;
}

ClusterLayout BothLayout(int tp, int pp, int ep = 1, int num_groups = 1) {
  ClusterLayout layout;
  layout.both.num_groups = num_groups;
  layout.both.layout.tp_size = tp;
  layout.both.layout.pp_size = pp;
  layout.both.layout.ep_size = ep;
  return layout;
}

struct R {
  int64_t begin, end;
};

void ExpectRange(const v1::IndexRange& got, R want, const std::string& what) {
  EXPECT_EQ(got.begin(), want.begin) << what;
  EXPECT_EQ(got.end(), want.end) << what;
}

// One rank of a dense plan.
struct DenseRow {
  int tp, pp;  // layout
  int rank;    // group rank
  int tp_rank, pp_rank;
  R layers, q_heads, kv_heads, mlp_columns, vocab;
};

TEST(PlacementPlannerTest, SmolLm2DenseLayouts) {
  const DenseRow rows[] = {
      {1, 1, 0, 0, 0, {0, 30}, {0, 9}, {0, 3}, {0, 1536}, {0, 49152}},
      {2, 1, 0, 0, 0, {0, 30}, {0, 6}, {0, 2}, {0, 768}, {0, 24576}},
      {2, 1, 1, 1, 0, {0, 30}, {6, 9}, {2, 3}, {768, 1536}, {24576, 49152}},
      {3, 1, 0, 0, 0, {0, 30}, {0, 3}, {0, 1}, {0, 512}, {0, 16384}},
      {3, 1, 1, 1, 0, {0, 30}, {3, 6}, {1, 2}, {512, 1024}, {16384, 32768}},
      {3, 1, 2, 2, 0, {0, 30}, {6, 9}, {2, 3}, {1024, 1536}, {32768, 49152}},
      {1, 2, 0, 0, 0, {0, 15}, {0, 9}, {0, 3}, {0, 1536}, {0, 49152}},
      {1, 2, 1, 0, 1, {15, 30}, {0, 9}, {0, 3}, {0, 1536}, {0, 49152}},
      {2, 2, 0, 0, 0, {0, 15}, {0, 6}, {0, 2}, {0, 768}, {0, 24576}},
      {2, 2, 1, 1, 0, {0, 15}, {6, 9}, {2, 3}, {768, 1536}, {24576, 49152}},
      {2, 2, 2, 0, 1, {15, 30}, {0, 6}, {0, 2}, {0, 768}, {0, 24576}},
      {2, 2, 3, 1, 1, {15, 30}, {6, 9}, {2, 3}, {768, 1536}, {24576, 49152}},
  };
  for (const DenseRow& row : rows) {
    const std::string what = "tp=" + std::to_string(row.tp) + " pp=" + std::to_string(row.pp) +
                             " rank " + std::to_string(row.rank);
    absl::StatusOr<PlacementPlanner> planner =
        PlacementPlanner::Create(SmolLm2(), BothLayout(row.tp, row.pp));
    ASSERT_TRUE(planner.ok()) << what << ": " << planner.status();
    absl::StatusOr<v1::PlacementPlan> plan = planner->Plan(Workers(row.tp * row.pp), 1);
    ASSERT_TRUE(plan.ok()) << what << ": " << plan.status();
    ASSERT_EQ(plan->groups_size(), 1) << what;
    const v1::EngineGroup& group = plan->groups(0);
    ASSERT_EQ(group.shards_size(), row.tp * row.pp) << what;
    ASSERT_EQ(group.worker_ids_size(), row.tp * row.pp) << what;
    const v1::ShardAssignment& s = group.shards(row.rank);
    // Workers fill ranks in registration order.
    EXPECT_EQ(s.worker_id(), "w" + std::to_string(row.rank)) << what;
    EXPECT_EQ(group.worker_ids(row.rank), s.worker_id()) << what;
    EXPECT_EQ(s.group_rank(), row.rank) << what;
    EXPECT_EQ(s.tp_rank(), row.tp_rank) << what;
    EXPECT_EQ(s.pp_rank(), row.pp_rank) << what;
    EXPECT_EQ(s.role(), v1::POOL_ROLE_BOTH) << what;
    EXPECT_EQ(s.layout().tp_size(), row.tp) << what;
    ExpectRange(s.layers(), row.layers, what + " layers");
    ExpectRange(s.q_heads(), row.q_heads, what + " q_heads");
    ExpectRange(s.kv_heads(), row.kv_heads, what + " kv_heads");
    ExpectRange(s.mlp_columns(), row.mlp_columns, what + " mlp_columns");
    ExpectRange(s.vocab(), row.vocab, what + " vocab");
    EXPECT_TRUE(plan->spare_worker_ids().empty()) << what;
  }
}

struct MoeRow {
  int tp, ep, rank;
  R experts, expert_columns, shared_expert_columns;
};

TEST(PlacementPlannerTest, MoeExpertParallel) {
  const MoeRow rows[] = {
      // EP=2: whole experts, split over the two ranks.
      {2, 2, 0, {0, 4}, {0, 128}, {0, 128}},
      {2, 2, 1, {4, 8}, {0, 128}, {128, 256}},
      // EP=1: every rank holds a TP slice of every expert.
      {2, 1, 0, {0, 8}, {0, 64}, {0, 128}},
      {2, 1, 1, {0, 8}, {64, 128}, {128, 256}},
  };
  for (const MoeRow& row : rows) {
    const std::string what = "tp=" + std::to_string(row.tp) + " ep=" + std::to_string(row.ep) +
                             " rank " + std::to_string(row.rank);
    absl::StatusOr<PlacementPlanner> planner =
        PlacementPlanner::Create(TinyMoe(), BothLayout(row.tp, 1, row.ep));
    ASSERT_TRUE(planner.ok()) << what << ": " << planner.status();
    absl::StatusOr<v1::PlacementPlan> plan = planner->Plan(Workers(row.tp), 1);
    ASSERT_TRUE(plan.ok()) << what << ": " << plan.status();
    const v1::ShardAssignment& s = plan->groups(0).shards(row.rank);
    EXPECT_EQ(s.layout().ep_size(), row.ep) << what;
    ExpectRange(s.experts(), row.experts, what + " experts");
    ExpectRange(s.expert_columns(), row.expert_columns, what + " expert_columns");
    ExpectRange(s.shared_expert_columns(), row.shared_expert_columns, what + " shared");
    ExpectRange(s.kv_heads(), {row.rank, row.rank + 1}, what + " kv_heads");
    EXPECT_EQ(plan->model().num_experts(), 8);
  }
}

TEST(PlacementPlannerTest, DisaggregatedPoolsTakeTheirOwnWorkersInOrder) {
  ClusterLayout layout;
  layout.prefill.num_groups = 2;
  layout.prefill.layout.tp_size = 1;
  layout.decode.num_groups = 1;
  layout.decode.layout.tp_size = 2;
  absl::StatusOr<PlacementPlanner> planner = PlacementPlanner::Create(SmolLm2(), layout);
  ASSERT_TRUE(planner.ok()) << planner.status();
  EXPECT_EQ(planner->TotalWorkersNeeded(), 4);
  EXPECT_EQ(planner->WorkersNeeded(v1::POOL_ROLE_DECODE), 2);
  // Registration order interleaves the pools; one prefill worker too many.
  std::vector<v1::WorkerInfo> workers = {
      Worker("d0", v1::POOL_ROLE_DECODE), Worker("p0", v1::POOL_ROLE_PREFILL),
      Worker("p1", v1::POOL_ROLE_PREFILL), Worker("d1", v1::POOL_ROLE_DECODE),
      Worker("p2", v1::POOL_ROLE_PREFILL)};
  absl::StatusOr<v1::PlacementPlan> plan = planner->Plan(workers, 7);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->groups_size(), 3);
  EXPECT_EQ(plan->epoch(), 7);
  const struct {
    int id;
    v1::PoolRole role;
    std::vector<std::string> workers;
  } want[] = {{0, v1::POOL_ROLE_PREFILL, {"p0"}},
              {1, v1::POOL_ROLE_PREFILL, {"p1"}},
              {2, v1::POOL_ROLE_DECODE, {"d0", "d1"}}};
  for (int g = 0; g < 3; ++g) {
    const v1::EngineGroup& group = plan->groups(g);
    EXPECT_EQ(group.id(), want[g].id);
    EXPECT_EQ(group.role(), want[g].role);
    EXPECT_EQ(std::vector<std::string>(group.worker_ids().begin(), group.worker_ids().end()),
              want[g].workers);
    EXPECT_EQ(group.rendezvous_prefix(), "plan/7/group/" + std::to_string(g) + "/");
    EXPECT_FALSE(group.ready());
    for (const v1::ShardAssignment& s : group.shards()) EXPECT_EQ(s.group_id(), g);
  }
  ASSERT_EQ(plan->spare_worker_ids_size(), 1);
  EXPECT_EQ(plan->spare_worker_ids(0), "p2");
  EXPECT_EQ(plan->model().model_fingerprint(), "f00dfeed");
}

TEST(PlacementPlannerTest, PlanIsPure) {
  absl::StatusOr<PlacementPlanner> planner = PlacementPlanner::Create(SmolLm2(), BothLayout(2, 2));
  ASSERT_TRUE(planner.ok());
  absl::StatusOr<v1::PlacementPlan> a = planner->Plan(Workers(5), 3);
  absl::StatusOr<v1::PlacementPlan> b = planner->Plan(Workers(5), 3);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->SerializeAsString(), b->SerializeAsString());
}

// A refusal: how to get it and what the message must say.
struct RefusalRow {
  std::string name;
  ModelConfig config;
  ClusterLayout layout;
  std::vector<v1::WorkerInfo> workers;
  absl::StatusCode code;
  std::string message_part;
};

TEST(PlacementPlannerTest, Refusals) {
  ClusterLayout decode_2x2;
  decode_2x2.decode.num_groups = 1;
  decode_2x2.decode.layout.tp_size = 2;
  decode_2x2.decode.layout.pp_size = 2;
  ClusterLayout cuda_pool = BothLayout(2, 1);
  cuda_pool.both.device_kind = "cuda";
  ClusterLayout bad_kind = BothLayout(1, 1);
  bad_kind.both.device_kind = "tpu";

  const std::vector<RefusalRow> rows = {
      {"too few workers", SmolLm2(), decode_2x2, Workers(3, v1::POOL_ROLE_DECODE),
       absl::StatusCode::kFailedPrecondition,
       "need 4 workers for 1 decode group of tp=2 x pp=2, have 3"},
      {"workers of another pool do not count", SmolLm2(), decode_2x2,
       Workers(4, v1::POOL_ROLE_PREFILL), absl::StatusCode::kFailedPrecondition, "have 0"},
      {"no workers",
       SmolLm2(),
       BothLayout(1, 1),
       {},
       absl::StatusCode::kFailedPrecondition,
       "no workers registered"},
      {"mismatched fingerprints",
       SmolLm2(),
       BothLayout(2, 1),
       {Worker("w0"), Worker("w1", v1::POOL_ROLE_BOTH, "cpu", "0badf00d")},
       absl::StatusCode::kFailedPrecondition,
       "different models"},
      {"missing fingerprint",
       SmolLm2(),
       BothLayout(1, 1),
       {Worker("w0", v1::POOL_ROLE_BOTH, "cpu", "")},
       absl::StatusCode::kInvalidArgument,
       "no model fingerprint"},
      {"tp over kv heads", SmolLm2(), BothLayout(4, 1), Workers(4),
       absl::StatusCode::kInvalidArgument, "both pool layout tp=4 x pp=1: tp_size 4 exceeds"},
      {"ep neither 1 nor tp", TinyMoe(), BothLayout(1, 1, 2), Workers(2),
       absl::StatusCode::kInvalidArgument, "ep_size 2 must be 1 or equal to tp_size 1"},
      {"pp over layers", TinyMoe(), BothLayout(1, 5), Workers(5),
       absl::StatusCode::kInvalidArgument, "pp_size 5 exceeds num_layers 4"},
      {"no groups", SmolLm2(), ClusterLayout(), Workers(1), absl::StatusCode::kInvalidArgument,
       "no engine groups"},
      {"unknown pool device kind", SmolLm2(), bad_kind, Workers(1),
       absl::StatusCode::kInvalidArgument, "'tpu'"},
      {"worker on the wrong device",
       SmolLm2(),
       cuda_pool,
       {Worker("w0", v1::POOL_ROLE_BOTH, "cuda:0"), Worker("w1", v1::POOL_ROLE_BOTH, "cpu")},
       absl::StatusCode::kFailedPrecondition,
       "both pool runs on cuda but worker w1 has device cpu"},
      {"group mixing devices",
       SmolLm2(),
       BothLayout(2, 1),
       {Worker("w0", v1::POOL_ROLE_BOTH, "cpu"), Worker("w1", v1::POOL_ROLE_BOTH, "cuda:1")},
       absl::StatusCode::kFailedPrecondition,
       "would mix devices"},
      {"malformed device",
       SmolLm2(),
       BothLayout(1, 1),
       {Worker("w0", v1::POOL_ROLE_BOTH, "cuda:x")},
       absl::StatusCode::kInvalidArgument,
       "expected \"cpu\" or \"cuda:N\""},
      {"duplicate worker id",
       SmolLm2(),
       BothLayout(2, 1),
       {Worker("w0"), Worker("w0")},
       absl::StatusCode::kInvalidArgument,
       "registered twice"},
      {"no pool role",
       SmolLm2(),
       BothLayout(1, 1),
       {Worker("w0", v1::POOL_ROLE_UNSPECIFIED)},
       absl::StatusCode::kInvalidArgument,
       "names no pool role"},
  };
  for (const RefusalRow& row : rows) {
    absl::Status status;
    absl::StatusOr<PlacementPlanner> planner = PlacementPlanner::Create(row.config, row.layout);
    if (!planner.ok()) {
      status = planner.status();
    } else {
      status = planner->Plan(row.workers, 1).status();
    }
    EXPECT_EQ(status.code(), row.code) << row.name << ": " << status;
    EXPECT_NE(status.message().find(row.message_part), std::string::npos)
        << row.name << ": " << status;
  }
}

TEST(PlacementPlannerTest, RenderShowsEveryRank) {
  absl::StatusOr<PlacementPlanner> planner = PlacementPlanner::Create(SmolLm2(), BothLayout(2, 1));
  ASSERT_TRUE(planner.ok());
  absl::StatusOr<v1::PlacementPlan> plan = planner->Plan(Workers(3), 2);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(PlacementPlanner::Render(*plan),
            "plan epoch 2: llama, 30 layers, hidden 576, 9 heads / 3 kv heads, mlp 1536, vocab "
            "49152, fingerprint f00dfeed\n"
            "group 0 both tp=2 pp=1 ep=1: 2 workers, not ready\n"
            "  rank 0 w0 tp0 pp0: layers [0,30) q_heads [0,6) kv_heads [0,2) mlp_columns "
            "[0,768) vocab [0,24576)\n"
            "  rank 1 w1 tp1 pp0: layers [0,30) q_heads [6,9) kv_heads [2,3) mlp_columns "
            "[768,1536) vocab [24576,49152)\n"
            "spare: w2\n");
}

TEST(PlacementPlannerTest, RenderMoe) {
  absl::StatusOr<PlacementPlanner> planner =
      PlacementPlanner::Create(TinyMoe(), BothLayout(2, 1, 2));
  ASSERT_TRUE(planner.ok());
  absl::StatusOr<v1::PlacementPlan> plan = planner->Plan(Workers(2), 1);
  ASSERT_TRUE(plan.ok());
  const std::string text = PlacementPlanner::Render(*plan);
  EXPECT_NE(text.find("8 experts (top 2, width 128)"), std::string::npos) << text;
  EXPECT_NE(text.find("  rank 1 w1 tp1 pp0: layers [0,4) q_heads [2,4) kv_heads [1,2) experts "
                      "[4,8) expert_columns [0,128) shared_expert_columns [128,256) vocab "
                      "[500,1000)\n"),
            std::string::npos)
      << text;
}

TEST(ShardAssignmentTest, RoundTripsThroughProto) {
  absl::StatusOr<ShardSpec> spec = MakeShardSpec(TinyMoe(), ParallelLayout{2, 2, 2}, 1, 1);
  ASSERT_TRUE(spec.ok()) << spec.status();
  v1::ShardAssignment proto = ShardSpecToProto(*spec);
  EXPECT_EQ(proto.group_rank(), 3);
  ShardSpec back = ShardSpecFromProto(proto);
  EXPECT_EQ(back.DebugString(), spec->DebugString());
  EXPECT_EQ(back.experts, spec->experts);
  EXPECT_EQ(back.layers, spec->layers);
}

}  // namespace
}  // namespace shardserve
