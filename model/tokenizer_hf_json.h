// Reading a Hugging Face `tokenizer.json` (and `tokenizer_config.json`) into a TokenizerSpec.
//
// Supported, which covers the byte-level BPE models this project serves (SmolLM2, Llama 3,
// Qwen2/3, Mistral Nemo):
//   model          BPE over the byte-level alphabet; merges as "a b" strings or ["a", "b"];
//                  ignore_merges, unk_token, fuse_unk. Rejected: byte_fallback, dropout,
//                  continuing_subword_prefix, end_of_word_suffix.
//   normalizer     null or NFC (alone or in a Sequence).
//   pre_tokenizer  ByteLevel, Split (Regex or String pattern, any behavior, invert), Digits, and
//                  a Sequence of them ending in ByteLevel (which maps text to the byte alphabet).
//   post_processor null, ByteLevel, TemplateProcessing with at most one special token before
//                  and after the text ($A), or a Sequence of those: gives BOS / EOS.
//   decoder        ByteLevel (alone or in a Sequence).
// Anything else fails with INVALID_ARGUMENT naming the component, rather than tokenizing
// differently from the reference. `truncation` and `padding` are ignored.
//
//   ASSIGN_OR_RETURN(TokenizerSpec spec, TokenizerSpecFromHfJson(json, "tokenizer.json"));
//   RETURN_IF_ERROR(ApplyHfTokenizerConfig(config_json, &spec));  // EOS, add_bos_token
//   ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::Create(std::move(spec)));
#ifndef SHARDSERVE_MODEL_TOKENIZER_HF_JSON_H_
#define SHARDSERVE_MODEL_TOKENIZER_HF_JSON_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/tokenizer_spec.h"

namespace shardserve {

// Parses `json_text`, the contents of a tokenizer.json. `source_name` names it in errors.
// tokenizer.json says nothing of EOS: eos_id stays -1 unless the post-processor appends one.
absl::StatusOr<TokenizerSpec> TokenizerSpecFromHfJson(const std::string& json_text,
                                                      const std::string& source_name);

// Applies a tokenizer_config.json: `bos_token` / `eos_token` (a string or {"content": ...})
// set bos_id / eos_id when the token exists in the spec, and `add_bos_token` / `add_eos_token`
// (when present) override add_bos / add_eos.
absl::Status ApplyHfTokenizerConfig(const std::string& json_text, TokenizerSpec* spec);

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_TOKENIZER_HF_JSON_H_
