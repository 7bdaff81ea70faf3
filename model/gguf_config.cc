#include "model/gguf_config.h"

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/config_validation.h"

namespace shardserve {
namespace {

constexpr char kSupported[] = "llama, qwen2, qwen3, qwen2moe, qwen3moe, olmoe";

// Access to the `<arch>.` keys of one file.
class ArchKeys {
 public:
  ArchKeys(const GgufFile& gguf, std::string arch) : gguf_(gguf), prefix_(arch + ".") {}

  std::string Key(const char* suffix) const { return prefix_ + suffix; }
  bool Has(const char* suffix) const { return gguf_.Has(Key(suffix)); }

  // An integer. Per-layer arrays (which some converters write) are accepted when every layer
  // has the same value, since ModelConfig describes uniform layers.
  absl::StatusOr<int64_t> Int(const char* suffix, std::optional<int64_t> def = {}) const {
    const std::string key = Key(suffix);
    if (!gguf_.Has(key)) {
      if (def.has_value()) return *def;
      return absl::NotFoundError(absl::StrCat(gguf_.name(), ": missing metadata '", key, "'"));
    }
    GgufType elem;
    ASSIGN_OR_RETURN(GgufType type, gguf_.TypeOf(key, &elem));
    if (type != GgufType::kArray) return gguf_.GetInt(key);
    ASSIGN_OR_RETURN(std::vector<int64_t> values, gguf_.GetIntArray(key));
    if (values.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(gguf_.name(), ": '", key, "' is empty"));
    }
    for (int64_t v : values) {
      if (v != values[0]) {
        return absl::InvalidArgumentError(absl::StrCat(
            gguf_.name(), ": '", key, "' differs between layers, which is not supported"));
      }
    }
    return values[0];
  }

  absl::StatusOr<double> Float(const char* suffix, std::optional<double> def = {}) const {
    const std::string key = Key(suffix);
    if (!gguf_.Has(key)) {
      if (def.has_value()) return *def;
      return absl::NotFoundError(absl::StrCat(gguf_.name(), ": missing metadata '", key, "'"));
    }
    return gguf_.GetFloat(key);
  }

 private:
  const GgufFile& gguf_;
  std::string prefix_;
};

absl::Status ReadRopeScaling(const GgufFile& gguf, const ArchKeys& k, ModelConfig* c) {
  RopeScaling& rs = c->rope_scaling;
  if (k.Has("rope.scaling.type")) {
    ASSIGN_OR_RETURN(std::string type, gguf.GetString(k.Key("rope.scaling.type")));
    if (type == "none") return absl::OkStatus();
    if (type != "linear") {
      return absl::InvalidArgumentError(absl::StrCat(gguf.name(), ": unsupported ",
                                                     k.Key("rope.scaling.type"), " '", type,
                                                     "'; supported: none, linear"));
    }
    ASSIGN_OR_RETURN(double factor, k.Float("rope.scaling.factor"));
    rs.type = RopeScaling::Type::kLinear;
    rs.factor = DoubleToFloat(factor);
    return absl::OkStatus();
  }
  if (k.Has("rope.scale_linear")) {  // older files
    ASSIGN_OR_RETURN(double factor, k.Float("rope.scale_linear"));
    if (factor != 1.0) {
      rs.type = RopeScaling::Type::kLinear;
      rs.factor = DoubleToFloat(factor);
    }
  }
  return absl::OkStatus();
}

absl::Status ReadMoe(const GgufFile& gguf, const ArchKeys& k, ModelConfig* c) {
  ASSIGN_OR_RETURN(c->num_experts, k.Int("expert_count", 0));
  if (c->num_experts == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(c->num_experts_per_tok, k.Int("expert_used_count"));
  const bool qwen_moe = c->arch == Architecture::kQwen2Moe || c->arch == Architecture::kQwen3Moe;
  if (qwen_moe) {
    ASSIGN_OR_RETURN(c->moe_intermediate_size, k.Int("expert_feed_forward_length"));
  } else {  // Mixtral and OLMoE experts use the MLP width
    ASSIGN_OR_RETURN(c->moe_intermediate_size,
                     k.Int("expert_feed_forward_length", c->intermediate_size));
  }
  if (c->arch == Architecture::kQwen2Moe) {
    ASSIGN_OR_RETURN(c->shared_expert_intermediate_size,
                     k.Int("expert_shared_feed_forward_length"));
  }
  // llama.cpp renormalises the top-k weights for Mixtral and Qwen3-MoE, not for Qwen2-MoE or
  // OLMoE.
  c->norm_topk_prob = c->arch == Architecture::kMixtral || c->arch == Architecture::kQwen3Moe;
  if (k.Has("expert_weights_norm")) {
    ASSIGN_OR_RETURN(c->norm_topk_prob, gguf.GetBool(k.Key("expert_weights_norm")));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ReadVocabSize(const GgufFile& gguf, const ArchKeys& k) {
  if (k.Has("vocab_size")) return k.Int("vocab_size");
  if (gguf.Has("tokenizer.ggml.tokens")) {
    // The count is bounded by the file's size, so it fits.
    ASSIGN_OR_RETURN(uint64_t n, gguf.GetArrayLength("tokenizer.ggml.tokens"));
    return static_cast<int64_t>(n);
  }
  const GgufTensorInfo* embd = gguf.FindTensor("token_embd.weight");
  if (embd != nullptr && embd->ndim == 2) return embd->shape[0];
  return absl::InvalidArgumentError(
      absl::StrCat(gguf.name(), ": cannot tell the vocabulary size (no ", k.Key("vocab_size"),
                   ", tokenizer.ggml.tokens or token_embd.weight)"));
}

absl::Status ReadTokenIds(const GgufFile& gguf, ModelConfig* c) {
  if (gguf.Has("tokenizer.ggml.bos_token_id")) {
    ASSIGN_OR_RETURN(c->bos_token_id, gguf.GetInt("tokenizer.ggml.bos_token_id"));
  }
  // Generation stops at end-of-sequence and at end-of-turn, as in llama.cpp.
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"}) {
    if (!gguf.Has(key)) continue;
    ASSIGN_OR_RETURN(int64_t id, gguf.GetInt(key));
    if (c->eos_token_ids.empty() || c->eos_token_ids[0] != id) c->eos_token_ids.push_back(id);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& gguf) {
  ModelConfig c;
  ASSIGN_OR_RETURN(c.arch_name, gguf.GetString("general.architecture"));
  const std::string& name = c.arch_name;
  const ArchKeys k(gguf, name);
  if (name == "llama") {
    ASSIGN_OR_RETURN(int64_t experts, k.Int("expert_count", 0));
    c.arch = experts > 0 ? Architecture::kMixtral : Architecture::kLlama;
  } else if (name == "qwen2") {
    c.arch = Architecture::kQwen2;
  } else if (name == "qwen3") {
    c.arch = Architecture::kQwen3;
  } else if (name == "qwen2moe") {
    c.arch = Architecture::kQwen2Moe;
  } else if (name == "qwen3moe") {
    c.arch = Architecture::kQwen3Moe;
  } else if (name == "olmoe") {
    c.arch = Architecture::kOlmoe;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unsupported architecture ", name, " in ",
                                                   gguf.name(), "; supported: ", kSupported));
  }

  ASSIGN_OR_RETURN(c.num_layers, k.Int("block_count"));
  ASSIGN_OR_RETURN(c.max_position_embeddings, k.Int("context_length"));
  ASSIGN_OR_RETURN(c.hidden_size, k.Int("embedding_length"));
  ASSIGN_OR_RETURN(c.intermediate_size, k.Int("feed_forward_length", 0));
  ASSIGN_OR_RETURN(c.num_heads, k.Int("attention.head_count"));
  ASSIGN_OR_RETURN(c.num_kv_heads, k.Int("attention.head_count_kv", c.num_heads));
  if (k.Has("attention.key_length")) {
    ASSIGN_OR_RETURN(c.head_dim, k.Int("attention.key_length"));
  } else {
    if (c.num_heads <= 0 || c.hidden_size % c.num_heads != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(gguf.name(), ": embedding_length ", c.hidden_size,
                       " is not a multiple of head_count ", c.num_heads));
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  ASSIGN_OR_RETURN(int64_t value_dim, k.Int("attention.value_length", c.head_dim));
  ASSIGN_OR_RETURN(int64_t rope_dims, k.Int("rope.dimension_count", c.head_dim));
  if (value_dim != c.head_dim || rope_dims != c.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(gguf.name(), ": value_length ", value_dim,
                                                   " and rope.dimension_count ", rope_dims,
                                                   " must equal the head dimension ", c.head_dim));
  }
  ASSIGN_OR_RETURN(double eps, k.Float("attention.layer_norm_rms_epsilon"));
  c.rms_norm_eps = DoubleToFloat(eps);
  ASSIGN_OR_RETURN(double theta, k.Float("rope.freq_base", 10000.0));
  c.rope_theta = DoubleToFloat(theta);
  c.rope_style = c.arch == Architecture::kLlama || c.arch == Architecture::kMixtral
                     ? RopeStyle::kInterleaved
                     : RopeStyle::kNeox;
  RETURN_IF_ERROR(ReadRopeScaling(gguf, k, &c));
  ASSIGN_OR_RETURN(c.vocab_size, ReadVocabSize(gguf, k));

  c.tie_word_embeddings = gguf.FindTensor("output.weight") == nullptr;
  c.attention_bias = gguf.FindTensor("blk.0.attn_q.bias") != nullptr ||
                     c.arch == Architecture::kQwen2 || c.arch == Architecture::kQwen2Moe;
  if (c.arch == Architecture::kQwen3 || c.arch == Architecture::kQwen3Moe) {
    c.qk_norm = QkNorm::kPerHead;
  } else if (c.arch == Architecture::kOlmoe) {
    c.qk_norm = QkNorm::kFull;
  }
  RETURN_IF_ERROR(ReadMoe(gguf, k, &c));
  RETURN_IF_ERROR(ReadTokenIds(gguf, &c));
  RETURN_IF_ERROR(ValidateModelConfig(c, gguf.name()));
  return c;
}

}  // namespace shardserve
