#include "model/shard_spec.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace shardserve {

IndexRange EvenSplit(int64_t n, int parts, int idx) {
  const int64_t base = n / parts;
  const int64_t extra = n % parts;  // the first `extra` parts get one more
  IndexRange r;
  r.begin = idx * base + (idx < extra ? idx : extra);
  r.end = r.begin + base + (idx < extra ? 1 : 0);
  return r;
}

std::string ShardSpec::DebugString() const {
  auto range = [](const IndexRange &r) { return absl::StrCat("[", r.begin, ",", r.end, ")"); };
  return absl::StrCat("tp ", tp_rank, "/", layout.tp_size, " pp ", pp_rank, "/", layout.pp_size,
                      " ep ", layout.ep_size, ": kv_heads ", range(kv_heads), " q_heads ",
                      range(q_heads), " mlp_columns ", range(mlp_columns), " experts ",
                      range(experts), " expert_columns ", range(expert_columns),
                      " shared_expert_columns ", range(shared_expert_columns), " layers ",
                      range(layers), " vocab ", range(vocab));
}

absl::Status ValidateLayout(const ModelConfig &config, const ParallelLayout &layout) {
  const int tp = layout.tp_size;
  const int pp = layout.pp_size;
  const int ep = layout.ep_size;
  if (tp < 1 || pp < 1 || ep < 1) {
    return absl::InvalidArgumentError(absl::StrCat("parallel sizes must be positive, got tp_size ",
                                                   tp, ", pp_size ", pp, ", ep_size ", ep));
  }
  if (layout.moe_all_to_all && (ep != tp || tp < 2)) {
    return absl::InvalidArgumentError(
        absl::StrCat("all-to-all expert dispatch needs ep_size == tp_size > 1, got tp_size ", tp,
                     ", ep_size ", ep));
  }
  if (config.num_kv_heads <= 0 || config.num_heads % config.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_heads ", config.num_heads,
                                                   " is not a multiple of num_kv_heads ",
                                                   config.num_kv_heads));
  }
  // Replicating KV heads over ranks (tp > num_kv_heads) is not supported yet.
  if (tp > config.num_kv_heads) {
    return absl::InvalidArgumentError(
        absl::StrCat("tp_size ", tp, " exceeds num_kv_heads ", config.num_kv_heads,
                     ": each tensor-parallel rank needs at least one KV head"));
  }
  if (ep != 1 && ep != tp) {
    return absl::InvalidArgumentError(
        absl::StrCat("ep_size ", ep, " must be 1 or equal to tp_size ", tp));
  }
  if (ep > 1 && config.num_experts < ep) {
    return absl::InvalidArgumentError(absl::StrCat("ep_size ", ep, " exceeds num_experts ",
                                                   config.num_experts,
                                                   ": each expert-parallel rank needs an expert"));
  }
  if (config.num_layers < pp) {
    return absl::InvalidArgumentError(absl::StrCat("pp_size ", pp, " exceeds num_layers ",
                                                   config.num_layers,
                                                   ": each pipeline stage needs a layer"));
  }
  if (config.vocab_size < tp) {
    return absl::InvalidArgumentError(
        absl::StrCat("tp_size ", tp, " exceeds vocab_size ", config.vocab_size));
  }
  if (!config.is_moe() && config.intermediate_size < tp) {
    return absl::InvalidArgumentError(
        absl::StrCat("tp_size ", tp, " exceeds intermediate_size ", config.intermediate_size));
  }
  if (config.is_moe() && ep == 1 && config.moe_intermediate_size < tp) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tp_size ", tp, " exceeds moe_intermediate_size ", config.moe_intermediate_size));
  }
  if (config.shared_expert_intermediate_size > 0 && config.shared_expert_intermediate_size < tp) {
    return absl::InvalidArgumentError(absl::StrCat("tp_size ", tp,
                                                   " exceeds shared_expert_intermediate_size ",
                                                   config.shared_expert_intermediate_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<ShardSpec> MakeShardSpec(const ModelConfig &config, const ParallelLayout &layout,
                                        int tp_rank, int pp_rank) {
  if (absl::Status s = ValidateLayout(config, layout); !s.ok()) return s;
  if (tp_rank < 0 || tp_rank >= layout.tp_size || pp_rank < 0 || pp_rank >= layout.pp_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank (tp ", tp_rank, ", pp ", pp_rank,
                                                   ") outside tp_size ", layout.tp_size,
                                                   " x pp_size ", layout.pp_size));
  }
  const int tp = layout.tp_size;
  ShardSpec s;
  s.layout = layout;
  s.tp_rank = tp_rank;
  s.pp_rank = pp_rank;
  s.kv_heads = EvenSplit(config.num_kv_heads, tp, tp_rank);
  const int64_t group = config.num_heads / config.num_kv_heads;
  s.q_heads = {s.kv_heads.begin * group, s.kv_heads.end * group};
  s.mlp_columns = EvenSplit(config.intermediate_size, tp, tp_rank);
  if (layout.ep_size > 1) {
    s.experts = EvenSplit(config.num_experts, layout.ep_size, tp_rank);
    s.expert_columns = {0, config.moe_intermediate_size};
  } else {
    s.experts = {0, config.num_experts};
    s.expert_columns = EvenSplit(config.moe_intermediate_size, tp, tp_rank);
  }
  s.shared_expert_columns = EvenSplit(config.shared_expert_intermediate_size, tp, tp_rank);
  s.layers = EvenSplit(config.num_layers, layout.pp_size, pp_rank);
  s.vocab = EvenSplit(config.vocab_size, tp, tp_rank);
  return s;
}

}  // namespace shardserve
