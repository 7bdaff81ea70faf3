#include "kernels/cpu/attention_tile.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "common/fp16.h"
#include "gtest/gtest.h"

namespace shardserve::cpu {
namespace {

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

std::vector<const AttentionTileKernels*> Implementations() {
  std::vector<const AttentionTileKernels*> impls = {&AttentionTileScalar()};
  if (MaxSupportedIsa() >= Isa::kAvx2) impls.push_back(&AttentionTileAvx2());
  return impls;
}

TEST(AttentionTileTest, QkMatchesDotProducts) {
  for (const AttentionTileKernels* kern : Implementations()) {
    for (int head_dim : {8, 64, 128}) {
      for (int m : {1, 2, 3, 4, 5, 7, 12}) {
        for (int n : {1, 3, 8, 13, 64}) {
          const int ld = 64;
          const auto q = Random(m * head_dim, m * 100 + n);
          const auto k = Random(n * head_dim * 2, n);
          std::vector<const float*> rows(n);
          // Rows in reverse order and spaced apart, as scattered cache rows are.
          for (int j = 0; j < n; ++j) rows[j] = k.data() + (n - 1 - j) * 2 * head_dim;
          std::vector<float> s(m * ld, 0.0f);
          kern->qk(q.data(), m, head_dim, rows.data(), n, s.data(), ld);
          for (int i = 0; i < m; ++i) {
            for (int j = 0; j < n; ++j) {
              double want = 0.0;
              for (int d = 0; d < head_dim; ++d) {
                want += static_cast<double>(q[i * head_dim + d]) * rows[j][d];
              }
              ASSERT_NEAR(s[i * ld + j], want, 1e-5)
                  << IsaName(kern->isa) << " d=" << head_dim << " m=" << m << " n=" << n;
            }
          }
        }
      }
    }
  }
}

TEST(AttentionTileTest, PvAccumulatesWeightedRows) {
  for (const AttentionTileKernels* kern : Implementations()) {
    for (int head_dim : {8, 24, 64, 128}) {
      for (int m : {1, 2, 3, 4, 6, 9}) {
        for (int n : {1, 5, 64}) {
          const int ld = 64;
          const auto p = Random(m * ld, m + n);
          const auto v = Random(n * head_dim, n + 7);
          std::vector<const float*> rows(n);
          for (int j = 0; j < n; ++j) rows[j] = v.data() + j * head_dim;
          auto o = Random(m * head_dim, 99);
          const auto o0 = o;
          kern->pv(p.data(), ld, m, rows.data(), n, head_dim, o.data());
          for (int i = 0; i < m; ++i) {
            for (int d = 0; d < head_dim; ++d) {
              double want = o0[i * head_dim + d];
              for (int j = 0; j < n; ++j) want += static_cast<double>(p[i * ld + j]) * rows[j][d];
              ASSERT_NEAR(o[i * head_dim + d], want, 1e-5)
                  << IsaName(kern->isa) << " d=" << head_dim << " m=" << m << " n=" << n;
            }
          }
        }
      }
    }
  }
}

TEST(AttentionTileTest, SoftmaxStep) {
  const float inf = std::numeric_limits<float>::infinity();
  for (const AttentionTileKernels* kern : Implementations()) {
    for (int n : {1, 7, 8, 9, 64}) {
      // A first step from the empty state, then a step whose scores raise the maximum.
      float row_max = -inf, row_sum = 0.0f;
      double want_sum = 0.0;
      for (int step = 0; step < 2; ++step) {
        auto s = Random(n, 10 * n + step);
        for (float& x : s) x = x * 20.0f + 10.0f * step;
        if (n > 2) s[1] = -inf;  // a masked key
        const auto s0 = s;
        const float old_max = row_max;
        const float alpha = kern->softmax_step(s.data(), n, &row_max, &row_sum);
        double new_max = old_max;
        for (float x : s0) new_max = std::max<double>(new_max, x);
        ASSERT_EQ(row_max, new_max);
        const double want_alpha = std::exp(static_cast<double>(old_max) - new_max);
        ASSERT_NEAR(alpha, want_alpha, 3e-7 * want_alpha);
        want_sum *= want_alpha;
        for (int j = 0; j < n; ++j) {
          // The kernel subtracts in float, as any float softmax does; exp itself must be exact
          // to a few ulp, or flushed to 0 below FLT_MIN.
          const float diff = s0[j] - row_max;
          const double want = std::exp(static_cast<double>(diff));
          want_sum += want;
          ASSERT_NEAR(s[j], want, 3e-7 * want + 1.2e-38)
              << IsaName(kern->isa) << " n=" << n << " j=" << j;
        }
        EXPECT_NEAR(row_sum, want_sum, 1e-6 * want_sum);
      }
    }
    // All scores masked: nothing changes.
    std::vector<float> s(9, -inf);
    float row_max = -inf, row_sum = 0.0f;
    EXPECT_EQ(kern->softmax_step(s.data(), 9, &row_max, &row_sum), 1.0f);
    EXPECT_EQ(row_max, -inf);
    EXPECT_EQ(row_sum, 0.0f);
    for (float x : s) EXPECT_EQ(x, 0.0f);
  }
}

// Random values as halves, and the same values as floats.
struct HalfRows {
  std::vector<uint16_t> h;
  std::vector<float> f;
};

HalfRows RandomHalves(size_t n, uint32_t seed) {
  HalfRows r;
  for (float x : Random(n, seed)) {
    r.h.push_back(FloatToFp16(4.0f * x));
    r.f.push_back(Fp16ToFloat(r.h.back()));
  }
  return r;
}

TEST(AttentionTileTest, F16KernelsEqualF32KernelsOnTheConvertedRows) {
  for (const AttentionTileKernels* kern : Implementations()) {
    for (int head_dim : {8, 64, 128}) {
      for (int m : {1, 2, 3, 4, 5, 12}) {
        for (int n : {1, 3, 8, 13, 64}) {
          const int ld = 64;
          const auto q = Random(m * head_dim, m * 31 + n);
          const HalfRows k = RandomHalves(n * head_dim * 2, n + 3);
          std::vector<const uint16_t*> rows16(n);
          std::vector<const float*> rows32(n);
          for (int j = 0; j < n; ++j) {
            rows16[j] = k.h.data() + (n - 1 - j) * 2 * head_dim;
            rows32[j] = k.f.data() + (n - 1 - j) * 2 * head_dim;
          }
          std::vector<float> s16(m * ld, 0.0f), s32(m * ld, 0.0f);
          kern->qk_f16(q.data(), m, head_dim, rows16.data(), n, s16.data(), ld);
          kern->qk(q.data(), m, head_dim, rows32.data(), n, s32.data(), ld);
          ASSERT_EQ(s16, s32) << IsaName(kern->isa) << " qk d=" << head_dim << " m=" << m
                              << " n=" << n;

          // Probabilities with some exact zeros, as masked keys have.
          auto p = Random(m * ld, m + 5 * n);
          for (size_t i = 0; i < p.size(); i += 3) p[i] = 0.0f;
          auto o16 = Random(m * head_dim, 99), o32 = o16;
          kern->pv_f16(p.data(), ld, m, rows16.data(), n, head_dim, o16.data());
          kern->pv(p.data(), ld, m, rows32.data(), n, head_dim, o32.data());
          ASSERT_EQ(o16, o32) << IsaName(kern->isa) << " pv d=" << head_dim << " m=" << m
                              << " n=" << n;
        }
      }
    }
  }
}

TEST(AttentionTileTest, ToF16RoundsToNearestEven) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {0.0f,    -0.0f,  1.0f,  -2.5f, 65504.0f, 65520.0f,       -1e9f,
                          inf,     -inf,   6e-8f, 3e-8f, 1e-10f,   1.00048828125f, 1.00146484375f,
                          2049.0f, 2051.0f};
  for (float v : Random(1000, 7)) x.push_back(v * 300.0f);
  for (float v : Random(1000, 8)) x.push_back(v * 1e-5f);
  for (const AttentionTileKernels* kern : Implementations()) {
    for (int n : {1, 7, 8, 9, static_cast<int>(x.size())}) {
      std::vector<uint16_t> h(n);
      kern->to_f16(x.data(), n, h.data());
      for (int i = 0; i < n; ++i) {
        ASSERT_EQ(h[i], FloatToFp16(x[i])) << IsaName(kern->isa) << " x=" << x[i];
      }
    }
    const float nan = std::numeric_limits<float>::quiet_NaN();
    uint16_t h;
    kern->to_f16(&nan, 1, &h);
    EXPECT_TRUE(std::isnan(Fp16ToFloat(h))) << IsaName(kern->isa);
  }
  // Ties go to the even neighbour: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10.
  EXPECT_EQ(FloatToFp16(1.00048828125f), FloatToFp16(1.0f));
  EXPECT_EQ(Fp16ToFloat(FloatToFp16(2049.0f)), 2048.0f);
  EXPECT_EQ(Fp16ToFloat(FloatToFp16(2051.0f)), 2052.0f);
}

}  // namespace
}  // namespace shardserve::cpu
