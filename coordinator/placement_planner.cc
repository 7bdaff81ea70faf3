#include "coordinator/placement_planner.h"

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "coordinator/shard_assignment.h"

namespace shardserve {

namespace {

constexpr v1::PoolRole kPoolOrder[] = {v1::POOL_ROLE_PREFILL, v1::POOL_ROLE_DECODE,
                                       v1::POOL_ROLE_BOTH};

std::string PoolName(v1::PoolRole role) {
  switch (role) {
    case v1::POOL_ROLE_PREFILL:
      return "prefill";
    case v1::POOL_ROLE_DECODE:
      return "decode";
    case v1::POOL_ROLE_BOTH:
      return "both";
    default:
      return "unspecified";
  }
}

std::string LayoutName(const ParallelLayout& layout) {
  std::string name = absl::StrCat("tp=", layout.tp_size, " x pp=", layout.pp_size);
  if (layout.ep_size > 1) absl::StrAppend(&name, " (ep=", layout.ep_size, ")");
  return name;
}

// "cpu" for "cpu"; "cuda" for "cuda:N". Anything else is a malformed registration.
absl::StatusOr<std::string> DeviceKind(const v1::WorkerInfo& worker) {
  const std::string& device = worker.device();
  if (device == "cpu") return std::string("cpu");
  int index = 0;
  if (absl::StartsWith(device, "cuda:") && absl::SimpleAtoi(device.substr(5), &index) &&
      index >= 0) {
    return std::string("cuda");
  }
  return absl::InvalidArgumentError(absl::StrCat("worker ", worker.worker_id(), " has device '",
                                                 device, "'; expected \"cpu\" or \"cuda:N\""));
}

std::string Range(const v1::IndexRange& r) {
  return absl::StrCat("[", r.begin(), ",", r.end(), ")");
}

v1::ModelSummary Summarize(const ModelConfig& config, const std::string& fingerprint) {
  v1::ModelSummary s;
  s.set_arch(config.arch_name);
  s.set_model_fingerprint(fingerprint);
  s.set_num_layers(config.num_layers);
  s.set_hidden_size(config.hidden_size);
  s.set_num_heads(config.num_heads);
  s.set_num_kv_heads(config.num_kv_heads);
  s.set_head_dim(config.head_dim);
  s.set_intermediate_size(config.intermediate_size);
  s.set_vocab_size(config.vocab_size);
  s.set_num_experts(config.num_experts);
  s.set_num_experts_per_tok(config.num_experts_per_tok);
  s.set_moe_intermediate_size(config.moe_intermediate_size);
  s.set_shared_expert_intermediate_size(config.shared_expert_intermediate_size);
  return s;
}

// Every worker has an id (unique), a pool role, a known device kind and the same model.
absl::Status CheckWorkers(const std::vector<v1::WorkerInfo>& workers) {
  absl::flat_hash_set<std::string> ids;
  for (const v1::WorkerInfo& w : workers) {
    if (w.worker_id().empty()) return absl::InvalidArgumentError("a worker has no worker_id");
    if (!ids.insert(w.worker_id()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker id ", w.worker_id(), " is registered twice"));
    }
    if (w.role() != v1::POOL_ROLE_PREFILL && w.role() != v1::POOL_ROLE_DECODE &&
        w.role() != v1::POOL_ROLE_BOTH) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker ", w.worker_id(), " names no pool role (prefill, decode, both)"));
    }
    RETURN_IF_ERROR(DeviceKind(w).status());
    if (w.model_fingerprint().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker ", w.worker_id(), " reported no model fingerprint"));
    }
    if (w.model_fingerprint() != workers.front().model_fingerprint()) {
      return absl::FailedPreconditionError(
          absl::StrCat("workers hold different models: ", workers.front().worker_id(), " has ",
                       workers.front().model_path(), " (fingerprint ",
                       workers.front().model_fingerprint(), "), ", w.worker_id(), " has ",
                       w.model_path(), " (fingerprint ", w.model_fingerprint(), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PlacementPlanner> PlacementPlanner::Create(const ModelConfig& config,
                                                          const ClusterLayout& layout) {
  int total_groups = 0;
  for (v1::PoolRole role : kPoolOrder) {
    const PoolLayout& pool = role == v1::POOL_ROLE_PREFILL  ? layout.prefill
                             : role == v1::POOL_ROLE_DECODE ? layout.decode
                                                            : layout.both;
    if (pool.num_groups < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(PoolName(role), " pool asks for ", pool.num_groups, " groups"));
    }
    if (!pool.device_kind.empty() && pool.device_kind != "cpu" && pool.device_kind != "cuda") {
      return absl::InvalidArgumentError(absl::StrCat(PoolName(role), " pool device kind '",
                                                     pool.device_kind,
                                                     "' is neither \"cpu\" nor \"cuda\""));
    }
    if (pool.num_groups == 0) continue;
    total_groups += pool.num_groups;
    if (absl::Status s = ValidateLayout(config, pool.layout); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(PoolName(role), " pool layout ",
                                                     LayoutName(pool.layout), ": ", s.message()));
    }
  }
  if (total_groups == 0) {
    return absl::InvalidArgumentError("the cluster layout asks for no engine groups");
  }
  return PlacementPlanner(config, layout);
}

PlacementPlanner::PlacementPlanner(const ModelConfig& config, const ClusterLayout& layout)
    : config_(config), layout_(layout) {}

const PoolLayout& PlacementPlanner::Pool(v1::PoolRole role) const {
  switch (role) {
    case v1::POOL_ROLE_PREFILL:
      return layout_.prefill;
    case v1::POOL_ROLE_DECODE:
      return layout_.decode;
    default:
      return layout_.both;
  }
}

int PlacementPlanner::WorkersNeeded(v1::PoolRole role) const {
  const PoolLayout& pool = Pool(role);
  return pool.num_groups * pool.layout.tp_size * pool.layout.pp_size;
}

int PlacementPlanner::TotalWorkersNeeded() const {
  int total = 0;
  for (v1::PoolRole role : kPoolOrder) total += WorkersNeeded(role);
  return total;
}

absl::StatusOr<v1::PlacementPlan> PlacementPlanner::Plan(const std::vector<v1::WorkerInfo>& workers,
                                                         int64_t epoch) const {
  if (workers.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no workers registered; the layout needs ", TotalWorkersNeeded()));
  }
  RETURN_IF_ERROR(CheckWorkers(workers));

  v1::PlacementPlan plan;
  *plan.mutable_model() = Summarize(config_, workers.front().model_fingerprint());
  plan.set_epoch(epoch);
  absl::flat_hash_set<std::string> placed;
  int next_group_id = 0;
  for (v1::PoolRole role : kPoolOrder) {
    const PoolLayout& pool = Pool(role);
    if (pool.num_groups == 0) continue;
    std::vector<const v1::WorkerInfo*> candidates;
    for (const v1::WorkerInfo& w : workers) {
      if (w.role() == role) candidates.push_back(&w);
    }
    const int group_size = pool.layout.tp_size * pool.layout.pp_size;
    const int needed = WorkersNeeded(role);
    if (static_cast<int>(candidates.size()) < needed) {
      return absl::FailedPreconditionError(
          absl::StrCat("need ", needed, " workers for ", pool.num_groups, " ", PoolName(role),
                       " group", pool.num_groups == 1 ? "" : "s", " of ", LayoutName(pool.layout),
                       ", have ", candidates.size()));
    }
    for (int g = 0; g < pool.num_groups; ++g) {
      v1::EngineGroup* group = plan.add_groups();
      group->set_id(next_group_id++);
      group->set_role(role);
      *group->mutable_layout() = LayoutToProto(pool.layout);
      group->set_rendezvous_prefix(absl::StrCat("plan/", epoch, "/group/", group->id(), "/"));
      std::string group_kind;
      for (int rank = 0; rank < group_size; ++rank) {
        const v1::WorkerInfo& w = *candidates[g * group_size + rank];
        const std::string kind = *DeviceKind(w);  // checked in CheckWorkers
        if (!pool.device_kind.empty() && kind != pool.device_kind) {
          return absl::FailedPreconditionError(
              absl::StrCat(PoolName(role), " pool runs on ", pool.device_kind, " but worker ",
                           w.worker_id(), " has device ", w.device()));
        }
        if (rank == 0) group_kind = kind;
        if (kind != group_kind) {
          return absl::FailedPreconditionError(absl::StrCat(
              "group ", group->id(), " (", PoolName(role), ") would mix devices: worker ",
              group->worker_ids(0), " has ", candidates[g * group_size]->device(), ", worker ",
              w.worker_id(), " has ", w.device()));
        }
        const int tp_rank = rank % pool.layout.tp_size;
        const int pp_rank = rank / pool.layout.tp_size;
        ASSIGN_OR_RETURN(ShardSpec spec, MakeShardSpec(config_, pool.layout, tp_rank, pp_rank));
        v1::ShardAssignment* shard = group->add_shards();
        *shard = ShardSpecToProto(spec);
        shard->set_worker_id(w.worker_id());
        shard->set_group_id(group->id());
        shard->set_role(role);
        group->add_worker_ids(w.worker_id());
        placed.insert(w.worker_id());
      }
    }
  }
  for (const v1::WorkerInfo& w : workers) {
    if (!placed.contains(w.worker_id())) plan.add_spare_worker_ids(w.worker_id());
  }
  return plan;
}

std::string PlacementPlanner::Render(const v1::PlacementPlan& plan) {
  const v1::ModelSummary& m = plan.model();
  std::string out =
      absl::StrCat("plan epoch ", plan.epoch(), ": ", m.arch().empty() ? "model" : m.arch(), ", ",
                   m.num_layers(), " layers, hidden ", m.hidden_size(), ", ", m.num_heads(),
                   " heads / ", m.num_kv_heads(), " kv heads, mlp ", m.intermediate_size());
  if (m.num_experts() > 0) {
    absl::StrAppend(&out, ", ", m.num_experts(), " experts (top ", m.num_experts_per_tok(),
                    ", width ", m.moe_intermediate_size(), ")");
  }
  absl::StrAppend(&out, ", vocab ", m.vocab_size(), ", fingerprint ",
                  m.model_fingerprint().substr(0, 12), "\n");
  for (const v1::EngineGroup& g : plan.groups()) {
    const v1::ParallelLayout& l = g.layout();
    absl::StrAppend(&out, "group ", g.id(), " ", PoolName(g.role()), " tp=", l.tp_size(),
                    " pp=", l.pp_size(), " ep=", l.ep_size(), ": ", g.worker_ids_size(),
                    " workers, ", g.ready() ? "ready" : "not ready", "\n");
    for (const v1::ShardAssignment& s : g.shards()) {
      absl::StrAppend(&out, "  rank ", s.group_rank(), " ", s.worker_id(), " tp", s.tp_rank(),
                      " pp", s.pp_rank(), ": layers ", Range(s.layers()), " q_heads ",
                      Range(s.q_heads()), " kv_heads ", Range(s.kv_heads()));
      if (m.num_experts() > 0) {
        absl::StrAppend(&out, " experts ", Range(s.experts()), " expert_columns ",
                        Range(s.expert_columns()));
        if (m.shared_expert_intermediate_size() > 0) {
          absl::StrAppend(&out, " shared_expert_columns ", Range(s.shared_expert_columns()));
        }
      } else {
        absl::StrAppend(&out, " mlp_columns ", Range(s.mlp_columns()));
      }
      absl::StrAppend(&out, " vocab ", Range(s.vocab()), "\n");
    }
  }
  if (plan.spare_worker_ids_size() > 0) {
    absl::StrAppend(&out, "spare: ", absl::StrJoin(plan.spare_worker_ids(), ", "), "\n");
  }
  return out;
}

}  // namespace shardserve
