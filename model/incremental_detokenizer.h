// Streaming detokenization: token ids go in one at a time, text comes out as soon as it is
// final, never splitting a UTF-8 character.
//
// Bytes that could still become a character once the next token arrives (an incomplete
// trailing sequence, at most 3 bytes) are held back; everything before them is emitted, with
// ill-formed bytes replaced by U+FFFD exactly as Tokenizer::Decode does. So the concatenation of
// all deltas and Finish() equals Tokenizer::Decode of all the ids.
//
//   IncrementalDetokenizer detok(tokenizer, /*skip_special_tokens=*/true);
//   for (int32_t id : generated) {
//     ASSIGN_OR_RETURN(std::string delta, detok.Add(id));
//     Send(delta);  // may be empty
//   }
//   Send(detok.Finish());
//
// Not thread-safe: one instance per stream. `tokenizer` must outlive it.
#ifndef SHARDSERVE_MODEL_INCREMENTAL_DETOKENIZER_H_
#define SHARDSERVE_MODEL_INCREMENTAL_DETOKENIZER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "model/tokenizer.h"

namespace shardserve {

class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special_tokens)
      : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // Adds one token; returns the text that became final (often empty while a multi-byte
  // character is incomplete). An invalid id fails with INVALID_ARGUMENT and changes nothing.
  absl::StatusOr<std::string> Add(int32_t id);

  // Returns whatever is held back (incomplete bytes become U+FFFD) and resets the stream.
  std::string Finish();

  // Bytes held back, waiting for the rest of a character.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer& tokenizer_;
  const bool skip_special_tokens_;
  std::string pending_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_INCREMENTAL_DETOKENIZER_H_
