// Reader for GGUF, llama.cpp's single-file model format (versions 2 and 3, little-endian).
//
// A GGUF file holds typed key/value metadata (the model's hyperparameters and its tokenizer)
// followed by tensor infos and the aligned tensor data. Parsing validates every count, length,
// type id, shape and offset against the bytes it was given, so a corrupt or hostile file yields
// an error naming the file (and the key or tensor) and never an out-of-bounds read. Tensor data
// is not copied: views point into the file's bytes.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::Open("model.gguf"));
//   ASSIGN_OR_RETURN(int64_t layers, gguf->GetInt("llama.block_count"));
//   const GgufTensorInfo* embd = gguf->FindTensor("token_embd.weight");  // [vocab, hidden]
//
// Thread safety: a GgufFile is immutable after parsing; all methods are safe to call
// concurrently.
#ifndef SHARDSERVE_MODEL_GGUF_FILE_H_
#define SHARDSERVE_MODEL_GGUF_FILE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/mapped_file.h"
#include "kernels/dtype.h"
#include "kernels/tensor.h"

namespace shardserve {

// GGUF metadata value types; the numeric values are the ids written in the file.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// "uint32", "array[string]", ...
std::string GgufTypeName(GgufType type);

struct GgufTensorInfo {
  std::string name;
  DType dtype = DType::kInvalid;
  int ndim = 0;
  std::array<int64_t, TensorView::kMaxDims> shape{};  // outermost first (GGUF's ne[] reversed)
  uint64_t offset = 0;                                // from the start of the data section
  const uint8_t* data = nullptr;                      // into the file's bytes
  int64_t nbytes = 0;

  // A packed CPU view of the whole tensor. Valid while the GgufFile lives.
  TensorView view() const;
};

class GgufFile {
 public:
  // Maps `path` and parses it. The map lives as long as the returned object.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  // Parses GGUF bytes already in memory; `name` is used in messages.
  // REQUIRES: `bytes` outlives the returned object (tensor views and metadata point into it).
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(std::string name,
                                                         absl::Span<const uint8_t> bytes);

  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // of the data section in the file

  // Metadata. Keys are listed in file order. Getters fail with NOT_FOUND for a missing key and
  // INVALID_ARGUMENT for a value of the wrong type; messages name the file and the key.
  bool Has(absl::string_view key) const;
  std::vector<std::string> Keys() const;
  // The value's type; for arrays, also the element type through `element_type`.
  absl::StatusOr<GgufType> TypeOf(absl::string_view key, GgufType* element_type = nullptr) const;
  absl::StatusOr<std::string> GetString(absl::string_view key) const;
  // Any integer type. Fails for uint64 values above INT64_MAX.
  absl::StatusOr<int64_t> GetInt(absl::string_view key) const;
  // float32, float64 or any integer type.
  absl::StatusOr<double> GetFloat(absl::string_view key) const;
  absl::StatusOr<bool> GetBool(absl::string_view key) const;
  // Number of elements of an array value.
  absl::StatusOr<uint64_t> GetArrayLength(absl::string_view key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(absl::string_view key) const;
  // Arrays of any integer type.
  absl::StatusOr<std::vector<int64_t>> GetIntArray(absl::string_view key) const;
  // Arrays of float32, float64 or any integer type.
  absl::StatusOr<std::vector<double>> GetFloatArray(absl::string_view key) const;

  // Tensors, in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  // nullptr when there is no tensor of that name.
  const GgufTensorInfo* FindTensor(absl::string_view name) const;

 private:
  // A validated metadata value, decoded on demand from the file's bytes.
  struct Value {
    std::string key;
    GgufType type = GgufType::kUint8;
    GgufType element_type = GgufType::kUint8;  // arrays only
    uint64_t count = 1;                        // array length; 1 for scalars
    absl::Span<const uint8_t> payload;         // scalar bytes, string bytes, or array elements
  };
  class Parser;

  GgufFile(std::string name, absl::Span<const uint8_t> bytes)
      : name_(std::move(name)), bytes_(bytes) {}

  absl::StatusOr<const Value*> Find(absl::string_view key) const;
  absl::Status TypeError(const Value& v, absl::string_view wanted) const;

  std::string name_;
  std::unique_ptr<MappedFile> file_;  // null when parsed from caller-owned bytes
  absl::Span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<Value> values_;
  absl::flat_hash_map<std::string, size_t> value_index_;
  std::vector<GgufTensorInfo> tensors_;
  absl::flat_hash_map<std::string, size_t> tensor_index_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_GGUF_FILE_H_
