// Writes small GGUF files in memory, for tests and fuzzer seeds (testonly).
//
// Besides well-formed files it can write the malformed ones parsers must reject: raw value
// encodings, raw tensor type ids and dimensions, explicit data offsets, and header overrides.
//
//   GgufBuilder b;
//   b.AddString("general.architecture", "llama").AddUint32("llama.block_count", 2);
//   b.AddTensor("output_norm.weight", DType::kF32, {576});  // data filled with a pattern
//   std::vector<uint8_t> bytes = b.Build();
#ifndef SHARDSERVE_MODEL_GGUF_BUILDER_H_
#define SHARDSERVE_MODEL_GGUF_BUILDER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/dtype.h"
#include "model/gguf_file.h"
#include "model/test_bytes.h"

namespace shardserve {

class GgufBuilder {
 public:
  GgufBuilder& SetMagic(uint32_t magic);
  GgufBuilder& SetVersion(uint32_t version);
  // Lays tensor data out at this alignment and writes `general.alignment` (uint32).
  GgufBuilder& SetAlignment(uint32_t alignment);
  // Writes these counts in the header instead of the true ones.
  GgufBuilder& OverrideTensorCount(uint64_t n);
  GgufBuilder& OverrideKvCount(uint64_t n);

  GgufBuilder& AddUint8(const std::string& key, uint8_t v);
  GgufBuilder& AddInt8(const std::string& key, int8_t v);
  GgufBuilder& AddUint16(const std::string& key, uint16_t v);
  GgufBuilder& AddInt16(const std::string& key, int16_t v);
  GgufBuilder& AddUint32(const std::string& key, uint32_t v);
  GgufBuilder& AddInt32(const std::string& key, int32_t v);
  GgufBuilder& AddUint64(const std::string& key, uint64_t v);
  GgufBuilder& AddInt64(const std::string& key, int64_t v);
  GgufBuilder& AddFloat32(const std::string& key, float v);
  GgufBuilder& AddFloat64(const std::string& key, double v);
  GgufBuilder& AddBool(const std::string& key, bool v);
  GgufBuilder& AddString(const std::string& key, const std::string& v);
  GgufBuilder& AddStringArray(const std::string& key, const std::vector<std::string>& v);
  GgufBuilder& AddInt32Array(const std::string& key, const std::vector<int32_t>& v);
  GgufBuilder& AddUint8Array(const std::string& key, const std::vector<uint8_t>& v);
  GgufBuilder& AddFloat32Array(const std::string& key, const std::vector<float>& v);
  // A value of type `type` whose encoding (after the type id) is exactly `encoded`.
  GgufBuilder& AddRawValue(const std::string& key, uint32_t type, std::vector<uint8_t> encoded);

  // A tensor of `shape` (outermost first). With no `data`, the right number of bytes is filled
  // with a deterministic pattern derived from the name.
  GgufBuilder& AddTensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                         std::vector<uint8_t> data = {});
  // A tensor info written verbatim: `ne` innermost first, any type id, `data` appended to the
  // data section, `offset` (relative to the data section) overriding the computed one.
  GgufBuilder& AddRawTensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type_id,
                            std::vector<uint8_t> data, std::optional<uint64_t> offset = {});

  std::vector<uint8_t> Build() const;
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct Kv {
    std::string key;
    uint32_t type;
    std::vector<uint8_t> encoded;
  };
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type_id;
    std::vector<uint8_t> data;
    std::optional<uint64_t> offset;
  };
  template <typename T>
  GgufBuilder& AddScalar(const std::string& key, GgufType type, T v);

  uint32_t magic_ = 0x46554747;
  uint32_t version_ = 3;
  uint32_t alignment_ = 32;
  std::optional<uint64_t> tensor_count_;
  std::optional<uint64_t> kv_count_;
  std::vector<Kv> kvs_;
  std::vector<Tensor> tensors_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_GGUF_BUILDER_H_
