// Unicode normalization of input text before pre-tokenization (Hugging Face's `normalizer`).
// Only NFC is supported: it is the one byte-level BPE models use (Qwen2, Qwen3).
//
//   ASSIGN_OR_RETURN(auto nfc, TokenizerNormalizer::Create(Normalizer::kNfc));
//   std::string text = nfc->Normalize("e\xCC\x81");  // "\xC3\xA9" (é)
//
// Immutable after Create; safe to share between threads.
#ifndef SHARDSERVE_MODEL_TOKENIZER_NORMALIZER_H_
#define SHARDSERVE_MODEL_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/tokenizer_spec.h"

namespace shardserve {

class TokenizerNormalizer {
 public:
  // REQUIRES: kind != Normalizer::kNone. Fails when the Unicode data cannot be loaded.
  static absl::StatusOr<std::unique_ptr<TokenizerNormalizer>> Create(Normalizer kind);

  // `text` normalized. REQUIRES: `text` is valid UTF-8.
  std::string Normalize(absl::string_view text) const;

  // Whether Normalize(text) would return `text` unchanged; cheap for text already in NFC.
  bool IsNormalized(absl::string_view text) const;

 private:
  explicit TokenizerNormalizer(const void* icu_normalizer) : icu_normalizer_(icu_normalizer) {}

  const void* icu_normalizer_;  // icu::Normalizer2, owned by ICU
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_TOKENIZER_NORMALIZER_H_
