// WeightSource over a GGUF file: canonical names are GGUF's own (without ".weight").
//
// MoE experts stored stacked (`blk.L.ffn_gate_exps.weight`, [num_experts, moe_inter, hidden])
// are served per expert as views of one slice; files with one tensor per expert
// (`blk.L.ffn_gate.E.weight`) work too. The Qwen2-MoE shared-expert gate, stored as a vector,
// is served as [1, hidden]. Supported dtypes: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K.
#ifndef SHARDSERVE_MODEL_GGUF_WEIGHT_SOURCE_H_
#define SHARDSERVE_MODEL_GGUF_WEIGHT_SOURCE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "model/gguf_file.h"
#include "model/model_config.h"
#include "model/weight_source.h"

namespace shardserve {

class GgufWeightSource : public WeightSource {
 public:
  // Opens and validates the file at `path`.
  static absl::StatusOr<std::unique_ptr<GgufWeightSource>> Open(const std::string& path);
  // Takes an already parsed file (in-memory tests, the fuzzer) and validates it.
  static absl::StatusOr<std::unique_ptr<GgufWeightSource>> FromFile(std::unique_ptr<GgufFile> file);

  const ModelConfig& config() const override { return config_; }
  absl::StatusOr<TensorView> Get(const std::string& name) const override;
  bool Has(const std::string& name) const override { return Get(name).ok(); }
  std::string path() const override { return file_->name(); }
  const GgufFile* gguf() const override { return file_.get(); }

 private:
  GgufWeightSource(std::unique_ptr<GgufFile> file, ModelConfig config)
      : file_(std::move(file)), config_(std::move(config)) {}

  // Expert `expert` of the stacked tensor `stacked_name`.
  absl::StatusOr<TensorView> ExpertSlice(const std::string& name, const std::string& stacked_name,
                                         int64_t expert) const;

  std::unique_ptr<GgufFile> file_;
  ModelConfig config_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_GGUF_WEIGHT_SOURCE_H_
