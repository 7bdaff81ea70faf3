// Reader for one safetensors file: an 8-byte little-endian header length, a JSON header mapping
// tensor names to {dtype, shape, data_offsets}, then the raw little-endian tensor data.
//
// Every header entry is checked against the file (offsets inside the data section, byte size
// equal to shape x element size, element alignment), so tensors can be used in place from the
// memory map. `__metadata__` is ignored. Readable dtypes: F32, F16, BF16 (weights) and I32, I64,
// F64; any other dtype is rejected with a message naming the tensor.
//
//   ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open("model.safetensors"));
//   ASSIGN_OR_RETURN(TensorView w, file->Get("model.norm.weight"));  // [hidden]
//
// Thread safety: immutable after parsing; safe to use from any thread.
#ifndef SHARDSERVE_MODEL_SAFETENSORS_FILE_H_
#define SHARDSERVE_MODEL_SAFETENSORS_FILE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/mapped_file.h"
#include "kernels/tensor.h"

namespace shardserve {

struct SafetensorsTensor {
  std::string name;
  TensorView view;     // packed CPU view into the file's bytes; shape outermost first
  uint64_t begin = 0;  // data_offsets, relative to the data section
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // The safetensors format's own limit on the JSON header.
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  // Maps `path` and parses it; the map lives as long as the returned object.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Parses bytes already in memory; `name` is used in messages.
  // REQUIRES: `bytes` outlives the returned object (views point into it).
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Parse(std::string name,
                                                                absl::Span<const uint8_t> bytes);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& name() const { return name_; }
  // Sorted by name.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  // nullptr when absent.
  const SafetensorsTensor* FindTensor(absl::string_view name) const;
  // NOT_FOUND naming the file and the tensor when absent.
  absl::StatusOr<TensorView> Get(absl::string_view name) const;

 private:
  SafetensorsFile(std::string name, absl::Span<const uint8_t> bytes)
      : name_(std::move(name)), bytes_(bytes) {}
  absl::Status ParseAll();

  std::string name_;
  std::unique_ptr<MappedFile> file_;  // null when parsed from caller-owned bytes
  absl::Span<const uint8_t> bytes_;
  std::vector<SafetensorsTensor> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_SAFETENSORS_FILE_H_
