#include "model/safetensors_file.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace shardserve {
namespace {

using Json = nlohmann::json;

DType DTypeFromName(absl::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  if (name == "I32") return DType::kI32;
  if (name == "I64") return DType::kI64;
  if (name == "F64") return DType::kF64;
  return DType::kInvalid;
}

// A non-negative JSON integer, or false.
bool GetUint(const Json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  const absl::Span<const uint8_t> bytes = mapped->bytes();
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, Parse(path, bytes));
  file->file_ = std::move(mapped);
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Parse(
    std::string name, absl::Span<const uint8_t> bytes) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile(std::move(name), bytes));
  absl::Status status;
  try {
    status = file->ParseAll();
  } catch (const Json::exception& e) {  // not expected: every access is type-checked first
    status = absl::InvalidArgumentError(absl::StrCat(file->name_, ": bad header: ", e.what()));
  }
  if (!status.ok()) return status;
  return file;
}

absl::Status SafetensorsFile::ParseAll() {
  auto error = [this](absl::string_view msg) {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": ", msg));
  };
  if (bytes_.size() < 8) return error("truncated safetensors header length");
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes_.data(), 8);
  if (header_bytes > kMaxHeaderBytes) {
    return error(absl::StrCat("header length ", header_bytes, " exceeds the limit of ",
                              kMaxHeaderBytes, " bytes"));
  }
  if (header_bytes > bytes_.size() - 8) {
    return error(absl::StrCat("header length ", header_bytes, " exceeds the ", bytes_.size() - 8,
                              " bytes after it"));
  }
  const char* header = reinterpret_cast<const char*>(bytes_.data() + 8);
  const Json root = Json::parse(header, header + header_bytes, /*cb=*/nullptr,
                                /*allow_exceptions=*/false);
  if (root.is_discarded()) return error("header is not valid JSON");
  if (!root.is_object()) return error("header is not a JSON object");

  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_bytes = bytes_.size() - data_start;
  tensors_.reserve(root.size());
  for (const auto& item : root.items()) {
    const std::string& tname = item.key();
    if (tname == "__metadata__") continue;
    const std::string what = absl::StrCat("tensor '", tname, "'");
    const Json& entry = item.value();
    if (!entry.is_object()) return error(absl::StrCat(what, ": entry is not an object"));

    auto dtype_it = entry.find("dtype");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      return error(absl::StrCat(what, ": missing string 'dtype'"));
    }
    const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
    const DType dtype = DTypeFromName(dtype_name);
    if (dtype == DType::kInvalid) {
      return error(absl::StrCat(what, ": dtype ", dtype_name,
                                " is not supported (F32, F16, BF16, I32, I64, F64)"));
    }

    auto shape_it = entry.find("shape");
    if (shape_it == entry.end() || !shape_it->is_array()) {
      return error(absl::StrCat(what, ": missing array 'shape'"));
    }
    if (shape_it->size() > TensorView::kMaxDims) {
      return error(absl::StrCat(what, ": ", shape_it->size(), " dimensions (at most ",
                                TensorView::kMaxDims, ")"));
    }
    SafetensorsTensor t;
    t.name = tname;
    t.view.dtype = dtype;
    t.view.device = Device::Cpu();
    t.view.ndim = static_cast<int>(shape_it->size());
    // Zero dimensions count as one here, so that no partial product a user of the view may
    // form (a row's bytes, rows times stride) can overflow even when the tensor is empty.
    int64_t numel = 1;
    bool empty = false;
    for (int d = 0; d < t.view.ndim; ++d) {
      uint64_t dim = 0;
      if (!GetUint((*shape_it)[d], &dim) || dim > static_cast<uint64_t>(INT64_MAX)) {
        return error(absl::StrCat(what, ": shape entries must be non-negative integers"));
      }
      t.view.shape[d] = static_cast<int64_t>(dim);
      empty = empty || dim == 0;
      if (__builtin_mul_overflow(numel, std::max<int64_t>(t.view.shape[d], 1), &numel)) {
        return error(absl::StrCat(what, ": element count overflows"));
      }
    }
    int64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, BlockBytes(dtype), &nbytes)) {
      return error(absl::StrCat(what, ": byte size overflows"));
    }
    if (empty) nbytes = 0;

    auto offsets_it = entry.find("data_offsets");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !GetUint((*offsets_it)[0], &t.begin) || !GetUint((*offsets_it)[1], &t.end)) {
      return error(absl::StrCat(what, ": 'data_offsets' must be [begin, end]"));
    }
    if (t.begin > t.end || t.end > data_bytes) {
      return error(absl::StrCat(what, ": data_offsets [", t.begin, ", ", t.end,
                                ") lie outside the ", data_bytes, "-byte data section"));
    }
    if (t.end - t.begin != static_cast<uint64_t>(nbytes)) {
      return error(absl::StrCat(what, ": data_offsets span ", t.end - t.begin, " bytes but ",
                                dtype_name, " ", t.view.ShapeString(), " needs ", nbytes));
    }
    // Kernels read elements in place, so each must sit at its natural alignment (files written
    // by the safetensors library always do: the header is padded to 8 bytes).
    if ((data_start + t.begin) % BlockBytes(dtype) != 0) {
      return error(absl::StrCat(what, ": data at file offset ", data_start + t.begin,
                                " is not aligned to its ", BlockBytes(dtype), "-byte elements"));
    }
    t.view.data = const_cast<uint8_t*>(bytes_.data() + data_start + t.begin);
    tensors_.push_back(std::move(t));
  }
  std::sort(tensors_.begin(), tensors_.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) { return a.name < b.name; });
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
  return absl::OkStatus();
}

const SafetensorsTensor* SafetensorsFile::FindTensor(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<TensorView> SafetensorsFile::Get(absl::string_view name) const {
  const SafetensorsTensor* t = FindTensor(name);
  if (t == nullptr) {
    return absl::NotFoundError(absl::StrCat(name_, ": no tensor '", name, "'"));
  }
  return t->view;
}

}  // namespace shardserve
