#include "kernels/cpu/matmul.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/quantize.h"
#include "kernels/cpu/swiglu.h"
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

// Activation rows packed for one weight type's kernel. The rows live in the calling thread's
// buffer (one per slot, so that several packings can be live at once); workers only read them
// during the call that packed them.
struct PackedX {
  const uint8_t* data = nullptr;
  int64_t stride = 0;  // bytes
};

PackedX PackX(const TensorView& x, DType wtype, int64_t k, int slot, ThreadPool* pool, Isa isa) {
  const int64_t m = x.rows();
  if (IsFloatType(wtype)) return {static_cast<const uint8_t*>(x.data), x.stride_bytes()};
  thread_local std::vector<uint8_t> buffers[kMaxSharedInputs];
  std::vector<uint8_t>& packed = buffers[slot];
  const int64_t stride = PackedActivationBytes(wtype, k);
  if (packed.size() < static_cast<size_t>(m * stride)) packed.resize(m * stride);
  uint8_t* dst = packed.data();
  auto pack = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      PackActivations(wtype, x.row<float>(i), k, dst + i * stride, isa);
    }
  };
  // With several rows the packing is worth spreading over the pool; one row is not.
  if (m >= kMinParallelPackRows) {
    RunParallel(pool, m, 1, pack);
  } else {
    pack(0, m);
  }
  return {dst, stride};
}

// Output columns [j, j + nw) of y = x . w^T, nw <= kColumnGrain, into y_j[i * y_stride + c]
// for column j + c.
inline void DecodeTile(const VecDotKernel* kernel, const TensorView& w, const PackedX& xp,
                       int64_t m, int64_t j, int64_t nw, float* y_j, int64_t y_stride) {
  kernel->dot_tile(w.dim(1), w.row<uint8_t>(j), w.stride_bytes(), nw, xp.data, xp.stride, m, y_j,
                   y_stride);
}

int64_t NumTiles(int64_t n) { return (n + kColumnGrain - 1) / kColumnGrain; }

void MatMulDecode(const TensorView& x, const TensorView& w, const TensorView& y, ThreadPool* pool,
                  Isa isa) {
  const int64_t m = x.rows(), n = w.dim(0);
  const VecDotKernel* kernel = GetVecDotKernel(w.dtype, isa);
  const PackedX xp = PackX(x, w.dtype, w.dim(1), 0, pool, isa);
  float* y0 = y.row<float>(0);
  const int64_t y_stride = y.stride_bytes() / static_cast<int64_t>(sizeof(float));
  RunParallel(pool, NumTiles(n), 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t j = t * kColumnGrain;
      DecodeTile(kernel, w, xp, m, j, std::min(kColumnGrain, n - j), y0 + j, y_stride);
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
  // Fixed column tiles, whichever thread takes them: sgemm's rounding may depend on the shape
  // of the call, and the pool's split of the work varies from call to call.
  RunParallel(pool, (n + tile_rows - 1) / tile_rows, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> tile;
    for (int64_t j = begin * tile_rows; j < std::min(n, end * tile_rows); j += tile_rows) {
      const int64_t nw = std::min(tile_rows, n - j);
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

namespace {

bool UseDecodePath(const TensorView& x, const TensorView& w) {
  return !IsFloatType(w.dtype) || x.rows() <= kDefaultMaxFloatDecodeRows;
}

}  // namespace

absl::Status MatMulMulti(const TensorView& x, absl::Span<const TensorView> ws,
                         absl::Span<const TensorView> ys, ThreadPool* pool) {
  if (ws.size() != ys.size() || ws.empty() || ws.size() > kMaxSharedInputs) {
    return absl::InvalidArgumentError(
        absl::StrCat("MatMulMulti: ", ws.size(), " weights and ", ys.size(), " outputs"));
  }
  bool decode = true;
  for (size_t i = 0; i < ws.size(); ++i) {
    if (absl::Status s = Validate(x, ws[i], ys[i]); !s.ok()) return s;
    decode = decode && UseDecodePath(x, ws[i]);
  }
  const int64_t m = x.rows();
  if (!decode || m == 0) {
    for (size_t i = 0; i < ws.size(); ++i) RETURN_IF_ERROR(MatMul(x, ws[i], ys[i], pool));
    return absl::OkStatus();
  }
  const Isa isa = ActiveIsa();
  // Per weight: its kernel, its packed x (shared by weights of one type), and where its column
  // tiles start in the joint list.
  const VecDotKernel* kernels[kMaxSharedInputs];
  PackedX packed[kMaxSharedInputs];
  int64_t first_tile[kMaxSharedInputs + 1];
  first_tile[0] = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    kernels[i] = GetVecDotKernel(ws[i].dtype, isa);
    size_t same = 0;
    while (same < i && !(ws[same].dtype == ws[i].dtype && ws[same].dim(1) == ws[i].dim(1))) {
      ++same;
    }
    packed[i] = same < i ? packed[same]
                         : PackX(x, ws[i].dtype, ws[i].dim(1), static_cast<int>(i), pool, isa);
    first_tile[i + 1] = first_tile[i] + NumTiles(ws[i].dim(0));
  }
  const int num = static_cast<int>(ws.size());
  RunParallel(pool, first_tile[num], 1, [&](int64_t begin, int64_t end) {
    int i = 0;
    for (int64_t t = begin; t < end; ++t) {
      while (t >= first_tile[i + 1]) ++i;
      const TensorView& w = ws[i];
      const int64_t j = (t - first_tile[i]) * kColumnGrain;
      DecodeTile(kernels[i], w, packed[i], m, j, std::min(kColumnGrain, w.dim(0) - j),
                 ys[i].row<float>(0) + j,
                 ys[i].stride_bytes() / static_cast<int64_t>(sizeof(float)));
    }
  });
  return absl::OkStatus();
}

absl::Status MatMulSwiGlu(const TensorView& x, const TensorView& w_gate, const TensorView& w_up,
                          const TensorView& out, ThreadPool* pool) {
  if (absl::Status s = Validate(x, w_gate, out); !s.ok()) return s;
  if (absl::Status s = Validate(x, w_up, out); !s.ok()) return s;
  const int64_t m = x.rows(), n = w_gate.dim(0);
  if (out.stride_bytes() != out.row_bytes()) {
    return absl::InvalidArgumentError("MatMulSwiGlu: out must be packed");
  }
  if (!UseDecodePath(x, w_gate) || !UseDecodePath(x, w_up)) {
    thread_local std::vector<float> up;
    up.resize(m * n);
    const TensorView up_view = TensorView::Cpu(up.data(), DType::kF32, {m, n});
    RETURN_IF_ERROR(MatMul(x, w_gate, out, pool));
    RETURN_IF_ERROR(MatMul(x, w_up, up_view, pool));
    SwiGlu(out.row<float>(0), up.data(), m, n, out.row<float>(0), pool);
    return absl::OkStatus();
  }
  if (m == 0) return absl::OkStatus();
  const Isa isa = ActiveIsa();
  const VecDotKernel* gate_kernel = GetVecDotKernel(w_gate.dtype, isa);
  const VecDotKernel* up_kernel = GetVecDotKernel(w_up.dtype, isa);
  const PackedX gate_x = PackX(x, w_gate.dtype, w_gate.dim(1), 0, pool, isa);
  const PackedX up_x =
      w_up.dtype == w_gate.dtype ? gate_x : PackX(x, w_up.dtype, w_up.dim(1), 1, pool, isa);
  float* out0 = out.row<float>(0);
  // Each tile's gate and up products go to a small buffer of the thread that computes them and
  // are combined there, while they are in its cache. SwiGlu works element by element, so the
  // result is the same as over the whole matrices.
  RunParallel(pool, NumTiles(n), 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> tile;
    tile.resize(2 * m * kColumnGrain);
    float* gate = tile.data();
    float* up = gate + m * kColumnGrain;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t j = t * kColumnGrain;
      const int64_t nw = std::min(kColumnGrain, n - j);
      DecodeTile(gate_kernel, w_gate, gate_x, m, j, nw, gate, kColumnGrain);
      DecodeTile(up_kernel, w_up, up_x, m, j, nw, up, kColumnGrain);
      // One call over the whole tile (a last, narrower tile's unused columns included).
      SwiGlu(gate, up, 1, m * kColumnGrain, gate, nullptr);
      for (int64_t i = 0; i < m; ++i) {
        std::memcpy(out0 + i * n + j, gate + i * kColumnGrain, nw * sizeof(float));
      }
    }
  });
  return absl::OkStatus();
}

absl::Status MatMul(const TensorView& x, const TensorView& w, const TensorView& y,
                    ThreadPool* pool) {
  MatMulOptions options;
  options.isa = ActiveIsa();
  return MatMulWithOptions(x, w, y, pool, options);
}

}  // namespace shardserve::cpu
