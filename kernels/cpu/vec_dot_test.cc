#include "kernels/cpu/vec_dot.h"

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/fp16.h"
#include "gtest/gtest.h"
#include "kernels/cpu/quantize.h"

namespace shardserve::cpu {
namespace {

const DType kWeightTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0,
                              DType::kQ4_1, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K};

std::vector<float> RandomVec(int64_t n, std::mt19937* rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(*rng);
  return v;
}

bool IsQ8Act(DType t) { return t == DType::kQ4_0 || t == DType::kQ4_1 || t == DType::kQ8_0; }

// The activation values a packed row stands for, decoded from the layout documented in
// vec_dot.h (written out here independently of the kernels' index helper).
std::vector<double> UnpackActivations(DType w, const uint8_t* p, int64_t k) {
  std::vector<double> v(k);
  if (w == DType::kF32 || w == DType::kF16 || w == DType::kBF16) {
    const auto* f = reinterpret_cast<const float*>(p);
    for (int64_t j = 0; j < k; ++j) v[j] = f[j];
  } else if (IsQ8Act(w)) {
    const int64_t nb = k / 32;
    const auto* qs = reinterpret_cast<const int8_t*>(p);
    std::vector<float> ds(2 * nb);
    std::memcpy(ds.data(), p + k, ds.size() * sizeof(float));
    const bool paired = w != DType::kQ8_0;
    for (int64_t b = 0; b < nb; ++b) {
      for (int j = 0; j < 32; ++j) {
        int64_t pos = 32 * b + j;
        if (paired && !(b == nb - 1 && nb % 2 == 1)) {
          const int64_t pair = b / 2, second = b % 2;
          pos = 64 * pair + (j < 16 ? 16 * second + j : 32 + 16 * second + (j - 16));
        }
        v[32 * b + j] = static_cast<double>(qs[pos]) * ds[2 * b];
      }
    }
  } else {
    std::vector<float> f(k);
    DequantizeRow(DType::kQ8_K, p, f.data(), k);
    for (int64_t j = 0; j < k; ++j) v[j] = f[j];
  }
  return v;
}

TEST(VecDotTest, PackQ8FollowsLlamaCppQuantizer) {
  std::mt19937 rng(7);
  const int64_t k = 160;  // five blocks: two pairs and an odd one
  std::vector<float> x = RandomVec(k, &rng);
  std::vector<uint8_t> packed(PackedActivationBytes(DType::kQ4_1, k));
  PackActivations(DType::kQ4_1, x.data(), k, packed.data());
  const std::vector<double> back = UnpackActivations(DType::kQ4_1, packed.data(), k);
  std::vector<float> ds(2 * k / 32);
  std::memcpy(ds.data(), packed.data() + k, ds.size() * sizeof(float));
  for (int64_t b = 0; b < k / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    const float d = Fp16ToFloat(FloatToFp16(amax / 127));
    EXPECT_EQ(ds[2 * b], d);
    double sum = 0;
    for (int j = 0; j < 32; ++j) {
      const double q = back[32 * b + j] / d;
      EXPECT_EQ(q, std::nearbyint(x[32 * b + j] * (127.0f / amax)));
      sum += q;
    }
    // s is fp16(unrounded d * sum), as Q8_1 blocks store it.
    EXPECT_EQ(ds[2 * b + 1], Fp16ToFloat(FloatToFp16((amax / 127) * static_cast<float>(sum))));
  }
}

TEST(VecDotTest, PackingIsTheSameOnEveryIsa) {
  std::mt19937 rng(8);
  for (DType type : kWeightTypes) {
    for (int64_t k : {256, 288, 576}) {
      if (k % BlockSize(type) != 0) continue;
      std::vector<float> x = RandomVec(k, &rng);
      std::fill(x.begin(), x.begin() + 32, 0.0f);  // a zero block
      std::vector<uint8_t> want(PackedActivationBytes(type, k));
      PackActivations(type, x.data(), k, want.data(), Isa::kScalar);
      for (int level = 1; level <= static_cast<int>(MaxSupportedIsa()); ++level) {
        std::vector<uint8_t> got(want.size());
        PackActivations(type, x.data(), k, got.data(), static_cast<Isa>(level));
        EXPECT_EQ(got, want) << DTypeName(type) << " k=" << k << " level " << level;
      }
    }
  }
}

// Every kernel against float math on the values it reads, and every ISA against the scalar one.
TEST(VecDotTest, KernelsMatchReferenceOnEveryIsa) {
  std::mt19937 rng(11);
  for (DType type : kWeightTypes) {
    const bool k_type = BlockSize(type) == 256;
    for (int64_t k : k_type ? std::vector<int64_t>{256, 512, 1536}
                            : std::vector<int64_t>{32, 64, 96, 160, 192, 576, 1536}) {
      SCOPED_TRACE(DTypeName(type) + " k=" + std::to_string(k));
      const int64_t nw = 5, nx = 6;
      const int64_t w_row = RowBytes(type, k), w_stride = w_row + 64;
      std::vector<uint8_t> w(nw * w_stride);
      std::vector<std::vector<double>> wf(nw, std::vector<double>(k));
      for (int64_t j = 0; j < nw; ++j) {
        const std::vector<float> src = RandomVec(k, &rng, 0.05f);
        QuantizeRow(type, src.data(), w.data() + j * w_stride, k);
        std::vector<float> back(k);
        DequantizeRow(type, w.data() + j * w_stride, back.data(), k);
        for (int64_t t = 0; t < k; ++t) wf[j][t] = back[t];
      }
      const int64_t x_stride = PackedActivationBytes(type, k) + 32;
      std::vector<uint8_t> x(nx * x_stride);
      std::vector<std::vector<double>> xf(nx);
      for (int64_t i = 0; i < nx; ++i) {
        const std::vector<float> src = RandomVec(k, &rng, 2.0f);
        PackActivations(type, src.data(), k, x.data() + i * x_stride);
        xf[i] = UnpackActivations(type, x.data() + i * x_stride, k);
      }
      const int64_t y_stride = nw + 3;
      std::vector<float> y_scalar(nx * y_stride);
      GetVecDotKernel(type, Isa::kScalar)
          ->dot_tile(k, w.data(), w_stride, nw, x.data(), x_stride, nx, y_scalar.data(), y_stride);
      for (int64_t i = 0; i < nx; ++i) {
        for (int64_t j = 0; j < nw; ++j) {
          double want = 0, mag = 0;
          for (int64_t t = 0; t < k; ++t) {
            want += wf[j][t] * xf[i][t];
            mag += std::fabs(wf[j][t] * xf[i][t]);
          }
          if (type == DType::kQ4_1) {
            // The min term uses the activation block's stored s = fp16(d * sum), as Q8_1 does,
            // not the exact d * sum that the unpacked activations give.
            const auto* wb = reinterpret_cast<const BlockQ4_1*>(w.data() + j * w_stride);
            const auto* ds = reinterpret_cast<const float*>(x.data() + i * x_stride + k);
            for (int64_t b = 0; b < k / 32; ++b) {
              double exact_sum = 0;
              for (int t = 0; t < 32; ++t) exact_sum += xf[i][32 * b + t];
              want += Fp16ToFloat(wb[b].m) * (ds[2 * b + 1] - exact_sum);
            }
          }
          ASSERT_NEAR(y_scalar[i * y_stride + j], want, 1e-5 * mag + 1e-6) << i << "," << j;
        }
      }
      for (int level = 1; level <= static_cast<int>(MaxSupportedIsa()); ++level) {
        const Isa isa = static_cast<Isa>(level);
        SCOPED_TRACE(IsaName(isa));
        // Every sub-tile shape, so the kernels' row-group remainders are all exercised.
        for (int64_t sub_nx = 1; sub_nx <= nx; ++sub_nx) {
          std::vector<float> y(nx * y_stride, -1.0f);
          GetVecDotKernel(type, isa)->dot_tile(k, w.data(), w_stride, nw, x.data(), x_stride,
                                               sub_nx, y.data(), y_stride);
          for (int64_t i = 0; i < sub_nx; ++i) {
            for (int64_t j = 0; j < nw; ++j) {
              double mag = 0;
              for (int64_t t = 0; t < k; ++t) mag += std::fabs(wf[j][t] * xf[i][t]);
              ASSERT_NEAR(y[i * y_stride + j], y_scalar[i * y_stride + j], 1e-5 * mag + 1e-6)
                  << "nx=" << sub_nx << " " << i << "," << j;
            }
            ASSERT_EQ(y[i * y_stride + nw], -1.0f);  // wrote nothing past the tile
          }
        }
      }
    }
  }
}

TEST(VecDotTest, FloatKernelsHandleAnyLength) {
  std::mt19937 rng(3);
  for (int64_t k : {1, 7, 9, 33, 100}) {
    std::vector<float> w = RandomVec(k, &rng), x = RandomVec(k, &rng);
    double want = 0;
    for (int64_t t = 0; t < k; ++t) want += static_cast<double>(w[t]) * x[t];
    for (int level = 0; level <= static_cast<int>(MaxSupportedIsa()); ++level) {
      float y = 0;
      GetVecDotKernel(DType::kF32, static_cast<Isa>(level))
          ->dot_tile(k, reinterpret_cast<const uint8_t*>(w.data()), 0, 1,
                     reinterpret_cast<const uint8_t*>(x.data()), 0, 1, &y, 0);
      EXPECT_NEAR(y, want, 1e-4) << k << " " << level;
    }
  }
}

TEST(VecDotTest, Registry) {
  EXPECT_EQ(GetVecDotKernel(DType::kQ8_K, Isa::kAvx2), nullptr);
  EXPECT_FALSE(HasVecDot(DType::kI32));
  for (DType t : kWeightTypes) {
    EXPECT_TRUE(HasVecDot(t));
    EXPECT_EQ(GetVecDotKernel(t, Isa::kScalar)->isa, Isa::kScalar);
    EXPECT_LE(GetVecDotKernel(t, Isa::kAvx512)->isa, Isa::kAvx512);
  }
}

}  // namespace
}  // namespace shardserve::cpu
