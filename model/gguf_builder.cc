#include "model/gguf_builder.h"

#include <cstring>

#include "model/test_bytes.h"

namespace shardserve {
namespace {

template <typename T>
void Put(std::vector<uint8_t>* out, T v) {
  uint8_t b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out->insert(out->end(), b, b + sizeof(T));
}

void PutString(std::vector<uint8_t>* out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out->insert(out->end(), s.begin(), s.end());
}

}  // namespace

GgufBuilder& GgufBuilder::SetMagic(uint32_t magic) {
  magic_ = magic;
  return *this;
}
GgufBuilder& GgufBuilder::SetVersion(uint32_t version) {
  version_ = version;
  return *this;
}
GgufBuilder& GgufBuilder::SetAlignment(uint32_t alignment) {
  alignment_ = alignment;
  return AddUint32("general.alignment", alignment);
}
GgufBuilder& GgufBuilder::OverrideTensorCount(uint64_t n) {
  tensor_count_ = n;
  return *this;
}
GgufBuilder& GgufBuilder::OverrideKvCount(uint64_t n) {
  kv_count_ = n;
  return *this;
}

template <typename T>
GgufBuilder& GgufBuilder::AddScalar(const std::string& key, GgufType type, T v) {
  std::vector<uint8_t> enc;
  Put<T>(&enc, v);
  return AddRawValue(key, static_cast<uint32_t>(type), std::move(enc));
}

GgufBuilder& GgufBuilder::AddUint8(const std::string& k, uint8_t v) {
  return AddScalar(k, GgufType::kUint8, v);
}
GgufBuilder& GgufBuilder::AddInt8(const std::string& k, int8_t v) {
  return AddScalar(k, GgufType::kInt8, v);
}
GgufBuilder& GgufBuilder::AddUint16(const std::string& k, uint16_t v) {
  return AddScalar(k, GgufType::kUint16, v);
}
GgufBuilder& GgufBuilder::AddInt16(const std::string& k, int16_t v) {
  return AddScalar(k, GgufType::kInt16, v);
}
GgufBuilder& GgufBuilder::AddUint32(const std::string& k, uint32_t v) {
  return AddScalar(k, GgufType::kUint32, v);
}
GgufBuilder& GgufBuilder::AddInt32(const std::string& k, int32_t v) {
  return AddScalar(k, GgufType::kInt32, v);
}
GgufBuilder& GgufBuilder::AddUint64(const std::string& k, uint64_t v) {
  return AddScalar(k, GgufType::kUint64, v);
}
GgufBuilder& GgufBuilder::AddInt64(const std::string& k, int64_t v) {
  return AddScalar(k, GgufType::kInt64, v);
}
GgufBuilder& GgufBuilder::AddFloat32(const std::string& k, float v) {
  return AddScalar(k, GgufType::kFloat32, v);
}
GgufBuilder& GgufBuilder::AddFloat64(const std::string& k, double v) {
  return AddScalar(k, GgufType::kFloat64, v);
}
GgufBuilder& GgufBuilder::AddBool(const std::string& k, bool v) {
  return AddScalar<uint8_t>(k, GgufType::kBool, v ? 1 : 0);
}

GgufBuilder& GgufBuilder::AddString(const std::string& key, const std::string& v) {
  std::vector<uint8_t> enc;
  PutString(&enc, v);
  return AddRawValue(key, static_cast<uint32_t>(GgufType::kString), std::move(enc));
}

GgufBuilder& GgufBuilder::AddStringArray(const std::string& key,
                                         const std::vector<std::string>& v) {
  std::vector<uint8_t> enc;
  Put<uint32_t>(&enc, static_cast<uint32_t>(GgufType::kString));
  Put<uint64_t>(&enc, v.size());
  for (const std::string& s : v) PutString(&enc, s);
  return AddRawValue(key, static_cast<uint32_t>(GgufType::kArray), std::move(enc));
}

GgufBuilder& GgufBuilder::AddInt32Array(const std::string& key, const std::vector<int32_t>& v) {
  std::vector<uint8_t> enc;
  Put<uint32_t>(&enc, static_cast<uint32_t>(GgufType::kInt32));
  Put<uint64_t>(&enc, v.size());
  for (int32_t x : v) Put<int32_t>(&enc, x);
  return AddRawValue(key, static_cast<uint32_t>(GgufType::kArray), std::move(enc));
}

GgufBuilder& GgufBuilder::AddUint8Array(const std::string& key, const std::vector<uint8_t>& v) {
  std::vector<uint8_t> enc;
  Put<uint32_t>(&enc, static_cast<uint32_t>(GgufType::kUint8));
  Put<uint64_t>(&enc, v.size());
  enc.insert(enc.end(), v.begin(), v.end());
  return AddRawValue(key, static_cast<uint32_t>(GgufType::kArray), std::move(enc));
}

GgufBuilder& GgufBuilder::AddFloat32Array(const std::string& key, const std::vector<float>& v) {
  std::vector<uint8_t> enc;
  Put<uint32_t>(&enc, static_cast<uint32_t>(GgufType::kFloat32));
  Put<uint64_t>(&enc, v.size());
  for (float x : v) Put<float>(&enc, x);
  return AddRawValue(key, static_cast<uint32_t>(GgufType::kArray), std::move(enc));
}

GgufBuilder& GgufBuilder::AddRawValue(const std::string& key, uint32_t type,
                                      std::vector<uint8_t> encoded) {
  kvs_.push_back({key, type, std::move(encoded)});
  return *this;
}

GgufBuilder& GgufBuilder::AddTensor(const std::string& name, DType dtype,
                                    const std::vector<int64_t>& shape, std::vector<uint8_t> data) {
  std::vector<uint64_t> ne(shape.rbegin(), shape.rend());
  if (data.empty()) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    data = PatternBytes(name, static_cast<size_t>(numel / BlockSize(dtype) * BlockBytes(dtype)));
  }
  return AddRawTensor(name, std::move(ne), static_cast<uint32_t>(dtype), std::move(data));
}

GgufBuilder& GgufBuilder::AddRawTensor(const std::string& name, std::vector<uint64_t> ne,
                                       uint32_t type_id, std::vector<uint8_t> data,
                                       std::optional<uint64_t> offset) {
  tensors_.push_back({name, std::move(ne), type_id, std::move(data), offset});
  return *this;
}

std::vector<uint8_t> GgufBuilder::Build() const {
  const uint64_t align = alignment_ == 0 ? 1 : alignment_;
  auto pad_to = [align](std::vector<uint8_t>* v) {
    while (v->size() % align != 0) v->push_back(0);
  };
  std::vector<uint8_t> data;
  std::vector<uint64_t> offsets;
  for (const Tensor& t : tensors_) {
    pad_to(&data);
    offsets.push_back(t.offset.has_value() ? *t.offset : data.size());
    data.insert(data.end(), t.data.begin(), t.data.end());
  }

  std::vector<uint8_t> out;
  Put<uint32_t>(&out, magic_);
  Put<uint32_t>(&out, version_);
  Put<uint64_t>(&out, tensor_count_.value_or(tensors_.size()));
  Put<uint64_t>(&out, kv_count_.value_or(kvs_.size()));
  for (const Kv& kv : kvs_) {
    PutString(&out, kv.key);
    Put<uint32_t>(&out, kv.type);
    out.insert(out.end(), kv.encoded.begin(), kv.encoded.end());
  }
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    PutString(&out, t.name);
    Put<uint32_t>(&out, static_cast<uint32_t>(t.ne.size()));
    for (uint64_t d : t.ne) Put<uint64_t>(&out, d);
    Put<uint32_t>(&out, t.type_id);
    Put<uint64_t>(&out, offsets[i]);
  }
  pad_to(&out);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

absl::Status GgufBuilder::WriteFile(const std::string& path) const {
  return WriteBytesToFile(path, Build());
}

}  // namespace shardserve
