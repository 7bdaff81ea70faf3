// Tokenizer: text <-> token ids for byte-level BPE models (GPT-2 style: SmolLM2, Llama 3,
// Qwen2/3, Mistral Nemo), matching Hugging Face `tokenizers` id for id.
//
// Encoding runs the same stages as Hugging Face: added tokens are cut out of the raw text first
// (longest match at the leftmost position), the rest is normalized (NFC, where the model asks),
// normalized added tokens are cut out, the pre-tokenizer regexes split it into pieces, and each
// piece is mapped to bytes and merged by BPE. Decoding concatenates the tokens' bytes and turns
// them into text, replacing ill-formed UTF-8 with U+FFFD.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok,
//                    Tokenizer::FromHfJson(json_text, "SmolLM2 tokenizer.json"));
//   std::vector<int32_t> ids = tok->Encode("<|im_start|>user\nHi", /*add_special_tokens=*/true);
//   ASSIGN_OR_RETURN(std::string text, tok->Decode(ids, /*skip_special_tokens=*/false));
//
// A Tokenizer is immutable after creation: every method may be called from many threads at once.
#ifndef SHARDSERVE_MODEL_TOKENIZER_H_
#define SHARDSERVE_MODEL_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "model/tokenizer_spec.h"

namespace shardserve {

class AddedTokenMatcher;
class BpeModel;
class PreTokenizer;
class TokenizerNormalizer;

class Tokenizer {
 public:
  // Checks `spec` and builds the tokenizer. Fails with INVALID_ARGUMENT (naming
  // spec.source_name) on an empty vocabulary, bad merges, out-of-range special ids, a bad
  // pre-tokenizer, or an unsupported normalizer.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(TokenizerSpec spec);

  // Create(TokenizerSpecFromHfJson(json_text, source_name)): see tokenizer_hf_json.h.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromHfJson(const std::string& json_text,
                                                               const std::string& source_name);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids for `text`. Bytes that are not valid UTF-8 are first replaced by U+FFFD, as Python
  // does with `bytes.decode("utf-8", errors="replace")`. `add_special_tokens` adds BOS (and EOS)
  // when the model asks for them. With `allow_special` false, special tokens written in the text
  // are tokenized as plain text (user-defined added tokens still match).
  std::vector<int32_t> Encode(absl::string_view text, bool add_special_tokens,
                              bool allow_special = true) const;

  // The text of `ids`: their bytes concatenated, ill-formed UTF-8 replaced by U+FFFD (as
  // Hugging Face's ByteLevel decoder does). An id outside [0, vocab_size()) or one with no token
  // fails with INVALID_ARGUMENT. `skip_special_tokens` drops special tokens.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const;

  // The bytes token `id` contributes to decoded text; may be part of a UTF-8 character. Fails
  // like Decode on a bad id.
  absl::StatusOr<absl::string_view> TokenToPiece(int32_t id) const;

  // Whether `id` is a token of this vocabulary.
  bool IsValidId(int32_t id) const {
    return id >= 0 && static_cast<size_t>(id) < token_bytes_.size() && has_token_[id];
  }
  // Whether `id` is a special (control) token. False for invalid ids.
  bool IsSpecial(int32_t id) const { return IsValidId(id) && special_[id]; }

  // The id of `token`: an added token's text, or a vocabulary token in the byte-level alphabet
  // ("Ġthe"). -1 when there is none.
  int32_t TokenId(absl::string_view token) const;

  int32_t vocab_size() const { return static_cast<int32_t>(token_bytes_.size()); }
  int32_t bos_id() const { return bos_id_; }  // -1 when the model has none
  int32_t eos_id() const { return eos_id_; }  // -1 when the model has none
  bool add_bos() const { return add_bos_; }

 private:
  Tokenizer();

  // Encodes text that holds no raw-matched added token.
  void EncodeText(absl::string_view text, bool allow_special, std::vector<int32_t>* ids) const;
  // Encodes text that holds no added token at all: pre-tokenizer and BPE.
  void EncodePlain(absl::string_view text, std::vector<int32_t>* ids) const;

  std::vector<std::string> token_bytes_;                    // [vocab_size] bytes each id decodes to
  std::vector<bool> has_token_;                             // [vocab_size]
  std::vector<bool> special_;                               // [vocab_size]
  std::vector<std::pair<std::string, int32_t>> added_ids_;  // sorted by content
  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool add_bos_ = false;
  bool add_eos_ = false;
  std::unique_ptr<BpeModel> bpe_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<AddedTokenMatcher> raw_matcher_;         // added tokens with normalized=false
  std::unique_ptr<AddedTokenMatcher> normalized_matcher_;  // added tokens with normalized=true
  std::unique_ptr<TokenizerNormalizer> normalizer_;        // null: no normalization
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_TOKENIZER_H_
