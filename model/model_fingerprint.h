// The identity of a model's bytes, cheap enough to compute at every worker start: workers whose
// fingerprints differ hold different models and must not join one engine group.
//
//   ASSIGN_OR_RETURN(std::string fp, ModelFingerprint("/models/smollm2.gguf"));
//   // "9f86d0...": 64 lowercase hex digits
//
// What is hashed (SHA-256), never the multi-GB tensor data itself:
//  - a `.gguf` file: every byte before its data section (header, metadata including the
//    tokenizer, and the tensor table with each tensor's name, type, shape and offset);
//  - a Hugging Face directory: config.json, then for each `*.safetensors` file in name order its
//    name and its header (the 8-byte length and the JSON table of names, dtypes, shapes and
//    offsets).
// Two files that differ only in tensor values with identical layout get the same fingerprint;
// the check is meant to catch a wrong file or a different model, not bit rot.
//
// Thread safety: free functions without shared state.
#ifndef SHARDSERVE_MODEL_MODEL_FINGERPRINT_H_
#define SHARDSERVE_MODEL_MODEL_FINGERPRINT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace shardserve {

// Fingerprint of a `.gguf` file or a Hugging Face model directory, as described above.
// NOT_FOUND for a missing path; INVALID_ARGUMENT for a file that is not GGUF or safetensors.
absl::StatusOr<std::string> ModelFingerprint(const std::string& path);

// SHA-256 of `data` as 64 lowercase hex digits.
std::string Sha256Hex(absl::string_view data);

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_MODEL_FINGERPRINT_H_
