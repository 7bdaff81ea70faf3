// TokenizerSpec: everything a Tokenizer is built from, as plain data, whatever file it came from.
//
// Filled by TokenizerSpecFromHfJson (tokenizer.json), TokenizerSpecFromGguf (GGUF metadata) or
// by hand in tests; consumed by Tokenizer::Create, which checks it.
#ifndef SHARDSERVE_MODEL_TOKENIZER_SPEC_H_
#define SHARDSERVE_MODEL_TOKENIZER_SPEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/pre_tokenizer.h"

namespace shardserve {

// GGUF token types (llama.cpp's llama_token_type).
enum GgufTokenType : int32_t {
  kGgufTokenUndefined = 0,
  kGgufTokenNormal = 1,
  kGgufTokenUnknown = 2,
  kGgufTokenControl = 3,
  kGgufTokenUserDefined = 4,
  kGgufTokenUnused = 5,
  kGgufTokenByte = 6,
};

// A token matched verbatim in the input before pre-tokenization (Hugging Face's AddedToken).
struct AddedToken {
  int32_t id = -1;
  std::string content;       // plain text (not the byte-level alphabet)
  bool special = false;      // control token: skipped by Decode(skip_special_tokens), not matched
                             // when Encode is told allow_special = false
  bool lstrip = false;       // also swallow the whitespace before it
  bool rstrip = false;       // also swallow the whitespace after it
  bool single_word = false;  // match only when not inside a word
  bool normalized = false;   // match against the normalized text (else the raw input)
};

enum class Normalizer {
  kNone,
  kNfc,  // Unicode NFC, as Qwen2's tokenizer.json asks
};

struct TokenizerSpec {
  // id -> token string in the byte-level alphabet; "" marks an id with no token.
  std::vector<std::string> tokens;
  // "left right" merges in rank order.
  std::vector<std::string> merges;
  // GGUF token types, parallel to `tokens` (may be empty). When `added_tokens` is empty, control
  // and unknown tokens become special added tokens and user-defined ones plain added tokens, as
  // llama.cpp matches them.
  std::vector<int32_t> token_types;
  // The pre-tokenizer: `pre_tokenizer_config` when set, else the pipeline named by
  // `pre_tokenizer` (see PreTokenizer::ConfigForName).
  std::string pre_tokenizer = "default";
  std::optional<PreTokenizerConfig> pre_tokenizer_config;
  Normalizer normalizer = Normalizer::kNone;
  bool ignore_merges = false;
  int64_t unk_id = -1;
  bool fuse_unk = false;
  int64_t bos_id = -1;
  int64_t eos_id = -1;
  bool add_bos = false;  // Encode(add_special_tokens=true) starts with bos_id
  bool add_eos = false;  // ... and ends with eos_id
  std::vector<AddedToken> added_tokens;
  // Names the source in error messages ("tokenizer.json of SmolLM2", a path...).
  std::string source_name;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_TOKENIZER_SPEC_H_
