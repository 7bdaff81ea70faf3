#include "model/config_validation.h"

#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"

namespace shardserve {
namespace {

// Far above any released model, low enough that products of two of them fit in int64_t.
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxWidth = int64_t{1} << 20;  // hidden, intermediate, q/kv dims
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxHeads = 4096;
constexpr int64_t kMaxHeadDim = 4096;
constexpr int64_t kMaxExperts = 4096;
constexpr int64_t kMaxPositions = int64_t{1} << 26;

}  // namespace

float DoubleToFloat(double v) {
  constexpr double kMax = std::numeric_limits<float>::max();
  if (v > kMax) return std::numeric_limits<float>::infinity();
  if (v < -kMax) return -std::numeric_limits<float>::infinity();
  return static_cast<float>(v);  // in range, or NaN, which converts to NaN
}

std::string ArchitectureName(Architecture arch) {
  switch (arch) {
    case Architecture::kLlama:
      return "llama";
    case Architecture::kMistral:
      return "mistral";
    case Architecture::kQwen2:
      return "qwen2";
    case Architecture::kQwen3:
      return "qwen3";
    case Architecture::kMixtral:
      return "mixtral";
    case Architecture::kQwen2Moe:
      return "qwen2moe";
    case Architecture::kQwen3Moe:
      return "qwen3moe";
    case Architecture::kOlmoe:
      return "olmoe";
  }
  return "unknown";
}

absl::Status ValidateModelConfig(const ModelConfig& c, absl::string_view source) {
  auto error = [source](auto&&... parts) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", parts...));
  };
  auto check_range = [&](const char* field, int64_t v, int64_t max) -> absl::Status {
    if (v <= 0 || v > max) return error(field, " is ", v, " (must be 1 to ", max, ")");
    return absl::OkStatus();
  };
  absl::Status s;
  if (!(s = check_range("vocab_size", c.vocab_size, kMaxVocab)).ok()) return s;
  if (!(s = check_range("hidden_size", c.hidden_size, kMaxWidth)).ok()) return s;
  if (!(s = check_range("num_hidden_layers", c.num_layers, kMaxLayers)).ok()) return s;
  if (!(s = check_range("num_attention_heads", c.num_heads, kMaxHeads)).ok()) return s;
  if (!(s = check_range("num_key_value_heads", c.num_kv_heads, kMaxHeads)).ok()) return s;
  if (!(s = check_range("head_dim", c.head_dim, kMaxHeadDim)).ok()) return s;
  if (!(s = check_range("max_position_embeddings", c.max_position_embeddings, kMaxPositions))
           .ok()) {
    return s;
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return error("num_attention_heads ", c.num_heads, " is not a multiple of num_key_value_heads ",
                 c.num_kv_heads);
  }
  if (c.head_dim % 2 != 0) return error("head_dim ", c.head_dim, " is odd");
  if (c.q_dim() > kMaxWidth) return error("num_attention_heads * head_dim is too large");
  if (!(c.rms_norm_eps > 0.0f && c.rms_norm_eps < 1.0f)) {
    return error("rms_norm_eps ", c.rms_norm_eps, " is not in (0, 1)");
  }
  if (!(c.rope_theta > 0.0f) || !std::isfinite(c.rope_theta)) {
    return error("rope_theta ", c.rope_theta, " is not a positive finite number");
  }
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type != RopeScaling::Type::kNone) {
    if (!(rs.factor > 0.0f) || !std::isfinite(rs.factor)) {
      return error("rope_scaling factor ", rs.factor, " is not a positive finite number");
    }
    if (rs.type == RopeScaling::Type::kLlama3 &&
        (!(rs.low_freq_factor > 0.0f) || !(rs.high_freq_factor > rs.low_freq_factor) ||
         !std::isfinite(rs.high_freq_factor) || rs.original_max_position <= 0)) {
      return error(
          "llama3 rope_scaling needs 0 < low_freq_factor < high_freq_factor and a "
          "positive original_max_position_embeddings");
    }
  }

  const bool moe_arch = c.arch == Architecture::kMixtral || c.arch == Architecture::kQwen2Moe ||
                        c.arch == Architecture::kQwen3Moe || c.arch == Architecture::kOlmoe;
  if (moe_arch) {
    if (!(s = check_range("num_experts", c.num_experts, kMaxExperts)).ok()) return s;
    if (c.num_experts_per_tok <= 0 || c.num_experts_per_tok > c.num_experts) {
      return error("num_experts_per_tok ", c.num_experts_per_tok, " is not in 1..num_experts (",
                   c.num_experts, ")");
    }
    if (!(s = check_range("moe_intermediate_size", c.moe_intermediate_size, kMaxWidth)).ok()) {
      return s;
    }
    if (c.shared_expert_intermediate_size < 0 || c.shared_expert_intermediate_size > kMaxWidth) {
      return error("shared_expert_intermediate_size ", c.shared_expert_intermediate_size,
                   " is out of range");
    }
  } else {
    if (c.num_experts != 0) {
      return error(ArchitectureName(c.arch), " is dense but num_experts is ", c.num_experts);
    }
    if (!(s = check_range("intermediate_size", c.intermediate_size, kMaxWidth)).ok()) return s;
  }
  if (c.arch == Architecture::kQwen2Moe && c.shared_expert_intermediate_size <= 0) {
    return error("qwen2moe needs shared_expert_intermediate_size");
  }
  if (c.bos_token_id >= c.vocab_size) {
    return error("bos_token_id ", c.bos_token_id, " is outside the vocabulary of ", c.vocab_size);
  }
  for (int64_t id : c.eos_token_ids) {
    if (id < 0 || id >= c.vocab_size) {
      return error("eos_token_id ", id, " is outside the vocabulary of ", c.vocab_size);
    }
  }
  return absl::OkStatus();
}

}  // namespace shardserve
