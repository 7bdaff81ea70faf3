// Sanity checks every ModelConfig must pass, whichever file format it was read from.
#ifndef SHARDSERVE_MODEL_CONFIG_VALIDATION_H_
#define SHARDSERVE_MODEL_CONFIG_VALIDATION_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "model/model_config.h"

namespace shardserve {

// OK when every size is positive and within generous limits (so products such as
// vocab_size * hidden_size cannot overflow), heads divide evenly into KV groups, head_dim is
// even (RoPE rotates pairs), the MoE fields agree with each other and the architecture, and
// token ids lie inside the vocabulary. Otherwise INVALID_ARGUMENT naming `source` and the field.
absl::Status ValidateModelConfig(const ModelConfig& config, absl::string_view source);

// `v` as a float without the undefined behaviour of casting an out-of-range double: magnitudes
// beyond float's range become infinities (which ValidateModelConfig rejects), NaN stays NaN.
float DoubleToFloat(double v);

// "llama", "mixtral", ... (lower case, for messages and logs).
std::string ArchitectureName(Architecture arch);

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_CONFIG_VALIDATION_H_
