// Reads a ModelConfig from the metadata of a GGUF file.
//
// Supported `general.architecture` values: llama (dense; Mixtral when `llama.expert_count` > 0),
// qwen2, qwen3, qwen2moe, qwen3moe, olmoe. Hyperparameters come from the `<arch>.*` keys that
// llama.cpp writes; the vocabulary size from `<arch>.vocab_size`, else the token list, else the
// embedding tensor. Where llama.cpp hard-codes a behaviour for an architecture (top-k
// renormalisation of MoE router weights), the same default applies unless the file says
// otherwise through `<arch>.expert_weights_norm`.
//
// RoPE: llama.cpp's converter permutes the Q/K weights of llama-family models for interleaved
// rotation, so arch llama gets RopeStyle::kInterleaved; all the others are kNeox. Llama 3.1
// style scaling arrives as the tensor `rope_freqs.weight` rather than metadata: the config then
// keeps RopeScaling::kNone and the decoder must apply that tensor (WeightSource "rope_freqs").
#ifndef SHARDSERVE_MODEL_GGUF_CONFIG_H_
#define SHARDSERVE_MODEL_GGUF_CONFIG_H_

#include "absl/status/statusor.h"
#include "model/gguf_file.h"
#include "model/model_config.h"

namespace shardserve {

// The result passes ValidateModelConfig. Errors name the file and the key.
absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& gguf);

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_GGUF_CONFIG_H_
