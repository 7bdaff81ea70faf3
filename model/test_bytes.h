// Byte helpers shared by the test file builders (testonly).
#ifndef SHARDSERVE_MODEL_TEST_BYTES_H_
#define SHARDSERVE_MODEL_TEST_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace shardserve {

// `n` deterministic bytes derived from `seed`. Every byte is below 0x3c, so any run of them
// decodes to a small finite value in F32, F16, BF16 and the quantized formats' scales.
std::vector<uint8_t> PatternBytes(const std::string& seed, size_t n);

// Writes `bytes` to `path`, replacing it.
absl::Status WriteBytesToFile(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_TEST_BYTES_H_
