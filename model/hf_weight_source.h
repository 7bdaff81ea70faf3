// WeightSource over a Hugging Face model directory: config.json plus safetensors weights
// (one file or sharded). Canonical names map to the checkpoint's names per architecture, e.g.
// "blk.3.attn_q" -> "model.layers.3.self_attn.q_proj.weight" and, for Mixtral,
// "blk.3.ffn_gate.5" -> "model.layers.3.block_sparse_moe.experts.5.w1.weight".
// HF linear weights are already [out_features, in_features], so views are served unchanged.
// Supported dtypes: F32, F16, BF16.
#ifndef SHARDSERVE_MODEL_HF_WEIGHT_SOURCE_H_
#define SHARDSERVE_MODEL_HF_WEIGHT_SOURCE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "model/model_config.h"
#include "model/safetensors_checkpoint.h"
#include "model/weight_source.h"

namespace shardserve {

class HfWeightSource : public WeightSource {
 public:
  // Reads `dir`/config.json, opens the safetensors checkpoint in `dir`, and validates it.
  static absl::StatusOr<std::unique_ptr<HfWeightSource>> Open(const std::string& dir);

  // The checkpoint name of canonical tensor `name` under `config`'s architecture, or "" when
  // the name has no counterpart (unknown names; "output" when the embeddings are tied).
  static std::string HfName(const std::string& name, const ModelConfig& config);

  const ModelConfig& config() const override { return config_; }
  absl::StatusOr<TensorView> Get(const std::string& name) const override;
  bool Has(const std::string& name) const override;
  std::string path() const override { return dir_; }

 private:
  HfWeightSource(std::string dir, ModelConfig config,
                 std::unique_ptr<SafetensorsCheckpoint> checkpoint)
      : dir_(std::move(dir)), config_(std::move(config)), checkpoint_(std::move(checkpoint)) {}

  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<SafetensorsCheckpoint> checkpoint_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_HF_WEIGHT_SOURCE_H_
