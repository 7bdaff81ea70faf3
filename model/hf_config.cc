#include "model/hf_config.h"

#include <cmath>
#include <cstdint>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
#include "model/config_validation.h"
#include "nlohmann/json.hpp"

namespace shardserve {
namespace {

using Json = nlohmann::json;

struct ArchEntry {
  const char* hf_class;
  const char* model_type;
  Architecture arch;
};

constexpr ArchEntry kArchitectures[] = {
    {"LlamaForCausalLM", "llama", Architecture::kLlama},
    {"MistralForCausalLM", "mistral", Architecture::kMistral},
    {"Qwen2ForCausalLM", "qwen2", Architecture::kQwen2},
    {"Qwen3ForCausalLM", "qwen3", Architecture::kQwen3},
    {"MixtralForCausalLM", "mixtral", Architecture::kMixtral},
    {"Qwen2MoeForCausalLM", "qwen2_moe", Architecture::kQwen2Moe},
    {"Qwen3MoeForCausalLM", "qwen3_moe", Architecture::kQwen3Moe},
    {"OlmoeForCausalLM", "olmoe", Architecture::kOlmoe},
};

std::string SupportedList() {
  std::vector<std::string> names;
  for (const ArchEntry& e : kArchitectures) names.push_back(e.hf_class);
  return absl::StrJoin(names, ", ");
}

absl::Status UnsupportedArchitecture(const std::string& name, const std::string& source) {
  return absl::InvalidArgumentError(absl::StrCat("unsupported architecture ", name, " in ", source,
                                                 "; supported: ", SupportedList()));
}

// Typed, defaulted access to the keys of one JSON object; errors name the source and key.
// A key that is absent or null counts as missing.
class Fields {
 public:
  Fields(const Json& obj, std::string source) : obj_(obj), source_(std::move(source)) {}

  const std::string& source() const { return source_; }

  absl::Status Error(absl::string_view msg) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", msg));
  }

  const Json* Find(const char* key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }
  bool Has(const char* key) const { return Find(key) != nullptr; }

  absl::StatusOr<int64_t> Int(const char* key, std::optional<int64_t> def = {}) const {
    const Json* j = Find(key);
    if (j == nullptr) {
      if (def.has_value()) return *def;
      return Error(absl::StrCat("missing '", key, "'"));
    }
    return ToInt(*j, key);
  }

  absl::StatusOr<int64_t> ToInt(const Json& j, const char* key) const {
    if (j.is_number_unsigned()) {
      if (j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        return Error(absl::StrCat("'", key, "' is out of range"));
      }
      return static_cast<int64_t>(j.get<uint64_t>());
    }
    if (j.is_number_integer()) return j.get<int64_t>();
    if (j.is_number_float()) {  // tolerate 32768.0
      const double d = j.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) {
        return static_cast<int64_t>(d);
      }
    }
    return Error(absl::StrCat("'", key, "' is not an integer"));
  }

  absl::StatusOr<double> Float(const char* key, std::optional<double> def = {}) const {
    const Json* j = Find(key);
    if (j == nullptr) {
      if (def.has_value()) return *def;
      return Error(absl::StrCat("missing '", key, "'"));
    }
    if (!j->is_number()) return Error(absl::StrCat("'", key, "' is not a number"));
    return j->get<double>();
  }

  absl::StatusOr<bool> Bool(const char* key, bool def) const {
    const Json* j = Find(key);
    if (j == nullptr) return def;
    if (!j->is_boolean()) return Error(absl::StrCat("'", key, "' is not true or false"));
    return j->get<bool>();
  }

  absl::StatusOr<std::string> String(const char* key, std::string def) const {
    const Json* j = Find(key);
    if (j == nullptr) return def;
    if (!j->is_string()) return Error(absl::StrCat("'", key, "' is not a string"));
    return j->get<std::string>();
  }

 private:
  const Json& obj_;
  std::string source_;
};

absl::StatusOr<Architecture> ReadArchitecture(const Fields& f, std::string* name) {
  const Json* archs = f.Find("architectures");
  if (archs != nullptr) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
      return f.Error("'architectures' must be a non-empty list of class names");
    }
    *name = (*archs)[0].get<std::string>();
    for (const ArchEntry& e : kArchitectures) {
      if (*name == e.hf_class) return e.arch;
    }
    return UnsupportedArchitecture(*name, f.source());
  }
  ASSIGN_OR_RETURN(*name, f.String("model_type", ""));
  for (const ArchEntry& e : kArchitectures) {
    if (*name == e.model_type) return e.arch;
  }
  return UnsupportedArchitecture(name->empty() ? "(no 'architectures' or 'model_type')" : *name,
                                 f.source());
}

// `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5, which also moved
// rope_theta into it).
absl::Status ReadRope(const Fields& f, Architecture arch, ModelConfig* c) {
  const double default_theta = arch == Architecture::kMixtral ? 1e6 : 1e4;
  ASSIGN_OR_RETURN(double theta, f.Float("rope_theta", default_theta));
  const Json* scaling = f.Find("rope_scaling");
  const Json* params = f.Find("rope_parameters");
  if (params != nullptr) {
    if (!params->is_object()) return f.Error("'rope_parameters' is not an object");
    if (!f.Has("rope_theta")) {
      Fields p(*params, absl::StrCat(f.source(), ": rope_parameters"));
      ASSIGN_OR_RETURN(theta, p.Float("rope_theta", theta));
    }
    if (scaling == nullptr) scaling = params;
  }
  c->rope_theta = DoubleToFloat(theta);
  if (scaling == nullptr) return absl::OkStatus();
  if (!scaling->is_object()) return f.Error("'rope_scaling' is not an object");

  Fields s(*scaling, absl::StrCat(f.source(), ": rope_scaling"));
  ASSIGN_OR_RETURN(std::string type, s.String("rope_type", ""));
  if (type.empty()) {
    ASSIGN_OR_RETURN(type, s.String("type", "default"));
  }
  if (type == "default") return absl::OkStatus();
  RopeScaling& rs = c->rope_scaling;
  ASSIGN_OR_RETURN(double factor, s.Float("factor"));
  rs.factor = DoubleToFloat(factor);
  if (type == "linear") {
    rs.type = RopeScaling::Type::kLinear;
    return absl::OkStatus();
  }
  if (type == "llama3") {
    rs.type = RopeScaling::Type::kLlama3;
    ASSIGN_OR_RETURN(double low, s.Float("low_freq_factor", 1.0));
    ASSIGN_OR_RETURN(double high, s.Float("high_freq_factor", 4.0));
    ASSIGN_OR_RETURN(rs.original_max_position, s.Int("original_max_position_embeddings", 8192));
    rs.low_freq_factor = DoubleToFloat(low);
    rs.high_freq_factor = DoubleToFloat(high);
    return absl::OkStatus();
  }
  return f.Error(
      absl::StrCat("unsupported rope_scaling type '", type, "'; supported: linear, llama3"));
}

absl::Status ReadMoe(const Fields& f, Architecture arch, ModelConfig* c) {
  switch (arch) {
    case Architecture::kMixtral: {
      ASSIGN_OR_RETURN(c->num_experts, f.Int("num_local_experts", 8));
      ASSIGN_OR_RETURN(c->num_experts_per_tok, f.Int("num_experts_per_tok", 2));
      c->moe_intermediate_size = c->intermediate_size;  // Mixtral's experts use the MLP width
      c->norm_topk_prob = true;  // it always renormalises the top-k softmax weights
      return absl::OkStatus();
    }
    case Architecture::kOlmoe: {
      ASSIGN_OR_RETURN(c->num_experts, f.Int("num_experts", 64));
      ASSIGN_OR_RETURN(c->num_experts_per_tok, f.Int("num_experts_per_tok", 8));
      c->moe_intermediate_size = c->intermediate_size;
      ASSIGN_OR_RETURN(c->norm_topk_prob, f.Bool("norm_topk_prob", false));
      if (f.Has("clip_qkv")) return f.Error("clip_qkv is not supported");
      return absl::OkStatus();
    }
    case Architecture::kQwen2Moe:
    case Architecture::kQwen3Moe: {
      const bool qwen2 = arch == Architecture::kQwen2Moe;
      ASSIGN_OR_RETURN(c->num_experts, f.Int("num_experts", qwen2 ? 60 : 128));
      ASSIGN_OR_RETURN(c->num_experts_per_tok, f.Int("num_experts_per_tok", qwen2 ? 4 : 8));
      ASSIGN_OR_RETURN(c->moe_intermediate_size, f.Int("moe_intermediate_size"));
      ASSIGN_OR_RETURN(c->norm_topk_prob, f.Bool("norm_topk_prob", false));
      if (qwen2) {
        ASSIGN_OR_RETURN(c->shared_expert_intermediate_size,
                         f.Int("shared_expert_intermediate_size"));
      }
      // ModelConfig describes one layer kind; mixed dense/MoE stacks are not supported.
      ASSIGN_OR_RETURN(int64_t step, f.Int("decoder_sparse_step", 1));
      const Json* dense_layers = f.Find("mlp_only_layers");
      if (step != 1 || (dense_layers != nullptr && !dense_layers->empty())) {
        return f.Error(
            "models mixing dense and MoE layers (decoder_sparse_step != 1 or "
            "mlp_only_layers) are not supported");
      }
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

absl::Status ReadTokenIds(const Fields& f, ModelConfig* c) {
  ASSIGN_OR_RETURN(c->bos_token_id, f.Int("bos_token_id", -1));
  const Json* eos = f.Find("eos_token_id");
  if (eos == nullptr) return absl::OkStatus();
  if (eos->is_array()) {
    for (const Json& id : *eos) {
      ASSIGN_OR_RETURN(int64_t v, f.ToInt(id, "eos_token_id"));
      c->eos_token_ids.push_back(v);
    }
  } else {
    ASSIGN_OR_RETURN(int64_t v, f.ToInt(*eos, "eos_token_id"));
    c->eos_token_ids.push_back(v);
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ParseObject(const Json& root, const std::string& source) {
  if (!root.is_object()) return absl::InvalidArgumentError(source + ": not a JSON object");
  Fields f(root, source);
  ModelConfig c;
  ASSIGN_OR_RETURN(c.arch, ReadArchitecture(f, &c.arch_name));
  const Architecture a = c.arch;
  c.rope_style = RopeStyle::kNeox;

  ASSIGN_OR_RETURN(c.vocab_size, f.Int("vocab_size"));
  ASSIGN_OR_RETURN(c.hidden_size, f.Int("hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, f.Int("intermediate_size"));
  ASSIGN_OR_RETURN(c.num_layers, f.Int("num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_heads, f.Int("num_attention_heads"));
  ASSIGN_OR_RETURN(c.num_kv_heads, f.Int("num_key_value_heads", c.num_heads));
  if (f.Has("head_dim")) {
    ASSIGN_OR_RETURN(c.head_dim, f.Int("head_dim"));
  } else {
    if (c.num_heads <= 0 || c.hidden_size % c.num_heads != 0) {
      return f.Error(absl::StrCat("hidden_size ", c.hidden_size,
                                  " is not a multiple of num_attention_heads ", c.num_heads));
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }

  int64_t default_positions = 32768;
  double default_eps = 1e-6;
  if (a == Architecture::kLlama) default_positions = 2048;
  if (a == Architecture::kMistral || a == Architecture::kMixtral) default_positions = 131072;
  if (a == Architecture::kOlmoe) default_positions = 4096;
  if (a == Architecture::kMixtral || a == Architecture::kOlmoe) default_eps = 1e-5;
  ASSIGN_OR_RETURN(c.max_position_embeddings, f.Int("max_position_embeddings", default_positions));
  ASSIGN_OR_RETURN(double eps, f.Float("rms_norm_eps", default_eps));
  c.rms_norm_eps = DoubleToFloat(eps);
  RETURN_IF_ERROR(ReadRope(f, a, &c));

  // Sliding-window attention equals full attention while the context fits in the window, so
  // such models are served with their context capped at the window.
  const bool qwen = a == Architecture::kQwen2 || a == Architecture::kQwen3 ||
                    a == Architecture::kQwen2Moe || a == Architecture::kQwen3Moe;
  ASSIGN_OR_RETURN(bool use_window, f.Bool("use_sliding_window", !qwen));
  if (use_window && f.Has("sliding_window")) {
    ASSIGN_OR_RETURN(int64_t window, f.Int("sliding_window"));
    if (window > 0 && window < c.max_position_embeddings) c.max_position_embeddings = window;
  }

  ASSIGN_OR_RETURN(c.tie_word_embeddings, f.Bool("tie_word_embeddings", false));
  if (a == Architecture::kQwen2 || a == Architecture::kQwen2Moe) {
    c.attention_bias = true;  // Qwen2 always has q/k/v biases
  } else {
    ASSIGN_OR_RETURN(c.attention_bias, f.Bool("attention_bias", false));
  }
  ASSIGN_OR_RETURN(bool mlp_bias, f.Bool("mlp_bias", false));
  if (mlp_bias) return f.Error("mlp_bias is not supported");
  ASSIGN_OR_RETURN(std::string act, f.String("hidden_act", "silu"));
  if (act != "silu") {
    return f.Error(absl::StrCat("hidden_act '", act, "' is not supported (only silu)"));
  }
  if (a == Architecture::kQwen3 || a == Architecture::kQwen3Moe) c.qk_norm = QkNorm::kPerHead;
  if (a == Architecture::kOlmoe) c.qk_norm = QkNorm::kFull;

  RETURN_IF_ERROR(ReadMoe(f, a, &c));
  RETURN_IF_ERROR(ReadTokenIds(f, &c));
  RETURN_IF_ERROR(ValidateModelConfig(c, source));
  return c;
}

}  // namespace

absl::StatusOr<ModelConfig> ParseHfConfig(const std::string& json_text,
                                          const std::string& source_name) {
  const Json root = Json::parse(json_text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(source_name + ": not valid JSON");
  }
  try {
    return ParseObject(root, source_name);
  } catch (const Json::exception& e) {  // not expected: every access is type-checked first
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": ", e.what()));
  }
}

absl::StatusOr<ModelConfig> LoadHfConfig(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  const std::string text(reinterpret_cast<const char*>(file->data()), file->size());
  return ParseHfConfig(text, path);
}

}  // namespace shardserve
