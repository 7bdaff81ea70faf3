// Building a TokenizerSpec from the tokenizer metadata of a GGUF file (llama.cpp's keys), given
// as plain values so this code does not depend on the GGUF reader.
//
//   GgufTokenizerMetadata meta;
//   meta.model = "gpt2";                   // tokenizer.ggml.model
//   meta.pre = "smollm";                   // tokenizer.ggml.pre
//   meta.tokens = ...;                     // tokenizer.ggml.tokens
//   meta.merges = ...;                     // tokenizer.ggml.merges
//   meta.token_types = ...;                // tokenizer.ggml.token_type
//   meta.bos_id = 1;                       // tokenizer.ggml.bos_token_id
//   ASSIGN_OR_RETURN(TokenizerSpec spec, TokenizerSpecFromGguf(std::move(meta), path));
#ifndef SHARDSERVE_MODEL_TOKENIZER_GGUF_H_
#define SHARDSERVE_MODEL_TOKENIZER_GGUF_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/tokenizer_spec.h"

namespace shardserve {

// The GGUF keys a byte-level BPE tokenizer needs; absent keys stay empty / nullopt.
struct GgufTokenizerMetadata {
  std::string model;                  // tokenizer.ggml.model
  std::string pre;                    // tokenizer.ggml.pre
  std::vector<std::string> tokens;    // tokenizer.ggml.tokens
  std::vector<std::string> merges;    // tokenizer.ggml.merges
  std::vector<int32_t> token_types;   // tokenizer.ggml.token_type
  std::optional<int64_t> bos_id;      // tokenizer.ggml.bos_token_id
  std::optional<int64_t> eos_id;      // tokenizer.ggml.eos_token_id
  std::optional<int64_t> unknown_id;  // tokenizer.ggml.unknown_token_id (unused by gpt2 models)
  std::optional<bool> add_bos;        // tokenizer.ggml.add_bos_token
  std::optional<bool> add_eos;        // tokenizer.ggml.add_eos_token
};

// Only tokenizer.ggml.model "gpt2" (byte-level BPE) is supported: "llama" (SentencePiece) and
// the others fail with UNIMPLEMENTED. The pre-tokenizer comes from tokenizer.ggml.pre by
// llama.cpp's names (see PreTokenizer::ConfigForName); as in llama.cpp, "llama-bpe" and "tekken"
// also turn on ignore_merges and default add_bos to true. Control and user-defined token types
// become added tokens. `source_name` names the file in errors.
absl::StatusOr<TokenizerSpec> TokenizerSpecFromGguf(GgufTokenizerMetadata metadata,
                                                    const std::string& source_name);

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_TOKENIZER_GGUF_H_
