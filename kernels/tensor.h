// A non-owning, device-aware view of a row-major tensor: what every kernel takes and returns.
//
// Shapes are listed outermost first; the last dimension is contiguous. For quantized dtypes the
// last dimension counts elements and must be a multiple of BlockSize(dtype); a row is then
// RowBytes(dtype, shape.back()) bytes. `row_stride_bytes` lets a view select rows of a larger
// buffer (a slice of heads, a shard of a weight); 0 means packed.
//
//   float buf[2 * 576];
//   TensorView x = TensorView::Cpu(buf, DType::kF32, {2, 576});  // [num_tokens, hidden]
#ifndef SHARDSERVE_KERNELS_TENSOR_H_
#define SHARDSERVE_KERNELS_TENSOR_H_

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "kernels/dtype.h"

namespace shardserve {

enum class DeviceType : uint8_t { kCpu = 0, kCuda = 1 };

struct Device {
  DeviceType type = DeviceType::kCpu;
  int index = 0;

  static Device Cpu() { return {DeviceType::kCpu, 0}; }
  static Device Cuda(int index) { return {DeviceType::kCuda, index}; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string ToString() const;
};

struct TensorView {
  static constexpr int kMaxDims = 4;

  void* data = nullptr;
  DType dtype = DType::kInvalid;
  Device device;
  int ndim = 0;
  std::array<int64_t, kMaxDims> shape{};
  int64_t row_stride_bytes = 0;  // bytes between consecutive rows (last-dim vectors); 0: packed

  static TensorView Cpu(void* data, DType dtype, std::initializer_list<int64_t> shape);
  static TensorView Cpu(const void* data, DType dtype, std::initializer_list<int64_t> shape) {
    return Cpu(const_cast<void*>(data), dtype, shape);
  }

  int64_t dim(int i) const { return shape[i < 0 ? ndim + i : i]; }
  int64_t numel() const;
  int64_t cols() const { return ndim == 0 ? 1 : shape[ndim - 1]; }
  int64_t rows() const { return numel() / (cols() == 0 ? 1 : cols()); }
  int64_t row_bytes() const { return RowBytes(dtype, cols()); }
  int64_t stride_bytes() const { return row_stride_bytes != 0 ? row_stride_bytes : row_bytes(); }
  bool is_packed() const { return row_stride_bytes == 0 || row_stride_bytes == row_bytes(); }
  int64_t nbytes() const { return rows() * row_bytes(); }

  // Pointer to row `r` (a last-dim vector), honouring row_stride_bytes.
  template <typename T = void>
  T* row(int64_t r) const {
    return reinterpret_cast<T*>(static_cast<uint8_t*>(data) + r * stride_bytes());
  }
  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data);
  }

  // Rows [begin, end) of a view flattened to 2-D [rows, cols].
  TensorView Rows(int64_t begin, int64_t end) const;
  std::string ShapeString() const;
};

}  // namespace shardserve

#endif  // SHARDSERVE_KERNELS_TENSOR_H_
