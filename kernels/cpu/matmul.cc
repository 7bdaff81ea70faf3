#include "kernels/cpu/matmul.h"

#include <cblas.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/vec_dot.h"

extern "C" void openblas_set_num_threads(int num_threads);

namespace shardserve::cpu {
namespace {

// Float weights: up to this many rows of x, the row-by-row dot products beat sgemm (measured on
// the SmolLM2 shapes with AVX2; matmul_bench --max-decode-rows compares the two). Quantized
// weights always take the integer path: the multi-row integer tiles beat dequantize-then-sgemm
// at every batch size measured (a 128-row step 144 vs 250 ms, 512 rows 764 vs 970 ms, 2
// threads), and one path for every row count keeps a row's result independent of its batch.
constexpr int64_t kDefaultMaxFloatDecodeRows = 96;
// Output columns per ParallelFor grain and per dot_tile call.
constexpr int64_t kColumnGrain = 16;
// Rows of x from which MatMulDecode packs them on the pool rather than the calling thread.
constexpr int64_t kMinParallelPackRows = 4;
// F32 bytes of weights dequantized per sgemm call: large enough for sgemm to run near peak,
// small enough to stay in L2.
constexpr int64_t kDequantTileBytes = 256 * 1024;

bool IsFloatType(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

absl::Status Validate(const TensorView& x, const TensorView& w, const TensorView& y) {
  for (const TensorView* t : {&x, &w, &y}) {
    if (t->device.type != DeviceType::kCpu) {
      return absl::InvalidArgumentError("MatMul: tensors must be on the CPU");
    }
    if (t->ndim < 1 || t->data == nullptr) {
      return absl::InvalidArgumentError("MatMul: empty tensor view");
    }
  }
  if (x.dtype != DType::kF32 || y.dtype != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MatMul: x and y must be f32, got ", DTypeName(x.dtype), " and ", DTypeName(y.dtype)));
  }
  if (!HasVecDot(w.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("MatMul: unsupported weight type ", DTypeName(w.dtype)));
  }
  if (w.ndim != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("MatMul: w must be 2-D [n, k], got ", w.ShapeString()));
  }
  const int64_t k = w.dim(1), n = w.dim(0);
  if (k % BlockSize(w.dtype) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("MatMul: k = ", k, " is not a multiple of ",
                                                   DTypeName(w.dtype), "'s block size"));
  }
  if (x.cols() != k) {
    return absl::InvalidArgumentError(
        absl::StrCat("MatMul: x ", x.ShapeString(), " does not match w ", w.ShapeString()));
  }
  if (y.cols() != n || y.rows() != x.rows()) {
    return absl::InvalidArgumentError(
        absl::StrCat("MatMul: y ", y.ShapeString(), " must be [", x.rows(), ", ", n, "]"));
  }
  if (x.stride_bytes() % sizeof(float) != 0 || y.stride_bytes() % sizeof(float) != 0 ||
      x.stride_bytes() < x.row_bytes() || y.stride_bytes() < y.row_bytes() ||
      w.stride_bytes() < w.row_bytes()) {
    return absl::InvalidArgumentError("MatMul: bad row stride");
  }
  return absl::OkStatus();
}

void RunParallel(ThreadPool* pool, int64_t n, int64_t grain,
                 const std::function<void(int64_t, int64_t)>& fn) {
  if (pool == nullptr) {
    fn(0, n);
  } else {
    pool->ParallelFor(n, grain, fn);
  }
}

void MatMulDecode(const TensorView& x, const TensorView& w, const TensorView& y, ThreadPool* pool,
                  Isa isa) {
  const int64_t m = x.rows(), k = w.dim(1), n = w.dim(0);
  const VecDotKernel* kernel = GetVecDotKernel(w.dtype, isa);
  const uint8_t* xp = static_cast<const uint8_t*>(x.data);
  int64_t x_stride = x.stride_bytes();
  // The packed rows live in the calling thread's buffer; workers only read it during this call.
  thread_local std::vector<uint8_t> packed;
  if (!IsFloatType(w.dtype)) {
    x_stride = PackedActivationBytes(w.dtype, k);
    if (packed.size() < static_cast<size_t>(m * x_stride)) packed.resize(m * x_stride);
    uint8_t* dst = packed.data();
    auto pack = [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        PackActivations(w.dtype, x.row<float>(i), k, dst + i * x_stride, isa);
      }
    };
    // With several rows the packing is worth spreading over the pool; one row is not.
    if (m >= kMinParallelPackRows) {
      RunParallel(pool, m, 1, pack);
    } else {
      pack(0, m);
    }
    xp = dst;
  }
  float* y0 = y.row<float>(0);
  const int64_t y_stride = y.stride_bytes() / static_cast<int64_t>(sizeof(float));
  const int64_t w_stride = w.stride_bytes();
  RunParallel(pool, n, kColumnGrain, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; j += kColumnGrain) {
      const int64_t nw = std::min(kColumnGrain, end - j);
      kernel->dot_tile(k, w.row<uint8_t>(j), w_stride, nw, xp, x_stride, m, y0 + j, y_stride);
    }
  });
}

void MatMulPrefill(const TensorView& x, const TensorView& w, const TensorView& y, ThreadPool* pool,
                   Isa isa) {
  static std::once_flag blas_once;
  std::call_once(blas_once, [] { openblas_set_num_threads(1); });
  const int64_t m = x.rows(), k = w.dim(1), n = w.dim(0);
  const float* x0 = x.row<float>(0);
  const int64_t x_ld = x.stride_bytes() / static_cast<int64_t>(sizeof(float));
  float* y0 = y.row<float>(0);
  const int64_t y_ld = y.stride_bytes() / static_cast<int64_t>(sizeof(float));
  const bool direct = w.dtype == DType::kF32 && w.stride_bytes() % sizeof(float) == 0;
  const int64_t tile_rows = std::max<int64_t>(
      kColumnGrain,
      kDequantTileBytes / (k * static_cast<int64_t>(sizeof(float))) / kColumnGrain * kColumnGrain);
  RunParallel(pool, n, kColumnGrain, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> tile;
    for (int64_t j = begin; j < end; j += tile_rows) {
      const int64_t nw = std::min(tile_rows, end - j);
      const float* b = nullptr;
      int64_t b_ld = k;
      if (direct) {
        b = w.row<float>(j);
        b_ld = w.stride_bytes() / static_cast<int64_t>(sizeof(float));
      } else {
        if (tile.size() < static_cast<size_t>(nw * k)) tile.resize(nw * k);
        for (int64_t r = 0; r < nw; ++r) {
          DequantizeRowFast(w.dtype, w.row(j + r), &tile[r * k], k, isa);
        }
        b = tile.data();
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
                  static_cast<int>(nw), static_cast<int>(k), 1.0f, x0, static_cast<int>(x_ld), b,
                  static_cast<int>(b_ld), 0.0f, y0 + j, static_cast<int>(y_ld));
    }
  });
}

}  // namespace

absl::Status MatMulWithOptions(const TensorView& x, const TensorView& w, const TensorView& y,
                               ThreadPool* pool, const MatMulOptions& options) {
  if (absl::Status s = Validate(x, w, y); !s.ok()) return s;
  if (options.isa > MaxSupportedIsa()) {
    return absl::InvalidArgumentError(
        absl::StrCat("MatMul: this CPU does not support ", IsaName(options.isa)));
  }
  const int64_t m = x.rows();
  if (m == 0 || w.dim(0) == 0) return absl::OkStatus();
  const bool use_decode_path = options.max_decode_rows >= 0
                                   ? m <= options.max_decode_rows
                                   : !IsFloatType(w.dtype) || m <= kDefaultMaxFloatDecodeRows;
  if (use_decode_path) {
    MatMulDecode(x, w, y, pool, options.isa);
  } else {
    MatMulPrefill(x, w, y, pool, options.isa);
  }
  return absl::OkStatus();
}

absl::Status MatMul(const TensorView& x, const TensorView& w, const TensorView& y,
                    ThreadPool* pool) {
  MatMulOptions options;
  options.isa = ActiveIsa();
  return MatMulWithOptions(x, w, y, pool, options);
}

}  // namespace shardserve::cpu
