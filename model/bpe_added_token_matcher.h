// Finds added (special and user-defined) tokens in text, the way Hugging Face's AddedVocabulary
// does: leftmost match first, the longest token among those starting there, non-overlapping,
// then the token's lstrip / rstrip / single_word options.
//
//   ASSIGN_OR_RETURN(auto matcher, AddedTokenMatcher::Create(added_tokens, /*normalized=*/false));
//   std::vector<AddedTokenMatcher::Segment> segments;
//   matcher->Split("<|im_start|>user", /*allow_special=*/true, &segments);
//   // {0, 12, id of <|im_start|>}, {12, 16, -1}
//
// Immutable after Create; safe to share between threads.
#ifndef SHARDSERVE_MODEL_BPE_ADDED_TOKEN_MATCHER_H_
#define SHARDSERVE_MODEL_BPE_ADDED_TOKEN_MATCHER_H_

#include <bitset>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/tokenizer_spec.h"

namespace shardserve {

class AddedTokenMatcher {
 public:
  struct Segment {
    size_t begin;
    size_t end;
    int32_t id;  // the added token, or -1 for text between tokens
  };

  // Keeps the tokens whose `normalized` flag equals `normalized` (Hugging Face matches the two
  // kinds in separate passes: raw text first, then normalized text). Empty contents are ignored.
  static absl::StatusOr<std::unique_ptr<AddedTokenMatcher>> Create(
      const std::vector<AddedToken>& tokens, bool normalized);
  ~AddedTokenMatcher();

  bool empty() const { return tokens_.empty(); }

  // Splits `text` into segments covering it in order; empty text yields no segment. A special
  // token is skipped when !allow_special, leaving its text to be tokenized as text (like
  // `encode_special_tokens` in Hugging Face).
  void Split(absl::string_view text, bool allow_special, std::vector<Segment>* segments) const;

 private:
  struct Node {
    // Sorted by byte; tries here are small (tens to hundreds of tokens).
    std::vector<std::pair<uint8_t, int32_t>> children;
    int32_t token = -1;  // index into tokens_ of the token ending here
  };

  AddedTokenMatcher() = default;
  int32_t Child(int32_t node, uint8_t byte) const;
  bool IsWordChar(absl::string_view character) const;

  std::vector<AddedToken> tokens_;
  std::vector<Node> nodes_;  // nodes_[0] is the root
  std::bitset<256> first_bytes_;
  void* word_regex_ = nullptr;  // Oniguruma \w, only built when a token is single_word
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_BPE_ADDED_TOKEN_MATCHER_H_
