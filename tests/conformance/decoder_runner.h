// Test helper: runs a Decoder over one sequence with its own KV cache (blocks assigned in order),
// exposing the logits of every prefill position and of each decode step.
#ifndef SHARDSERVE_TESTS_CONFORMANCE_DECODER_RUNNER_H_
#define SHARDSERVE_TESTS_CONFORMANCE_DECODER_RUNNER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "model/decoder.h"
#include "model/weight_source.h"
#include "worker/kv_cache.h"

namespace shardserve {

class DecoderRunner {
 public:
  static absl::StatusOr<std::unique_ptr<DecoderRunner>> Open(const std::string& model_path,
                                                             int threads, int64_t max_tokens);

  const ModelConfig& config() const { return decoder_->config(); }

  // Appends `tokens` to the sequence in chunks of at most `chunk` tokens; returns the logits of
  // every appended token, [tokens.size(), vocab] row-major.
  absl::StatusOr<std::vector<float>> Append(const std::vector<int32_t>& tokens, int64_t chunk);

 private:
  std::unique_ptr<WeightSource> weights_;
  std::unique_ptr<Decoder> decoder_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<ThreadPool> pool_;
  int64_t length_ = 0;
};

// Reads a whole file of little-endian float32.
std::vector<float> ReadF32File(const std::string& path);

}  // namespace shardserve

#endif  // SHARDSERVE_TESTS_CONFORMANCE_DECODER_RUNNER_H_
