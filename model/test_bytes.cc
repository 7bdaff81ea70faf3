#include "model/test_bytes.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace shardserve {

std::vector<uint8_t> PatternBytes(const std::string& seed, size_t n) {
  uint64_t x = 1469598103934665603ull;  // FNV-1a of the seed, then xorshift
  for (char c : seed) x = (x ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<uint8_t>(x % 0x3c);
  }
  return out;
}

absl::Status WriteBytesToFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return absl::InternalError(absl::StrCat("cannot create ", path));
  const size_t written = std::fwrite(bytes.data(), 1, bytes.size(), f);
  const bool closed = std::fclose(f) == 0;
  if (written != bytes.size() || !closed) {
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace shardserve
