#include "model/bpe_byte_level.h"

#include "model/bpe_utf8.h"

namespace shardserve {

const ByteLevelAlphabet& ByteLevelAlphabet::Get() {
  static const ByteLevelAlphabet* const alphabet = new ByteLevelAlphabet();
  return *alphabet;
}

ByteLevelAlphabet::ByteLevelAlphabet() {
  // Printable Latin-1 bytes stand for themselves; the others (controls, space, 0x7F-0xA0, 0xAD)
  // take the code points from 256 upwards, in byte order.
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    code_points_[b] = printable ? static_cast<uint32_t>(b) : next++;
  }
  byte_of_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    std::string s;
    AppendUtf8(code_points_[b], &s);
    utf8_len_[b] = static_cast<uint8_t>(s.size());
    utf8_[b] = {s[0], s.size() > 1 ? s[1] : '\0'};
    byte_of_[code_points_[b]] = static_cast<int16_t>(b);
  }
}

void ByteLevelAlphabet::AppendEncoded(absl::string_view bytes, std::string* out) const {
  for (char c : bytes) {
    const absl::string_view chars = Utf8(static_cast<uint8_t>(c));
    out->append(chars.data(), chars.size());
  }
}

std::string ByteLevelAlphabet::Encode(absl::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  AppendEncoded(bytes, &out);
  return out;
}

bool ByteLevelAlphabet::Decode(absl::string_view text, std::string* bytes) const {
  const size_t old_size = bytes->size();
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t valid = Utf8ValidPrefixBytes(text.substr(pos, 4));
    if (valid == 0) {
      bytes->resize(old_size);
      return false;
    }
    size_t length;
    const uint32_t cp = DecodeUtf8At(text.substr(pos), &length);
    if (cp >= kMaxCodePoint || byte_of_[cp] < 0) {
      bytes->resize(old_size);
      return false;
    }
    bytes->push_back(static_cast<char>(byte_of_[cp]));
    pos += length;
  }
  return true;
}

}  // namespace shardserve
