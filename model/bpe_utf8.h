// UTF-8 helpers shared by the tokenizer pieces.
//
// The replacement rule is the one Python's `bytes.decode("utf-8", errors="replace")` and Rust's
// `String::from_utf8_lossy` both follow (Unicode's "maximal subpart" practice): every maximal
// prefix of a well-formed sequence that cannot be completed, and every byte that cannot start a
// sequence, becomes one U+FFFD.
//
//   std::string clean = Utf8Lossy("caf\xC3");          // "caf\xEF\xBF\xBD"
//   size_t held = Utf8IncompleteTailBytes("caf\xC3");   // 1: wait for the next byte
#ifndef SHARDSERVE_MODEL_BPE_UTF8_H_
#define SHARDSERVE_MODEL_BPE_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace shardserve {

// Length of the longest prefix of `bytes` that is well-formed UTF-8.
size_t Utf8ValidPrefixBytes(absl::string_view bytes);

inline bool IsValidUtf8(absl::string_view bytes) {
  return Utf8ValidPrefixBytes(bytes) == bytes.size();
}

// `bytes` with every ill-formed part replaced by U+FFFD (see the file comment).
std::string Utf8Lossy(absl::string_view bytes);

// The number of trailing bytes of `bytes` (0 to 3) that form a proper prefix of a well-formed
// sequence: bytes that may still become a character once more bytes arrive. Decoding everything
// before them gives the same text whatever follows.
size_t Utf8IncompleteTailBytes(absl::string_view bytes);

// Appends the UTF-8 encoding of `code_point` (REQUIRES: a Unicode scalar value).
void AppendUtf8(uint32_t code_point, std::string* out);

// Decodes the character at the start of `bytes` (REQUIRES: non-empty, well-formed). Returns its
// code point and sets `*length` to its byte count.
uint32_t DecodeUtf8At(absl::string_view bytes, size_t* length);

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_BPE_UTF8_H_
