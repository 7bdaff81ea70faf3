// Reads a Hugging Face `config.json` into a ModelConfig.
//
// Supported architectures: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
// Qwen3ForCausalLM, MixtralForCausalLM, Qwen2MoeForCausalLM, Qwen3MoeForCausalLM,
// OlmoeForCausalLM (or, without "architectures", the matching "model_type"). Missing optional
// keys take the defaults of the corresponding transformers config class. Features the decoder
// does not implement (RoPE scaling other than linear and llama3, non-SiLU activations, MLP
// biases, mixed dense/MoE layers, qkv clipping) are rejected, never silently ignored.
//
//   ASSIGN_OR_RETURN(ModelConfig config, LoadHfConfig(dir + "/config.json"));
#ifndef SHARDSERVE_MODEL_HF_CONFIG_H_
#define SHARDSERVE_MODEL_HF_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "model/model_config.h"

namespace shardserve {

// Parses config.json text. `source_name` (usually the file's path) is used in messages.
// HF checkpoints rotate with RopeStyle::kNeox. The result passes ValidateModelConfig.
absl::StatusOr<ModelConfig> ParseHfConfig(const std::string& json_text,
                                          const std::string& source_name);

// Reads and parses the file at `path`.
absl::StatusOr<ModelConfig> LoadHfConfig(const std::string& path);

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_HF_CONFIG_H_
