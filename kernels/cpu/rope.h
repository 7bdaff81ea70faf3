// Rotary position embeddings (RoPE) applied in place to query and key heads.
//
// Two pairings of the rotated dimensions exist in the wild:
//   kInterleaved: pairs (2i, 2i + 1); GGUF models converted for llama.cpp's "normal" mode.
//   kNeox:        pairs (i, i + rotary_dim / 2); Hugging Face's rotate_half (Llama, Qwen, ...).
// Pair i turns by angle pos * inv_freq[i], inv_freq[i] = theta^(-2i / rotary_dim), optionally
// rescaled for long contexts (linear, or Llama 3.1's smooth per-band scaling).
//
//   RopeConfig config;
//   config.head_dim = 64;
//   config.theta = 100000.0f;
//   RopeTable rope(config);
//   rope.Apply(positions, num_tokens, q, num_heads, k, num_kv_heads, &pool);
#ifndef SHARDSERVE_KERNELS_CPU_ROPE_H_
#define SHARDSERVE_KERNELS_CPU_ROPE_H_

#include <cstdint>
#include <vector>

#include "common/thread_pool.h"

namespace shardserve::cpu {

enum class RopeStyle { kInterleaved, kNeox };

enum class RopeScaling {
  kNone,
  kLinear,  // position interpolation: angles use pos / factor
  kLlama3,  // Hugging Face rope_type "llama3"
};

struct RopeConfig {
  int head_dim = 0;
  // Leading dimensions of each head that are rotated; the rest pass through. 0: head_dim.
  int rotary_dim = 0;
  float theta = 10000.0f;
  RopeStyle style = RopeStyle::kNeox;
  RopeScaling scaling = RopeScaling::kNone;
  float factor = 1.0f;  // kLinear and kLlama3
  // kLlama3 only.
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

// Per-dimension inverse frequencies, computed once per model. Immutable after construction, so
// one table may be shared by threads.
class RopeTable {
 public:
  // REQUIRES: head_dim > 0 and even rotary_dim <= head_dim; factor > 0; for kLlama3
  // high_freq_factor > low_freq_factor.
  explicit RopeTable(const RopeConfig& config);

  const RopeConfig& config() const { return config_; }
  int rotary_dim() const { return rotary_dim_; }
  // [rotary_dim / 2], scaling already applied.
  const std::vector<float>& inv_freq() const { return inv_freq_; }

  // Rotates q and k in place. Angles are float(pos) * inv_freq[i] rounded to float, then
  // cos/sin, as Hugging Face computes them.
  // positions: [num_tokens]
  // q:         [num_tokens, num_heads, head_dim]
  // k:         [num_tokens, num_kv_heads, head_dim]; may be null (then num_kv_heads is ignored)
  void Apply(const int32_t* positions, int64_t num_tokens, float* q, int num_heads, float* k,
             int num_kv_heads, ThreadPool* pool = nullptr) const;

  // Rotates one tensor [num_tokens, num_heads, head_dim] in place.
  void ApplyOne(const int32_t* positions, int64_t num_tokens, float* x, int num_heads,
                ThreadPool* pool = nullptr) const {
    Apply(positions, num_tokens, x, num_heads, nullptr, 0, pool);
  }

  // The same in two steps, so that a model computes the cos/sin of a step's positions once and
  // every layer reuses them (the trigonometry would otherwise cost as much as the rotation).
  // cos_sin: [num_tokens, rotary_dim]; per token the rotary_dim / 2 cosines, then the sines.
  void ComputeCosSin(const int32_t* positions, int64_t num_tokens, float* cos_sin) const;
  void ApplyCosSin(const float* cos_sin, int64_t num_tokens, float* q, int num_heads, float* k,
                   int num_kv_heads, ThreadPool* pool = nullptr) const;

 private:
  void RotateHead(const float* cos, const float* sin, float* x) const;

  RopeConfig config_;
  int rotary_dim_;
  std::vector<float> inv_freq_;
};

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_ROPE_H_
