#include "kernels/cpu/rope.h"

#include <algorithm>
#include <cmath>

#include "glog/logging.h"

namespace shardserve::cpu {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Llama 3.1 scaling: wavelengths longer than original_max / low_freq_factor are stretched by
// `factor`, shorter than original_max / high_freq_factor are kept, and the band in between is
// blended linearly in 1 / wavelength. Float arithmetic in the order of Hugging Face's
// _compute_llama3_parameters, so the tables agree bit for bit in the common cases.
float Llama3InvFreq(float inv_freq, const RopeConfig& c) {
  const float old_context_len = static_cast<float>(c.original_max_position_embeddings);
  const float low_freq_wavelen = old_context_len / c.low_freq_factor;
  const float high_freq_wavelen = old_context_len / c.high_freq_factor;
  const float wavelen = static_cast<float>(2.0 * kPi) / inv_freq;
  if (wavelen < high_freq_wavelen) return inv_freq;
  if (wavelen > low_freq_wavelen) return inv_freq / c.factor;
  const float smooth = (old_context_len / wavelen - c.low_freq_factor) /
                       static_cast<float>(c.high_freq_factor - c.low_freq_factor);
  return (1.0f - smooth) * inv_freq / c.factor + smooth * inv_freq;
}

}  // namespace

RopeTable::RopeTable(const RopeConfig& config)
    : config_(config), rotary_dim_(config.rotary_dim > 0 ? config.rotary_dim : config.head_dim) {
  CHECK_GT(config_.head_dim, 0);
  CHECK(rotary_dim_ % 2 == 0 && rotary_dim_ <= config_.head_dim)
      << "rotary_dim " << rotary_dim_ << " head_dim " << config_.head_dim;
  CHECK_GT(config_.factor, 0.0f);
  if (config_.scaling == RopeScaling::kLlama3) {
    CHECK_GT(config_.high_freq_factor, config_.low_freq_factor);
  }
  const int half = rotary_dim_ / 2;
  inv_freq_.resize(half);
  for (int i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(rotary_dim_);
    const float base_pow =
        static_cast<float>(std::pow(static_cast<double>(config_.theta), exponent));
    float f = 1.0f / base_pow;
    switch (config_.scaling) {
      case RopeScaling::kNone:
        break;
      case RopeScaling::kLinear:
        f /= config_.factor;
        break;
      case RopeScaling::kLlama3:
        f = Llama3InvFreq(f, config_);
        break;
    }
    inv_freq_[i] = f;
  }
}

void RopeTable::RotateHead(const float* cos, const float* sin, float* x) const {
  const int half = rotary_dim_ / 2;
  if (config_.style == RopeStyle::kNeox) {
    float* x0 = x;
    float* x1 = x + half;
    for (int i = 0; i < half; ++i) {
      const float a = x0[i];
      const float b = x1[i];
      x0[i] = a * cos[i] - b * sin[i];
      x1[i] = b * cos[i] + a * sin[i];
    }
  } else {
    for (int i = 0; i < half; ++i) {
      const float a = x[2 * i];
      const float b = x[2 * i + 1];
      x[2 * i] = a * cos[i] - b * sin[i];
      x[2 * i + 1] = b * cos[i] + a * sin[i];
    }
  }
}

void RopeTable::ComputeCosSin(const int32_t* positions, int64_t num_tokens, float* cos_sin) const {
  const int half = rotary_dim_ / 2;
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float pos = static_cast<float>(positions[t]);
    float* cos = cos_sin + t * rotary_dim_;
    float* sin = cos + half;
    for (int i = 0; i < half; ++i) {
      const float angle = pos * inv_freq_[i];
      cos[i] = std::cos(angle);
      sin[i] = std::sin(angle);
    }
  }
}

void RopeTable::ApplyCosSin(const float* cos_sin, int64_t num_tokens, float* q, int num_heads,
                            float* k, int num_kv_heads, ThreadPool* pool) const {
  const int half = rotary_dim_ / 2;
  const int64_t head_dim = config_.head_dim;
  if (k == nullptr) num_kv_heads = 0;
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* cos = cos_sin + t * rotary_dim_;
      const float* sin = cos + half;
      for (int h = 0; h < num_heads; ++h) {
        RotateHead(cos, sin, q + (t * num_heads + h) * head_dim);
      }
      for (int h = 0; h < num_kv_heads; ++h) {
        RotateHead(cos, sin, k + (t * num_kv_heads + h) * head_dim);
      }
    }
  };
  const int64_t work = num_tokens * (num_heads + num_kv_heads) * head_dim;
  if (pool == nullptr || work < (1 << 15)) {
    run(0, num_tokens);
  } else {
    pool->ParallelFor(num_tokens, 4, run);
  }
}

void RopeTable::Apply(const int32_t* positions, int64_t num_tokens, float* q, int num_heads,
                      float* k, int num_kv_heads, ThreadPool* pool) const {
  std::vector<float> cos_sin(num_tokens * rotary_dim_);
  ComputeCosSin(positions, num_tokens, cos_sin.data());
  ApplyCosSin(cos_sin.data(), num_tokens, q, num_heads, k, num_kv_heads, pool);
}

}  // namespace shardserve::cpu
