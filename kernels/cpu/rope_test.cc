#include "kernels/cpu/rope.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace shardserve::cpu {
namespace {

constexpr double kPi = 3.14159265358979323846;

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// Inverse frequencies in double, straight from the definitions.
std::vector<double> ReferenceInvFreq(const RopeConfig& c) {
  const int rot = c.rotary_dim > 0 ? c.rotary_dim : c.head_dim;
  std::vector<double> f(rot / 2);
  for (int i = 0; i < rot / 2; ++i) {
    double v = 1.0 / std::pow(static_cast<double>(c.theta), 2.0 * i / rot);
    if (c.scaling == RopeScaling::kLinear) v /= c.factor;
    if (c.scaling == RopeScaling::kLlama3) {
      const double old_len = c.original_max_position_embeddings;
      const double wavelen = 2 * kPi / v;
      if (wavelen > old_len / c.low_freq_factor) {
        v /= c.factor;
      } else if (wavelen >= old_len / c.high_freq_factor) {
        const double smooth =
            (old_len / wavelen - c.low_freq_factor) / (c.high_freq_factor - c.low_freq_factor);
        v = (1 - smooth) * v / c.factor + smooth * v;
      }
    }
    f[i] = v;
  }
  return f;
}

// Rotates one head in double. Returns the rotated head.
std::vector<double> ReferenceRotate(const float* x, const RopeConfig& c, int pos) {
  const int rot = c.rotary_dim > 0 ? c.rotary_dim : c.head_dim;
  const auto inv_freq = ReferenceInvFreq(c);
  std::vector<double> y(x, x + c.head_dim);
  for (int i = 0; i < rot / 2; ++i) {
    const int a = c.style == RopeStyle::kNeox ? i : 2 * i;
    const int b = c.style == RopeStyle::kNeox ? i + rot / 2 : 2 * i + 1;
    const double angle = pos * inv_freq[i];
    y[a] = x[a] * std::cos(angle) - x[b] * std::sin(angle);
    y[b] = x[b] * std::cos(angle) + x[a] * std::sin(angle);
  }
  return y;
}

void CheckAgainstReference(const RopeConfig& c, int num_heads, int num_kv_heads,
                           const std::vector<int32_t>& positions, ThreadPool* pool) {
  const int64_t tokens = positions.size();
  const auto q0 = Random(tokens * num_heads * c.head_dim, 11);
  const auto k0 = Random(tokens * num_kv_heads * c.head_dim, 12);
  auto q = q0;
  auto k = k0;
  RopeTable rope(c);
  rope.Apply(positions.data(), tokens, q.data(), num_heads, k.data(), num_kv_heads, pool);
  for (int64_t t = 0; t < tokens; ++t) {
    // Angles are rounded to float as Hugging Face rounds them: allow ~2 float ulp of the angle.
    const double tol = 1e-6 + 2.5e-7 * positions[t];
    for (int h = 0; h < num_heads + num_kv_heads; ++h) {
      const bool is_q = h < num_heads;
      const int64_t off =
          is_q ? (t * num_heads + h) * c.head_dim : (t * num_kv_heads + h - num_heads) * c.head_dim;
      const auto want = ReferenceRotate((is_q ? q0 : k0).data() + off, c, positions[t]);
      const float* got = (is_q ? q : k).data() + off;
      for (int d = 0; d < c.head_dim; ++d) {
        ASSERT_NEAR(got[d], want[d], tol) << "token " << t << " head " << h << " dim " << d;
      }
    }
  }
}

TEST(RopeTest, InterleavedPairsAdjacentDims) {
  RopeConfig c;
  c.head_dim = 4;
  c.theta = 10000.0f;
  c.style = RopeStyle::kInterleaved;
  RopeTable rope(c);
  float x[4] = {1.0f, 0.0f, 1.0f, 0.0f};
  const int32_t pos = 1;
  rope.ApplyOne(&pos, 1, x, 1);
  // Pair 0 turns by 1 rad, pair 1 by 1/100 rad.
  EXPECT_NEAR(x[0], std::cos(1.0), 1e-6);
  EXPECT_NEAR(x[1], std::sin(1.0), 1e-6);
  EXPECT_NEAR(x[2], std::cos(0.01), 1e-6);
  EXPECT_NEAR(x[3], std::sin(0.01), 1e-6);
}

TEST(RopeTest, NeoxPairsHalves) {
  RopeConfig c;
  c.head_dim = 4;
  c.theta = 10000.0f;
  c.style = RopeStyle::kNeox;
  RopeTable rope(c);
  float x[4] = {1.0f, 1.0f, 0.0f, 0.0f};
  const int32_t pos = 1;
  rope.ApplyOne(&pos, 1, x, 1);
  EXPECT_NEAR(x[0], std::cos(1.0), 1e-6);
  EXPECT_NEAR(x[2], std::sin(1.0), 1e-6);
  EXPECT_NEAR(x[1], std::cos(0.01), 1e-6);
  EXPECT_NEAR(x[3], std::sin(0.01), 1e-6);
}

TEST(RopeTest, BothStylesMatchReference) {
  for (RopeStyle style : {RopeStyle::kInterleaved, RopeStyle::kNeox}) {
    RopeConfig c;
    c.head_dim = 64;
    c.theta = 100000.0f;
    c.style = style;
    CheckAgainstReference(c, 9, 3, {0, 1, 2, 17, 255, 1000, 4095}, nullptr);
  }
}

TEST(RopeTest, PartialRotaryLeavesTailUntouched) {
  RopeConfig c;
  c.head_dim = 64;
  c.rotary_dim = 32;
  c.theta = 10000.0f;
  CheckAgainstReference(c, 2, 1, {5, 77}, nullptr);
}

TEST(RopeTest, LinearScalingDividesPositions) {
  RopeConfig c;
  c.head_dim = 128;
  c.theta = 10000.0f;
  c.scaling = RopeScaling::kLinear;
  c.factor = 4.0f;
  CheckAgainstReference(c, 4, 4, {3, 100, 8000}, nullptr);
  // Position 4p with factor 4 rotates like position p unscaled.
  RopeConfig plain = c;
  plain.scaling = RopeScaling::kNone;
  auto a = Random(128, 3);
  auto b = a;
  const int32_t p_scaled = 400, p_plain = 100;
  RopeTable(c).ApplyOne(&p_scaled, 1, a.data(), 1);
  RopeTable(plain).ApplyOne(&p_plain, 1, b.data(), 1);
  for (int d = 0; d < 128; ++d) EXPECT_NEAR(a[d], b[d], 1e-5);
}

TEST(RopeTest, Llama3ScalingTable) {
  // Llama 3.1 8B's rope_scaling: all three frequency bands occur at head_dim 128.
  RopeConfig c;
  c.head_dim = 128;
  c.theta = 500000.0f;
  c.scaling = RopeScaling::kLlama3;
  c.factor = 8.0f;
  c.low_freq_factor = 1.0f;
  c.high_freq_factor = 4.0f;
  c.original_max_position_embeddings = 8192;
  RopeTable rope(c);
  const auto want = ReferenceInvFreq(c);
  ASSERT_EQ(rope.inv_freq().size(), want.size());
  int kept = 0, scaled = 0, blended = 0;
  const auto plain = ReferenceInvFreq([&] {
    RopeConfig p = c;
    p.scaling = RopeScaling::kNone;
    return p;
  }());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(rope.inv_freq()[i], want[i], 1e-6 * want[i]) << i;
    const double ratio = plain[i] / want[i];
    if (std::fabs(ratio - 1.0) < 1e-9) {
      ++kept;
    } else if (std::fabs(ratio - 8.0) < 1e-6) {
      ++scaled;
    } else {
      ++blended;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(scaled, 0);
  EXPECT_GT(blended, 0);
  CheckAgainstReference(c, 8, 2, {0, 9, 131071}, nullptr);
}

TEST(RopeTest, CachedCosSinMatchesApply) {
  RopeConfig c;
  c.head_dim = 64;
  c.theta = 10000.0f;
  c.style = RopeStyle::kInterleaved;
  RopeTable rope(c);
  const std::vector<int32_t> positions = {4, 0, 99};
  auto q = Random(3 * 4 * 64, 21);
  auto k = Random(3 * 2 * 64, 22);
  auto q2 = q;
  auto k2 = k;
  rope.Apply(positions.data(), 3, q.data(), 4, k.data(), 2);
  std::vector<float> cos_sin(3 * rope.rotary_dim());
  rope.ComputeCosSin(positions.data(), 3, cos_sin.data());
  EXPECT_EQ(cos_sin[64], std::cos(0.0f));  // token 1 (position 0), first cosine
  rope.ApplyCosSin(cos_sin.data(), 3, q2.data(), 4, k2.data(), 2);
  EXPECT_EQ(q, q2);
  EXPECT_EQ(k, k2);
}

TEST(RopeTest, ThreadedMatchesReference) {
  RopeConfig c;
  c.head_dim = 128;
  c.theta = 1000000.0f;
  std::vector<int32_t> positions(300);
  for (int i = 0; i < 300; ++i) positions[i] = 7 * i;
  ThreadPool pool(3);
  CheckAgainstReference(c, 16, 4, positions, &pool);
}

}  // namespace
}  // namespace shardserve::cpu
