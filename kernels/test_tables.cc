#include "kernels/test_tables.h"

#include <cmath>
#include <cstring>
#include <random>

namespace shardserve {
namespace {

constexpr int kBlock = 32;

// Half bits with a random sign (if `signed_value`) and mantissa and an exponent in
// [min_exp, max_exp] (unbiased): values of magnitude 2^min_exp .. 2^(max_exp + 1).
uint16_t RandomHalf(std::mt19937& rng, int min_exp, int max_exp, bool signed_value) {
  const uint16_t sign = signed_value ? static_cast<uint16_t>(rng() & 1) << 15 : 0;
  const int exp = min_exp + static_cast<int>(rng() % (max_exp - min_exp + 1));
  const uint16_t mantissa = static_cast<uint16_t>(rng() & 0x3ff);
  return sign | static_cast<uint16_t>((exp + 15) << 10) | mantissa;
}

void AppendU16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v & 0xff));  // little-endian, as GGUF stores it
  out.push_back(static_cast<uint8_t>(v >> 8));
}

}  // namespace

double HalfBitsToDouble(uint16_t bits) {
  const double sign = (bits >> 15) != 0 ? -1.0 : 1.0;
  const int exp = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  if (exp == 0) return sign * std::ldexp(mantissa, -24);
  if (exp == 31) return mantissa == 0 ? sign * INFINITY : NAN;
  return sign * std::ldexp(1024 + mantissa, exp - 25);
}

TensorView TestTable::view() const { return TensorView::Cpu(bytes.data(), dtype, {rows, cols}); }

TestTable MakeTestTable(DType dtype, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  TestTable t;
  t.dtype = dtype;
  t.rows = rows;
  t.cols = cols;
  t.values.reserve(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    switch (dtype) {
      case DType::kF32:
        for (int64_t c = 0; c < cols; ++c) {
          const float v = std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng);
          uint8_t raw[4];
          std::memcpy(raw, &v, 4);
          t.bytes.insert(t.bytes.end(), raw, raw + 4);
          t.values.push_back(v);
        }
        break;
      case DType::kF16:
        for (int64_t c = 0; c < cols; ++c) {
          const uint16_t h = RandomHalf(rng, -4, 0, /*signed_value=*/true);
          AppendU16(t.bytes, h);
          t.values.push_back(HalfBitsToDouble(h));
        }
        break;
      case DType::kQ8_0:
        // {fp16 d, int8 qs[32]}: value = qs[j] * d.
        for (int64_t b = 0; b < cols / kBlock; ++b) {
          const uint16_t d = RandomHalf(rng, -9, -7, /*signed_value=*/false);
          AppendU16(t.bytes, d);
          for (int j = 0; j < kBlock; ++j) {
            const int8_t q = static_cast<int8_t>(static_cast<int>(rng() % 256) - 128);
            t.bytes.push_back(static_cast<uint8_t>(q));
            t.values.push_back(q * HalfBitsToDouble(d));
          }
        }
        break;
      case DType::kQ4_1: {
        // {fp16 d, fp16 m, uint8 qs[16]}: element j < 16 is the low nibble of qs[j], element
        // j + 16 its high nibble; value = nibble * d + m.
        for (int64_t b = 0; b < cols / kBlock; ++b) {
          const uint16_t d = RandomHalf(rng, -5, -3, /*signed_value=*/false);
          const uint16_t m = RandomHalf(rng, -2, -1, /*signed_value=*/true);
          AppendU16(t.bytes, d);
          AppendU16(t.bytes, m);
          uint8_t qs[kBlock / 2];
          for (uint8_t& q : qs) q = static_cast<uint8_t>(rng() & 0xff);
          t.bytes.insert(t.bytes.end(), qs, qs + kBlock / 2);
          for (int j = 0; j < kBlock; ++j) {
            const int nibble = j < kBlock / 2 ? qs[j] & 0xf : qs[j - kBlock / 2] >> 4;
            t.values.push_back(nibble * HalfBitsToDouble(d) + HalfBitsToDouble(m));
          }
        }
        break;
      }
      default:
        return TestTable{};
    }
  }
  return t;
}

}  // namespace shardserve
