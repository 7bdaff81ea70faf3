#include "kernels/cpu/elementwise.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu/vec_exp.h"

namespace shardserve::cpu {
namespace {

// Below this many elements a parallel job costs more than it saves.
constexpr int64_t kParallelMin = 1 << 16;

template <typename Fn>
void ForRange(int64_t n, ThreadPool* pool, const Fn& fn) {
  if (pool == nullptr || n < kParallelMin) {
    fn(0, n);
  } else {
    pool->ParallelFor(n, 4096, fn);
  }
}

inline float BitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Branch-free so the loop vectorises: shifting the half's exponent and mantissa into a float's
// and multiplying by 2^112 re-biases the exponent (15 -> 127) and turns half subnormals into
// float normals exactly; only inf/NaN need their exponent forced to all ones.
inline float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp_mant = static_cast<uint32_t>(h & 0x7fffu) << 13;
  const float magnitude = BitsToFloat(exp_mant) * BitsToFloat(0x77800000u);  // * 2^112
  uint32_t bits;
  std::memcpy(&bits, &magnitude, sizeof(bits));
  const bool inf_or_nan = (h & 0x7c00u) == 0x7c00u;
  bits = inf_or_nan ? (exp_mant | 0x7f800000u) : bits;
  return BitsToFloat(bits | sign);
}

}  // namespace

void AddInPlace(float* x, const float* y, int64_t n, ThreadPool* pool) {
  ForRange(n, pool, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] += y[i];
  });
}

void AddBias(float* x, const float* bias, int64_t rows, int64_t cols, ThreadPool* pool) {
  auto run = [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* row = x + r * cols;
      for (int64_t c = 0; c < cols; ++c) row[c] += bias[c];
    }
  };
  if (pool == nullptr || rows * cols < kParallelMin) {
    run(0, rows);
  } else {
    pool->ParallelFor(rows, 1, run);
  }
}

void Scale(float* x, float scale, int64_t n, ThreadPool* pool) {
  ForRange(n, pool, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) x[i] *= scale;
  });
}

void SigmoidGatedAdd(const float* x, const float* gate, const float* shared_out, int64_t num_tokens,
                     int64_t hidden, float* out) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* xt = x + t * hidden;
    double dot = 0.0;
#pragma omp simd reduction(+ : dot)
    for (int64_t i = 0; i < hidden; ++i) dot += static_cast<double>(xt[i]) * gate[i];
    const float g = static_cast<float>(1.0 / (1.0 + std::exp(-dot)));
    const float* st = shared_out + t * hidden;
    float* ot = out + t * hidden;
    for (int64_t i = 0; i < hidden; ++i) ot[i] += g * st[i];
  }
}

void SoftmaxRows(float* x, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * cols;
    float max = -INFINITY;
    for (int64_t c = 0; c < cols; ++c) max = row[c] > max ? row[c] : max;
    // Rows can be vocabulary-sized: a float sum would lose digits.
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < cols; ++c) {
      const float e = ExpF(row[c] - max);
      row[c] = e;
      sum += e;
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t c = 0; c < cols; ++c) row[c] *= inv;
  }
}

int64_t Argmax(const float* x, int64_t n) {
  int64_t best = -1;
  float best_value = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) continue;
    if (best < 0 || x[i] > best_value) {
      best = i;
      best_value = x[i];
    }
  }
  return best;
}

void ArgmaxRows(const float* x, int64_t rows, int64_t cols, int32_t* out) {
  for (int64_t r = 0; r < rows; ++r) out[r] = static_cast<int32_t>(Argmax(x + r * cols, cols));
}

void F16ToFloat(const uint16_t* src, int64_t n, float* dst, ThreadPool* pool) {
  ForRange(n, pool, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dst[i] = HalfBitsToFloat(src[i]);
  });
}

void Bf16ToFloat(const uint16_t* src, int64_t n, float* dst, ThreadPool* pool) {
  ForRange(n, pool, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dst[i] = BitsToFloat(static_cast<uint32_t>(src[i]) << 16);
  });
}

}  // namespace shardserve::cpu
