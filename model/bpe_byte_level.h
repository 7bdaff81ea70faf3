// GPT-2's byte-level alphabet: a fixed bijection between the 256 byte values and 256 printable
// code points, so that any byte string becomes a string of visible characters (space is "Ġ",
// newline "Ċ"). Byte-level BPE vocabularies and merges are written in this alphabet.
//
//   const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
//   std::string token = alphabet.Encode(" hi");   // "Ġhi"
//   std::string bytes;
//   alphabet.Decode(token, &bytes);               // true; bytes == " hi"
#ifndef SHARDSERVE_MODEL_BPE_BYTE_LEVEL_H_
#define SHARDSERVE_MODEL_BPE_BYTE_LEVEL_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace shardserve {

class ByteLevelAlphabet {
 public:
  // The process-wide table (immutable, safe to use from any thread).
  static const ByteLevelAlphabet& Get();

  // The code point that stands for `byte`.
  uint32_t CodePoint(uint8_t byte) const { return code_points_[byte]; }
  // The UTF-8 encoding of CodePoint(byte) (1 or 2 bytes).
  absl::string_view Utf8(uint8_t byte) const { return {utf8_[byte].data(), utf8_len_[byte]}; }

  // Maps each byte of `bytes` to its character.
  std::string Encode(absl::string_view bytes) const;
  void AppendEncoded(absl::string_view bytes, std::string* out) const;

  // Maps the characters of `text` back to bytes, appending to `*bytes`. Returns false, and
  // appends nothing, when `text` is not valid UTF-8 or holds a character outside the alphabet.
  bool Decode(absl::string_view text, std::string* bytes) const;

 private:
  ByteLevelAlphabet();

  std::array<uint32_t, 256> code_points_;
  std::array<std::array<char, 2>, 256> utf8_;
  std::array<uint8_t, 256> utf8_len_;
  // Inverse map: code points of the alphabet are all below 0x144.
  static constexpr uint32_t kMaxCodePoint = 0x144;
  std::array<int16_t, kMaxCodePoint> byte_of_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_BPE_BYTE_LEVEL_H_
