#include "model/weight_source.h"

#include <algorithm>
#include <filesystem>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "model/gguf_weight_source.h"
#include "model/hf_weight_source.h"

namespace shardserve {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

bool IsFloat(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

// Calls `fn` on each tensor `c` requires, in layer order, stopping at the first error. Lazy so
// that a hostile config claiming thousands of layers of thousands of experts fails at its first
// missing tensor instead of first listing millions of names.
absl::Status ForEachRequiredTensor(const ModelConfig& c,
                                   const std::function<absl::Status(const ExpectedTensor&)>& fn) {
  const int64_t hidden = c.hidden_size;
  RETURN_IF_ERROR(fn({"token_embd", {c.vocab_size, hidden}}));
  RETURN_IF_ERROR(fn({"output_norm", {hidden}}));
  if (!c.tie_word_embeddings) RETURN_IF_ERROR(fn({"output", {c.vocab_size, hidden}}));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = absl::StrCat("blk.", l, ".");
    RETURN_IF_ERROR(fn({p + "attn_norm", {hidden}}));
    RETURN_IF_ERROR(fn({p + "attn_q", {c.q_dim(), hidden}}));
    RETURN_IF_ERROR(fn({p + "attn_k", {c.kv_dim(), hidden}}));
    RETURN_IF_ERROR(fn({p + "attn_v", {c.kv_dim(), hidden}}));
    RETURN_IF_ERROR(fn({p + "attn_output", {hidden, c.q_dim()}}));
    if (c.attention_bias) {
      RETURN_IF_ERROR(fn({p + "attn_q.bias", {c.q_dim()}}));
      RETURN_IF_ERROR(fn({p + "attn_k.bias", {c.kv_dim()}}));
      RETURN_IF_ERROR(fn({p + "attn_v.bias", {c.kv_dim()}}));
    }
    if (c.qk_norm == QkNorm::kPerHead) {
      RETURN_IF_ERROR(fn({p + "attn_q_norm", {c.head_dim}}));
      RETURN_IF_ERROR(fn({p + "attn_k_norm", {c.head_dim}}));
    } else if (c.qk_norm == QkNorm::kFull) {
      RETURN_IF_ERROR(fn({p + "attn_q_norm", {c.q_dim()}}));
      RETURN_IF_ERROR(fn({p + "attn_k_norm", {c.kv_dim()}}));
    }
    RETURN_IF_ERROR(fn({p + "ffn_norm", {hidden}}));
    if (!c.is_moe()) {
      RETURN_IF_ERROR(fn({p + "ffn_gate", {c.intermediate_size, hidden}}));
      RETURN_IF_ERROR(fn({p + "ffn_up", {c.intermediate_size, hidden}}));
      RETURN_IF_ERROR(fn({p + "ffn_down", {hidden, c.intermediate_size}}));
      continue;
    }
    RETURN_IF_ERROR(fn({p + "ffn_gate_inp", {c.num_experts, hidden}}));
    const int64_t inter = c.moe_intermediate_size;
    for (int64_t e = 0; e < c.num_experts; ++e) {
      RETURN_IF_ERROR(fn({absl::StrCat(p, "ffn_gate.", e), {inter, hidden}}));
      RETURN_IF_ERROR(fn({absl::StrCat(p, "ffn_up.", e), {inter, hidden}}));
      RETURN_IF_ERROR(fn({absl::StrCat(p, "ffn_down.", e), {hidden, inter}}));
    }
    if (c.shared_expert_intermediate_size > 0) {
      const int64_t shared = c.shared_expert_intermediate_size;
      RETURN_IF_ERROR(fn({p + "ffn_gate_shexp", {shared, hidden}}));
      RETURN_IF_ERROR(fn({p + "ffn_up_shexp", {shared, hidden}}));
      RETURN_IF_ERROR(fn({p + "ffn_down_shexp", {hidden, shared}}));
      RETURN_IF_ERROR(fn({p + "ffn_gate_inp_shexp", {1, hidden}}));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<ExpectedTensor> RequiredTensors(const ModelConfig& c) {
  std::vector<ExpectedTensor> out;
  ForEachRequiredTensor(c, [&out](const ExpectedTensor& t) {
    out.push_back(t);
    return absl::OkStatus();
  }).IgnoreError();
  return out;
}

absl::Status WeightSource::ValidateRequiredTensors(absl::Span<const DType> allowed) const {
  return ForEachRequiredTensor(config(), [&](const ExpectedTensor& want) -> absl::Status {
    ASSIGN_OR_RETURN(TensorView t, Get(want.name));
    const bool same_shape = t.ndim == static_cast<int>(want.shape.size()) &&
                            std::equal(want.shape.begin(), want.shape.end(), t.shape.begin());
    if (!same_shape) {
      return absl::InvalidArgumentError(absl::StrCat(path(), ": tensor '", want.name,
                                                     "' has shape ", t.ShapeString(), ", expected ",
                                                     ShapeString(want.shape)));
    }
    const bool supported = std::find(allowed.begin(), allowed.end(), t.dtype) != allowed.end();
    if (!supported || (want.shape.size() == 1 && !IsFloat(t.dtype))) {
      std::vector<std::string> names;
      for (DType d : allowed) {
        if (want.shape.size() > 1 || IsFloat(d)) names.push_back(DTypeName(d));
      }
      return absl::InvalidArgumentError(
          absl::StrCat(path(), ": tensor '", want.name, "' has dtype ", DTypeName(t.dtype),
                       "; supported here: ", absl::StrJoin(names, ", ")));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::unique_ptr<WeightSource>> OpenWeightSource(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    ASSIGN_OR_RETURN(std::unique_ptr<HfWeightSource> hf, HfWeightSource::Open(path));
    return std::unique_ptr<WeightSource>(std::move(hf));
  }
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat("no model at ", path,
                                            " (expected a .gguf file or a Hugging Face "
                                            "directory with config.json)"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<GgufWeightSource> gguf, GgufWeightSource::Open(path));
  return std::unique_ptr<WeightSource>(std::move(gguf));
}

}  // namespace shardserve
