#include "kernels/cpu/matmul.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/swiglu.h"

namespace shardserve::cpu {
namespace {

const DType kWeightTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0,
                              DType::kQ4_1, DType::kQ8_0, DType::kQ4_K, DType::kQ6_K};

std::vector<float> RandomVec(int64_t n, std::mt19937* rng, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(*rng);
  return v;
}

// A weight matrix [n, k] stored as rows n_off .. n_off + n of a bigger padded buffer, so the
// view has strided rows.
struct Weights {
  std::vector<uint8_t> storage;
  std::vector<double> deq;  // [n, k], the dequantized values
  TensorView view;
};

Weights MakeWeights(DType type, int64_t n, int64_t k, std::mt19937* rng) {
  Weights w;
  const int64_t row = RowBytes(type, k), stride = row + 48, n_off = 2;
  w.storage.assign((n + n_off + 1) * stride, 0xab);
  w.deq.resize(n * k);
  std::vector<float> back(k);
  for (int64_t j = 0; j < n; ++j) {
    const std::vector<float> src = RandomVec(k, rng, 0.05f);
    uint8_t* dst = w.storage.data() + (j + n_off) * stride;
    QuantizeRow(type, src.data(), dst, k);
    DequantizeRow(type, dst, back.data(), k);
    for (int64_t t = 0; t < k; ++t) w.deq[j * k + t] = back[t];
  }
  w.view = TensorView::Cpu(w.storage.data() + n_off * stride, type, {n, k});
  w.view.row_stride_bytes = stride;
  return w;
}

// Bound on |MatMul - exact|: the error of quantizing x to 8 bits per block (half a step of
// amax / 127, plus the fp16 rounding of the scale) weighted by |w|, plus float rounding.
double Tolerance(DType type, const double* w, const float* x, int64_t k) {
  double tol = 0, mag = 0;
  const bool float_type = type == DType::kF32 || type == DType::kF16 || type == DType::kBF16;
  const int64_t block = BlockSize(type) == 256 ? 256 : 32;
  for (int64_t b = 0; b < k; b += block) {
    double amax = 0;
    for (int64_t t = b; t < b + block && t < k; ++t) amax = std::max(amax, std::fabs(double{x[t]}));
    for (int64_t t = b; t < b + block && t < k; ++t) {
      mag += std::fabs(w[t] * x[t]);
      if (!float_type) tol += std::fabs(w[t]) * (amax / 254 + std::fabs(double{x[t]}) / 2048);
    }
  }
  return 1.01 * tol + 2e-5 * mag + 1e-6;
}

struct Case {
  DType type;
  int64_t m;
};

TEST(MatMulTest, MatchesDequantizedReference) {
  std::mt19937 rng(5);
  const int64_t n = 37;  // odd, not a multiple of the 16-column grain
  ThreadPool pool2(2), pool3(3);
  for (DType type : kWeightTypes) {
    const int64_t k = BlockSize(type) == 256 ? 512 : 160;
    Weights w = MakeWeights(type, n, k, &rng);
    for (int64_t m : {1, 2, 3, 7, 32, 100}) {
      SCOPED_TRACE(DTypeName(type) + " m=" + std::to_string(m));
      // x rows strided inside a wider buffer; y too.
      const int64_t x_ld = k + 8, y_ld = n + 5;
      const std::vector<float> xbuf = RandomVec(m * x_ld, &rng, 1.0f);
      TensorView x = TensorView::Cpu(xbuf.data(), DType::kF32, {m, k});
      x.row_stride_bytes = x_ld * sizeof(float);
      std::vector<double> want(m * n);
      std::vector<double> tol(m * n);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t t = 0; t < k; ++t) s += w.deq[j * k + t] * xbuf[i * x_ld + t];
          want[i * n + j] = s;
          tol[i * n + j] = Tolerance(type, &w.deq[j * k], &xbuf[i * x_ld], k);
        }
      }
      std::vector<float> scalar_result;
      for (int level = 0; level <= static_cast<int>(MaxSupportedIsa()); ++level) {
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
          for (int64_t max_decode_rows : {int64_t{-1}, int64_t{0}, int64_t{1000}}) {
            MatMulOptions options;
            options.isa = static_cast<Isa>(level);
            options.max_decode_rows = max_decode_rows;
            SCOPED_TRACE(std::string(IsaName(options.isa)) +
                         " threads=" + std::to_string(pool ? pool->num_threads() : 1) +
                         " max_decode_rows=" + std::to_string(max_decode_rows));
            std::vector<float> ybuf(m * y_ld, -7.0f);
            TensorView y = TensorView::Cpu(ybuf.data(), DType::kF32, {m, n});
            y.row_stride_bytes = y_ld * sizeof(float);
            ASSERT_TRUE(MatMulWithOptions(x, w.view, y, pool, options).ok());
            for (int64_t i = 0; i < m; ++i) {
              for (int64_t j = 0; j < n; ++j) {
                ASSERT_NEAR(ybuf[i * y_ld + j], want[i * n + j], tol[i * n + j]) << i << "," << j;
              }
              for (int64_t j = n; j < y_ld; ++j) ASSERT_EQ(ybuf[i * y_ld + j], -7.0f);
            }
            // Every level computes the same integer products: only float rounding differs.
            if (level == 0 && pool == nullptr && max_decode_rows == 1000) {
              scalar_result = ybuf;
            } else if (max_decode_rows == 1000) {
              for (int64_t i = 0; i < m * y_ld; ++i) {
                ASSERT_NEAR(ybuf[i], scalar_result[i], 1e-5 * (std::fabs(scalar_result[i]) + 1))
                    << i;
              }
            }
          }
        }
      }
    }
  }
}

// Continuous batching puts a sequence's row in batches of any size: on the integer path a
// row's outputs must not depend on how many other rows share the call (nor on threading), or
// a request's greedy tokens would change with the load.
TEST(MatMulTest, RowResultsDoNotDependOnBatchSize) {
  std::mt19937 rng(11);
  const int64_t n = 53;
  ThreadPool pool2(2);
  for (DType type : kWeightTypes) {
    // Several k per type: the multi-row tiles work through the blocks in chunks (576 and 1568
    // give two and four chunks, the last one partial), the single row straight through.
    for (int64_t k : BlockSize(type) == 256 ? std::vector<int64_t>{512, 1536}
                                            : std::vector<int64_t>{192, 576, 1568}) {
      Weights w = MakeWeights(type, n, k, &rng);
      const std::vector<float> xbuf = RandomVec(16 * k, &rng, 1.0f);
      for (int level = 0; level <= static_cast<int>(MaxSupportedIsa()); ++level) {
        MatMulOptions options;
        options.isa = static_cast<Isa>(level);
        SCOPED_TRACE(DTypeName(type) + " " + IsaName(options.isa));
        std::vector<float> alone(n);
        TensorView x1 = TensorView::Cpu(xbuf.data(), DType::kF32, {1, k});
        ASSERT_TRUE(MatMulWithOptions(x1, w.view,
                                      TensorView::Cpu(alone.data(), DType::kF32, {1, n}), nullptr,
                                      options)
                        .ok());
        for (int64_t m : {2, 3, 5, 8, 13, 16}) {
          for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2}) {
            std::vector<float> batched(m * n);
            TensorView xm = TensorView::Cpu(xbuf.data(), DType::kF32, {m, k});
            ASSERT_TRUE(MatMulWithOptions(xm, w.view,
                                          TensorView::Cpu(batched.data(), DType::kF32, {m, n}),
                                          pool, options)
                            .ok());
            for (int64_t j = 0; j < n; ++j) {
              ASSERT_EQ(batched[j], alone[j]) << "k=" << k << " m=" << m << " column " << j;
            }
          }
        }
      }
    }
  }
}

// MatMulMulti is one job over several weights: each output must be exactly what MatMul gives
// for its weight alone, for mixed weight types (each packing its own x) and strided outputs, and
// so keeps MatMul's independence of the batch size.
TEST(MatMulTest, MultiMatchesSeparateCalls) {
  std::mt19937 rng(21);
  const int64_t k = 768;  // a multiple of every block size
  ThreadPool pool2(2), pool3(3);
  const DType types[][3] = {{DType::kQ4_1, DType::kQ4_1, DType::kQ4_1},
                            {DType::kQ4_0, DType::kQ8_0, DType::kQ4_1},
                            {DType::kF32, DType::kQ6_K, DType::kF16}};
  const int64_t ns[3] = {64, 37, 16};
  for (const auto& set : types) {
    std::vector<Weights> w;
    for (int i = 0; i < 3; ++i) w.push_back(MakeWeights(set[i], ns[i], k, &rng));
    for (int64_t m : {1, 3, 8, 16, 100}) {
      SCOPED_TRACE(DTypeName(set[0]) + "/" + DTypeName(set[1]) + "/" + DTypeName(set[2]) +
                   " m=" + std::to_string(m));
      const std::vector<float> xbuf = RandomVec(m * k, &rng, 1.0f);
      const TensorView x = TensorView::Cpu(xbuf.data(), DType::kF32, {m, k});
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
        std::vector<std::vector<float>> want(3), got(3);
        std::vector<TensorView> ws, ys;
        for (int i = 0; i < 3; ++i) {
          want[i].resize(m * ns[i]);
          ASSERT_TRUE(MatMul(x, w[i].view, TensorView::Cpu(want[i].data(), DType::kF32, {m, ns[i]}),
                             nullptr)
                          .ok());
          // Outputs with a wider row stride, padding left alone.
          got[i].assign(m * (ns[i] + 3), -7.0f);
          TensorView y = TensorView::Cpu(got[i].data(), DType::kF32, {m, ns[i]});
          y.row_stride_bytes = (ns[i] + 3) * sizeof(float);
          ws.push_back(w[i].view);
          ys.push_back(y);
        }
        ASSERT_TRUE(MatMulMulti(x, ws, ys, pool).ok());
        for (int i = 0; i < 3; ++i) {
          for (int64_t r = 0; r < m; ++r) {
            for (int64_t j = 0; j < ns[i] + 3; ++j) {
              const float g = got[i][r * (ns[i] + 3) + j];
              if (j < ns[i]) {
                ASSERT_EQ(g, want[i][r * ns[i] + j]) << "weight " << i << " " << r << "," << j;
              } else {
                ASSERT_EQ(g, -7.0f);
              }
            }
          }
        }
      }
    }
  }
  std::vector<float> buf(64 * 64);
  const TensorView x = TensorView::Cpu(buf.data(), DType::kF32, {1, 64});
  EXPECT_EQ(MatMulMulti(x, {}, {}, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

// MatMulSwiGlu must give exactly MatMul, MatMul, SwiGlu, at every batch size; with the
// batch-size independence of MatMul, a row's result is the same alone or in a batch.
TEST(MatMulTest, SwiGluMatchesSeparateOps) {
  std::mt19937 rng(23);
  ThreadPool pool2(2);
  for (DType type : {DType::kQ4_1, DType::kQ8_0, DType::kQ4_K, DType::kF32}) {
    const int64_t k = BlockSize(type) == 256 ? 512 : 576, n = 72;
    Weights gate = MakeWeights(type, n, k, &rng), up = MakeWeights(type, n, k, &rng);
    const std::vector<float> xbuf = RandomVec(128 * k, &rng, 1.0f);
    std::vector<float> alone(n);
    for (int64_t m : {1, 2, 9, 16, 128}) {
      SCOPED_TRACE(DTypeName(type) + " m=" + std::to_string(m));
      const TensorView x = TensorView::Cpu(xbuf.data(), DType::kF32, {m, k});
      std::vector<float> g(m * n), u(m * n), want(m * n);
      ASSERT_TRUE(
          MatMul(x, gate.view, TensorView::Cpu(g.data(), DType::kF32, {m, n}), &pool2).ok());
      ASSERT_TRUE(MatMul(x, up.view, TensorView::Cpu(u.data(), DType::kF32, {m, n}), &pool2).ok());
      SwiGlu(g.data(), u.data(), m, n, want.data(), nullptr);
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2}) {
        std::vector<float> got(m * n, -7.0f);
        ASSERT_TRUE(MatMulSwiGlu(x, gate.view, up.view,
                                 TensorView::Cpu(got.data(), DType::kF32, {m, n}), pool)
                        .ok());
        for (int64_t i = 0; i < m * n; ++i) ASSERT_EQ(got[i], want[i]) << i;
        if (m == 1) alone.assign(got.begin(), got.end());
        if (type != DType::kF32) {  // the float path switches to sgemm above 96 rows
          for (int64_t j = 0; j < n; ++j) ASSERT_EQ(got[j], alone[j]) << "row 0 column " << j;
        }
      }
    }
  }
}

TEST(MatMulTest, DefaultEntryPoint) {
  std::mt19937 rng(9);
  Weights w = MakeWeights(DType::kQ4_1, 64, 576, &rng);
  const std::vector<float> xbuf = RandomVec(576, &rng, 1.0f);
  std::vector<float> ybuf(64);
  ThreadPool pool(2);
  ASSERT_TRUE(MatMul(TensorView::Cpu(xbuf.data(), DType::kF32, {1, 576}), w.view,
                     TensorView::Cpu(ybuf.data(), DType::kF32, {1, 64}), &pool)
                  .ok());
  for (int64_t j = 0; j < 64; ++j) {
    double want = 0;
    for (int64_t t = 0; t < 576; ++t) want += w.deq[j * 576 + t] * xbuf[t];
    EXPECT_NEAR(ybuf[j], want, Tolerance(DType::kQ4_1, &w.deq[j * 576], xbuf.data(), 576));
  }
}

TEST(MatMulTest, RejectsBadArguments) {
  std::vector<float> buf(4096);
  std::vector<uint8_t> wbuf(4096);
  const TensorView x = TensorView::Cpu(buf.data(), DType::kF32, {2, 64});
  const TensorView y = TensorView::Cpu(buf.data() + 1024, DType::kF32, {2, 8});
  const TensorView w = TensorView::Cpu(wbuf.data(), DType::kQ8_0, {8, 64});
  ASSERT_TRUE(MatMul(x, w, y, nullptr).ok());

  const TensorView w_bad_k = TensorView::Cpu(wbuf.data(), DType::kQ8_0, {8, 96});
  EXPECT_EQ(MatMul(x, w_bad_k, y, nullptr).code(), absl::StatusCode::kInvalidArgument);
  const TensorView y_bad = TensorView::Cpu(buf.data() + 1024, DType::kF32, {2, 9});
  EXPECT_EQ(MatMul(x, w, y_bad, nullptr).code(), absl::StatusCode::kInvalidArgument);
  const TensorView y_rows = TensorView::Cpu(buf.data() + 1024, DType::kF32, {3, 8});
  EXPECT_EQ(MatMul(x, w, y_rows, nullptr).code(), absl::StatusCode::kInvalidArgument);
  const TensorView x_f16 = TensorView::Cpu(buf.data(), DType::kF16, {2, 64});
  EXPECT_EQ(MatMul(x_f16, w, y, nullptr).code(), absl::StatusCode::kInvalidArgument);
  const TensorView w_q8k = TensorView::Cpu(wbuf.data(), DType::kQ8_K, {2, 256});
  const TensorView x256 = TensorView::Cpu(buf.data(), DType::kF32, {2, 256});
  const TensorView y2 = TensorView::Cpu(buf.data() + 1024, DType::kF32, {2, 2});
  EXPECT_EQ(MatMul(x256, w_q8k, y2, nullptr).code(), absl::StatusCode::kInvalidArgument);
  const TensorView w3 = TensorView::Cpu(wbuf.data(), DType::kQ8_0, {2, 4, 64});
  EXPECT_EQ(MatMul(x, w3, y, nullptr).code(), absl::StatusCode::kInvalidArgument);
  TensorView w_cuda = w;
  w_cuda.device = Device::Cuda(0);
  EXPECT_EQ(MatMul(x, w_cuda, y, nullptr).code(), absl::StatusCode::kInvalidArgument);
  TensorView x_short_stride = x;
  x_short_stride.row_stride_bytes = 8;
  EXPECT_EQ(MatMul(x_short_stride, w, y, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace shardserve::cpu
