#include "model/safetensors_builder.h"

#include <algorithm>
#include <cstring>

#include "model/test_bytes.h"
#include "nlohmann/json.hpp"

namespace shardserve {
namespace {

size_t ElementBytes(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
  return 1;
}

}  // namespace

SafetensorsBuilder& SafetensorsBuilder::AddTensor(const std::string& name, const std::string& dtype,
                                                  const std::vector<int64_t>& shape,
                                                  std::vector<uint8_t> data) {
  if (data.empty()) {
    size_t numel = 1;
    for (int64_t d : shape) numel *= static_cast<size_t>(d);
    data = PatternBytes(name, numel * ElementBytes(dtype));
  }
  tensors_.push_back({name, dtype, shape, std::move(data)});
  return *this;
}

SafetensorsBuilder& SafetensorsBuilder::SetMetadata(std::map<std::string, std::string> metadata) {
  metadata_ = std::move(metadata);
  return *this;
}

std::vector<uint8_t> SafetensorsBuilder::Build() const {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  // Like the safetensors library: data packed without gaps, widest dtypes first, so that every
  // tensor stays aligned to its element size.
  std::vector<const Tensor*> order;
  for (const Tensor& t : tensors_) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const Tensor* a, const Tensor* b) {
    const size_t ea = ElementBytes(a->dtype), eb = ElementBytes(b->dtype);
    return ea != eb ? ea > eb : a->name < b->name;
  });
  std::vector<uint8_t> data;
  for (const Tensor* t : order) {
    const uint64_t begin = data.size();
    data.insert(data.end(), t->data.begin(), t->data.end());
    header[t->name] = {{"dtype", t->dtype},
                       {"shape", t->shape},
                       {"data_offsets", {begin, static_cast<uint64_t>(data.size())}}};
  }
  return Assemble(header.dump(), data);
}

std::vector<uint8_t> SafetensorsBuilder::Assemble(const std::string& header_json,
                                                  const std::vector<uint8_t>& data) {
  std::string header = header_json;
  while (header.size() % 8 != 0) header.push_back(' ');
  std::vector<uint8_t> out(8);
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

absl::Status SafetensorsBuilder::WriteFile(const std::string& path) const {
  return WriteBytesToFile(path, Build());
}

}  // namespace shardserve
