#include "model/hf_weight_source.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "model/hf_config.h"

namespace shardserve {
namespace {

constexpr DType kSupportedDTypes[] = {DType::kF32, DType::kF16, DType::kBF16};

bool IsIndex(absl::string_view s) {
  int64_t v = 0;
  return !s.empty() && absl::ascii_isdigit(s[0]) && absl::SimpleAtoi(s, &v);
}

// Per-layer names that do not depend on the architecture.
const char* LayerName(absl::string_view rest) {
  struct Entry {
    const char* canonical;
    const char* hf;
  };
  static constexpr Entry kNames[] = {
      {"attn_norm", "input_layernorm.weight"},
      {"attn_q", "self_attn.q_proj.weight"},
      {"attn_k", "self_attn.k_proj.weight"},
      {"attn_v", "self_attn.v_proj.weight"},
      {"attn_output", "self_attn.o_proj.weight"},
      {"attn_q.bias", "self_attn.q_proj.bias"},
      {"attn_k.bias", "self_attn.k_proj.bias"},
      {"attn_v.bias", "self_attn.v_proj.bias"},
      {"attn_q_norm", "self_attn.q_norm.weight"},
      {"attn_k_norm", "self_attn.k_norm.weight"},
      {"ffn_norm", "post_attention_layernorm.weight"},
      {"ffn_gate", "mlp.gate_proj.weight"},
      {"ffn_up", "mlp.up_proj.weight"},
      {"ffn_down", "mlp.down_proj.weight"},
      {"ffn_gate_shexp", "mlp.shared_expert.gate_proj.weight"},
      {"ffn_up_shexp", "mlp.shared_expert.up_proj.weight"},
      {"ffn_down_shexp", "mlp.shared_expert.down_proj.weight"},
      {"ffn_gate_inp_shexp", "mlp.shared_expert_gate.weight"},
  };
  for (const Entry& e : kNames) {
    if (rest == e.canonical) return e.hf;
  }
  return nullptr;
}

}  // namespace

std::string HfWeightSource::HfName(const std::string& name, const ModelConfig& config) {
  if (name == "token_embd") return "model.embed_tokens.weight";
  if (name == "output_norm") return "model.norm.weight";
  if (name == "output") return config.tie_word_embeddings ? "" : "lm_head.weight";

  // "blk.L.rest" where rest may itself contain a dot ("attn_q.bias", "ffn_up.7").
  const std::vector<absl::string_view> parts = absl::StrSplit(name, absl::MaxSplits('.', 2));
  if (parts.size() != 3 || parts[0] != "blk" || !IsIndex(parts[1])) return "";
  const std::string layer = absl::StrCat("model.layers.", parts[1], ".");
  const absl::string_view rest = parts[2];
  const bool mixtral = config.arch == Architecture::kMixtral;

  if (config.is_moe() && rest == "ffn_gate_inp") {
    return layer + (mixtral ? "block_sparse_moe.gate.weight" : "mlp.gate.weight");
  }
  const std::vector<absl::string_view> expert = absl::StrSplit(rest, '.');
  if (config.is_moe() && expert.size() == 2 && IsIndex(expert[1])) {
    const std::string e(expert[1]);
    if (mixtral) {
      const char* w = expert[0] == "ffn_gate"   ? "w1"
                      : expert[0] == "ffn_up"   ? "w3"
                      : expert[0] == "ffn_down" ? "w2"
                                                : nullptr;
      if (w == nullptr) return "";
      return absl::StrCat(layer, "block_sparse_moe.experts.", e, ".", w, ".weight");
    }
    const char* proj = expert[0] == "ffn_gate"   ? "gate_proj"
                       : expert[0] == "ffn_up"   ? "up_proj"
                       : expert[0] == "ffn_down" ? "down_proj"
                                                 : nullptr;
    if (proj == nullptr) return "";
    return absl::StrCat(layer, "mlp.experts.", e, ".", proj, ".weight");
  }
  const char* hf = LayerName(rest);
  return hf == nullptr ? "" : layer + hf;
}

absl::StatusOr<std::unique_ptr<HfWeightSource>> HfWeightSource::Open(const std::string& dir) {
  ASSIGN_OR_RETURN(ModelConfig config, LoadHfConfig(dir + "/config.json"));
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsCheckpoint> checkpoint,
                   SafetensorsCheckpoint::Open(dir));
  std::unique_ptr<HfWeightSource> source(
      new HfWeightSource(dir, std::move(config), std::move(checkpoint)));
  RETURN_IF_ERROR(source->ValidateRequiredTensors(kSupportedDTypes));
  return source;
}

absl::StatusOr<TensorView> HfWeightSource::Get(const std::string& name) const {
  const std::string hf = HfName(name, config_);
  if (hf.empty()) {
    return absl::NotFoundError(
        absl::StrCat(dir_, ": no tensor '", name, "'",
                     name == "output" ? " (the output projection is tied to token_embd)" : ""));
  }
  const SafetensorsTensor* t = checkpoint_->Find(hf);
  if (t == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(dir_, ": no tensor '", name, "' (checkpoint name '", hf, "')"));
  }
  return t->view;
}

bool HfWeightSource::Has(const std::string& name) const {
  const std::string hf = HfName(name, config_);
  return !hf.empty() && checkpoint_->Has(hf);
}

}  // namespace shardserve
