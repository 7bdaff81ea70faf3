#include "kernels/cpu/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/fp16.h"
#include "common/testing/test_env.h"
#include "gtest/gtest.h"

namespace shardserve::cpu {
namespace {

std::string FixtureDir() { return TestRunfile("tests/kernels/quant_fixtures/"); }

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

std::vector<float> ReadFloats(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadFile(path);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

struct Fixture {
  std::string name;
  DType type;
  int64_t n;
  bool has_source;
};

std::vector<Fixture> ReadIndex() {
  std::ifstream f(FixtureDir() + "index.csv");
  EXPECT_TRUE(f.good());
  std::vector<Fixture> out;
  std::string line;
  std::getline(f, line);  // header
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    std::stringstream ss(line);
    std::string name, type, n, src;
    std::getline(ss, name, ',');
    std::getline(ss, type, ',');
    std::getline(ss, n, ',');
    std::getline(ss, src, ',');
    out.push_back({name, DTypeFromGgufId(std::stoul(type)), std::stoll(n), src == "1"});
  }
  return out;
}

// Blobs and values written by the `gguf` package's own implementation of the formats.
TEST(QuantizeTest, DequantizeMatchesGgufFixtures) {
  const std::vector<Fixture> fixtures = ReadIndex();
  ASSERT_EQ(fixtures.size(), 7u);
  for (const Fixture& fx : fixtures) {
    SCOPED_TRACE(fx.name);
    ASSERT_TRUE(CanDequantize(fx.type));
    const std::vector<uint8_t> blob = ReadFile(FixtureDir() + fx.name + ".blob");
    const std::vector<float> want = ReadFloats(FixtureDir() + fx.name + ".f32");
    ASSERT_EQ(static_cast<int64_t>(blob.size()), RowBytes(fx.type, fx.n));
    ASSERT_EQ(static_cast<int64_t>(want.size()), fx.n);
    std::vector<float> got(fx.n);
    DequantizeRow(fx.type, blob.data(), got.data(), fx.n);
    for (int64_t i = 0; i < fx.n; ++i) {
      // Same operations in the same order, so equal bits (1 ulp allowed for libm differences).
      const int64_t ulps = std::abs(static_cast<int64_t>(Bits(got[i])) - Bits(want[i]));
      ASSERT_LE(ulps, 1) << "element " << i << ": " << got[i] << " vs " << want[i];
    }
  }
}

TEST(QuantizeTest, QuantizeMatchesGgufFixturesBytewise) {
  int checked = 0;
  for (const Fixture& fx : ReadIndex()) {
    if (!fx.has_source) continue;
    SCOPED_TRACE(fx.name);
    const std::vector<uint8_t> blob = ReadFile(FixtureDir() + fx.name + ".blob");
    const std::vector<float> src = ReadFloats(FixtureDir() + fx.name + ".src.f32");
    std::vector<uint8_t> got(RowBytes(fx.type, fx.n));
    QuantizeRow(fx.type, src.data(), got.data(), fx.n);
    ASSERT_EQ(got.size(), blob.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i], blob[i]) << "byte " << i << " of block " << i / BlockBytes(fx.type);
    }
    ++checked;
  }
  EXPECT_EQ(checked, 4);
}

std::vector<float> RandomRow(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

TEST(QuantizeTest, Q8_1MatchesPlainMath) {
  const int64_t n = 128;
  std::vector<float> x = RandomRow(n, 1);
  std::fill(x.begin() + 32, x.begin() + 64, 0.0f);
  std::vector<BlockQ8_1> q(n / 32);
  QuantizeRow(DType::kQ8_1, x.data(), q.data(), n);
  for (int b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    const float d = amax / 127;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int want = amax == 0 ? 0 : static_cast<int>(std::round(x[32 * b + j] / d));
      EXPECT_NEAR(q[b].qs[j], want, 1) << b << " " << j;  // 1/d vs division may differ at ties
      sum += q[b].qs[j];
    }
    EXPECT_EQ(q[b].d, FloatToFp16(d));
    EXPECT_EQ(q[b].s, FloatToFp16(sum * d));
  }
}

TEST(QuantizeTest, Q8_KMatchesPlainMath) {
  const int64_t n = 512;
  std::vector<float> x = RandomRow(n, 2);
  std::fill(x.begin() + 256, x.end(), 0.0f);  // second block all zero
  std::vector<BlockQ8_K> q(n / 256);
  QuantizeRow(DType::kQ8_K, x.data(), q.data(), n);
  float amax = 0;
  for (int j = 0; j < 256; ++j) amax = std::max(amax, std::fabs(x[j]));
  EXPECT_NEAR(std::fabs(q[0].d), amax / 127, amax * 1e-6);
  for (int j = 0; j < 256; ++j) {
    EXPECT_NEAR(q[0].qs[j] * q[0].d, x[j], std::fabs(q[0].d) * 0.5001f);
  }
  for (int s = 0; s < 16; ++s) {
    int sum = 0;
    for (int l = 0; l < 16; ++l) sum += q[0].qs[16 * s + l];
    EXPECT_EQ(q[0].bsums[s], sum);
    EXPECT_EQ(q[1].bsums[s], 0);
  }
  EXPECT_EQ(q[1].d, 0.0f);
  std::vector<float> back(n);
  DequantizeRow(DType::kQ8_K, q.data(), back.data(), n);
  EXPECT_EQ(back[300], 0.0f);
}

// Reference quantizers of the K types: round trip within the step of each sub-block's scale.
TEST(QuantizeTest, KTypesRoundTrip) {
  const int64_t n = 1024;
  for (DType type : {DType::kQ4_K, DType::kQ6_K}) {
    SCOPED_TRACE(DTypeName(type));
    std::vector<float> x = RandomRow(n, 3);
    for (int j = 256; j < 512; ++j) x[j] = std::fabs(x[j]) + 0.5f;  // positive-only block
    std::fill(x.begin() + 512, x.begin() + 768, 0.0f);              // zero block
    std::vector<uint8_t> q(RowBytes(type, n));
    QuantizeRow(type, x.data(), q.data(), n);
    std::vector<float> back(n);
    DequantizeRow(type, q.data(), back.data(), n);
    const int sub = type == DType::kQ4_K ? 32 : 16;
    const float levels = type == DType::kQ4_K ? 15.0f : 63.0f;
    for (int64_t s = 0; s < n / sub; ++s) {
      float lo = 0, hi = 0;
      for (int l = 0; l < sub; ++l) {
        lo = std::min(lo, x[s * sub + l]);
        hi = std::max(hi, x[s * sub + l]);
      }
      // The step plus the error of 6-bit (or 8-bit) scales.
      const float tol = (hi - lo) / levels * 1.0f + (hi - lo) * 0.06f + 1e-6f;
      for (int l = 0; l < sub; ++l) {
        ASSERT_NEAR(back[s * sub + l], x[s * sub + l], tol) << s << " " << l;
      }
    }
    for (int j = 512; j < 768; ++j) ASSERT_EQ(back[j], 0.0f);
  }
}

// The documented Q4_K scale packing, written out independently of UnpackQ4KScales.
TEST(QuantizeTest, Q4KScalePacking) {
  uint8_t sc[8] = {1, 22, 63, 40, 33, 17, 63, 5};
  uint8_t mn[8] = {0, 9, 31, 62, 48, 1, 60, 63};
  uint8_t packed[12];
  for (int j = 0; j < 4; ++j) {
    packed[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
    packed[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
    packed[j + 8] = (sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4);
  }
  for (int j = 0; j < 8; ++j) {
    uint8_t s, m;
    UnpackQ4KScales(packed, j, &s, &m);
    EXPECT_EQ(s, sc[j]) << j;
    EXPECT_EQ(m, mn[j]) << j;
  }
}

TEST(QuantizeTest, FastDequantizeMatchesReference) {
  const int64_t n = 512 + 256;
  const std::vector<float> x = RandomRow(n, 4);
  for (DType type : {DType::kF16, DType::kBF16, DType::kQ4_0, DType::kQ4_1, DType::kQ8_0,
                     DType::kQ4_K, DType::kQ6_K}) {
    std::vector<uint8_t> q(RowBytes(type, n));
    QuantizeRow(type, x.data(), q.data(), n);
    std::vector<float> want(n);
    DequantizeRow(type, q.data(), want.data(), n);
    for (int level = 0; level <= static_cast<int>(MaxSupportedIsa()); ++level) {
      SCOPED_TRACE(DTypeName(type) + " " + IsaName(static_cast<Isa>(level)));
      std::vector<float> got(n + 1, 42.0f);
      DequantizeRowFast(type, q.data(), got.data(), n, static_cast<Isa>(level));
      for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(got[i], want[i], 1e-6f * std::fabs(want[i]));
      ASSERT_EQ(got[n], 42.0f);
    }
  }
  // F16 rows whose length is not a multiple of the vector width.
  std::vector<uint16_t> h(13);
  for (size_t i = 0; i < h.size(); ++i) h[i] = FloatToFp16(x[i]);
  std::vector<float> want(13), got(13);
  DequantizeRow(DType::kF16, h.data(), want.data(), 13);
  DequantizeRowFast(DType::kF16, h.data(), got.data(), 13, MaxSupportedIsa());
  EXPECT_EQ(got, want);
}

TEST(QuantizeTest, FloatTypes) {
  const float x[4] = {1.0f, -2.5f, 65504.0f, 3.14159f};
  uint16_t h[4];
  float back[4];
  QuantizeRow(DType::kF16, x, h, 4);
  DequantizeRow(DType::kF16, h, back, 4);
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[2], 65504.0f);
  EXPECT_NEAR(back[3], 3.14159f, 2e-3f);
  QuantizeRow(DType::kBF16, x, h, 4);
  DequantizeRow(DType::kBF16, h, back, 4);
  EXPECT_EQ(back[1], -2.5f);
  EXPECT_NEAR(back[3], 3.14159f, 2e-2f);
}

}  // namespace
}  // namespace shardserve::cpu
