#include "model/bpe_utf8.h"

namespace shardserve {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";

// Scans one sequence at `bytes[pos]`. Returns the number of bytes of the well-formed character
// there, or 0 when it is ill-formed; in that case `*bad_length` is the length of its maximal
// subpart (at least 1), and `*truncated` tells whether the subpart ran into the end of the input
// (so more bytes could still complete it).
size_t ScanSequence(absl::string_view bytes, size_t pos, size_t* bad_length, bool* truncated) {
  const auto b0 = static_cast<uint8_t>(bytes[pos]);
  *truncated = false;
  if (b0 < 0x80) return 1;
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *bad_length = 1;
    return 0;
  }
  for (size_t i = 1; i <= need; ++i) {
    if (pos + i >= bytes.size()) {
      *bad_length = i;
      *truncated = true;
      return 0;
    }
    const auto b = static_cast<uint8_t>(bytes[pos + i]);
    const uint8_t min = i == 1 ? lo : 0x80;
    const uint8_t max = i == 1 ? hi : 0xBF;
    if (b < min || b > max) {
      *bad_length = i;
      return 0;
    }
  }
  return need + 1;
}

}  // namespace

size_t Utf8ValidPrefixBytes(absl::string_view bytes) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    if (static_cast<uint8_t>(bytes[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t bad_length;
    bool truncated;
    const size_t n = ScanSequence(bytes, pos, &bad_length, &truncated);
    if (n == 0) return pos;
    pos += n;
  }
  return pos;
}

std::string Utf8Lossy(absl::string_view bytes) {
  size_t valid = Utf8ValidPrefixBytes(bytes);
  if (valid == bytes.size()) return std::string(bytes);
  std::string out(bytes.substr(0, valid));
  out.reserve(bytes.size() + 8);
  size_t pos = valid;
  while (pos < bytes.size()) {
    size_t bad_length;
    bool truncated;
    const size_t n = ScanSequence(bytes, pos, &bad_length, &truncated);
    if (n > 0) {
      out.append(bytes.data() + pos, n);
      pos += n;
    } else {
      out.append(kReplacement);
      pos += bad_length;
    }
  }
  return out;
}

size_t Utf8IncompleteTailBytes(absl::string_view bytes) {
  // A character is at most 4 bytes, so only a lead byte among the last 3 can start an incomplete
  // one. Scan from the earliest candidate: the first sequence that runs into the end decides.
  const size_t start = bytes.size() > 3 ? bytes.size() - 3 : 0;
  for (size_t pos = start; pos < bytes.size(); ++pos) {
    const auto b = static_cast<uint8_t>(bytes[pos]);
    if (b < 0xC2 || b > 0xF4) continue;  // ASCII, continuation or never-valid byte
    size_t bad_length;
    bool truncated;
    if (ScanSequence(bytes, pos, &bad_length, &truncated) == 0 && truncated) {
      return bytes.size() - pos;
    }
  }
  return 0;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint32_t DecodeUtf8At(absl::string_view bytes, size_t* length) {
  const auto b0 = static_cast<uint8_t>(bytes[0]);
  if (b0 < 0x80) {
    *length = 1;
    return b0;
  }
  size_t n;
  uint32_t cp;
  if (b0 < 0xE0) {
    n = 2;
    cp = b0 & 0x1F;
  } else if (b0 < 0xF0) {
    n = 3;
    cp = b0 & 0x0F;
  } else {
    n = 4;
    cp = b0 & 0x07;
  }
  for (size_t i = 1; i < n; ++i) cp = (cp << 6) | (static_cast<uint8_t>(bytes[i]) & 0x3F);
  *length = n;
  return cp;
}

}  // namespace shardserve
