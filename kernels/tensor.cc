#include "kernels/tensor.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace shardserve {

std::string Device::ToString() const {
  return type == DeviceType::kCpu ? "cpu" : absl::StrCat("cuda:", index);
}

TensorView TensorView::Cpu(void* data, DType dtype, std::initializer_list<int64_t> shape) {
  TensorView t;
  t.data = data;
  t.dtype = dtype;
  t.device = Device::Cpu();
  t.ndim = 0;
  for (int64_t d : shape) t.shape[t.ndim++] = d;
  return t;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

TensorView TensorView::Rows(int64_t begin, int64_t end) const {
  TensorView t = *this;
  t.data = row(begin);
  t.ndim = 2;
  t.shape = {end - begin, cols(), 0, 0};
  return t;
}

std::string TensorView::ShapeString() const {
  return absl::StrCat("[", absl::StrJoin(shape.begin(), shape.begin() + ndim, ", "), "]");
}

}  // namespace shardserve
