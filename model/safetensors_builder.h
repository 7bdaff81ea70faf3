// Writes small safetensors files in memory, for tests and fuzzer seeds (testonly).
//
//   SafetensorsBuilder b;
//   b.AddTensor("model.norm.weight", "F32", {64});  // data filled with a pattern
//   std::vector<uint8_t> bytes = b.Build();
#ifndef SHARDSERVE_MODEL_SAFETENSORS_BUILDER_H_
#define SHARDSERVE_MODEL_SAFETENSORS_BUILDER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/test_bytes.h"

namespace shardserve {

class SafetensorsBuilder {
 public:
  // `dtype` as spelled in safetensors ("F32", "BF16", ...). With no `data`, the right number of
  // bytes (for F32/F16/BF16/I32/I64/F64/U8/I8/BOOL) is filled with a pattern from the name.
  SafetensorsBuilder& AddTensor(const std::string& name, const std::string& dtype,
                                const std::vector<int64_t>& shape, std::vector<uint8_t> data = {});
  SafetensorsBuilder& SetMetadata(std::map<std::string, std::string> metadata);

  std::vector<uint8_t> Build() const;
  absl::Status WriteFile(const std::string& path) const;

  // A file with this exact header text (padded with spaces to 8 bytes) followed by `data`.
  static std::vector<uint8_t> Assemble(const std::string& header_json,
                                       const std::vector<uint8_t>& data);

 private:
  struct Tensor {
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
  };
  std::vector<Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_SAFETENSORS_BUILDER_H_
