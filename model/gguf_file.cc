#include "model/gguf_file.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shardserve {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint64_t kMaxAlignment = uint64_t{1} << 30;
constexpr uint32_t kMaxTypeId = 12;
// Smallest possible encodings, used to reject counts the remaining bytes cannot hold before
// anything is allocated for them.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;                  // key length, type, a one-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // name length, n_dims, ne[0],
                                                             // type, offset

struct TypeInfo {
  const char* name;
  uint64_t bytes;  // of one element; 0 for strings and arrays
  bool is_integer;
};

// Indexed by GgufType id.
constexpr TypeInfo kTypes[kMaxTypeId + 1] = {
    {"uint8", 1, true},    {"int8", 1, true},   {"uint16", 2, true},   {"int16", 2, true},
    {"uint32", 4, true},   {"int32", 4, true},  {"float32", 4, false}, {"bool", 1, false},
    {"string", 0, false},  {"array", 0, false}, {"uint64", 8, true},   {"int64", 8, true},
    {"float64", 8, false},
};

uint64_t ScalarBytes(GgufType t) { return kTypes[static_cast<uint32_t>(t)].bytes; }
bool IsIntegerType(GgufType t) { return kTypes[static_cast<uint32_t>(t)].is_integer; }
bool IsFloatType(GgufType t) { return t == GgufType::kFloat32 || t == GgufType::kFloat64; }

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // GGUF is little-endian, as are the hosts we build for
  return v;
}

bool Set(int64_t v, int64_t* out) {
  *out = v;
  return true;
}

// Decodes an integer element at `p`. False when it is not an integer or does not fit int64_t.
bool LoadInt(GgufType t, const uint8_t* p, int64_t* out) {
  switch (t) {
    case GgufType::kUint8:
      return Set(Load<uint8_t>(p), out);
    case GgufType::kInt8:
      return Set(Load<int8_t>(p), out);
    case GgufType::kUint16:
      return Set(Load<uint16_t>(p), out);
    case GgufType::kInt16:
      return Set(Load<int16_t>(p), out);
    case GgufType::kUint32:
      return Set(Load<uint32_t>(p), out);
    case GgufType::kInt32:
      return Set(Load<int32_t>(p), out);
    case GgufType::kInt64:
      return Set(Load<int64_t>(p), out);
    case GgufType::kUint64: {
      const uint64_t v = Load<uint64_t>(p);
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
      return Set(static_cast<int64_t>(v), out);
    }
    default:
      return false;
  }
}

double LoadNumber(GgufType t, const uint8_t* p) {
  if (t == GgufType::kFloat32) return Load<float>(p);
  if (t == GgufType::kFloat64) return Load<double>(p);
  if (t == GgufType::kUint64) return static_cast<double>(Load<uint64_t>(p));
  int64_t v = 0;
  LoadInt(t, p, &v);
  return static_cast<double>(v);
}

// Names of ggml tensor types that exist but that we do not read, for messages.
const char* KnownGgmlTypeName(uint32_t id) {
  static constexpr std::pair<uint32_t, const char*> kNames[] = {
      {6, "q5_0"},     {7, "q5_1"},    {10, "q2_k"},    {11, "q3_k"},  {13, "q5_k"},
      {16, "iq2_xxs"}, {17, "iq2_xs"}, {18, "iq3_xxs"}, {19, "iq1_s"}, {20, "iq4_nl"},
      {21, "iq3_s"},   {22, "iq2_s"},  {23, "iq4_xs"},  {29, "iq1_m"}, {34, "tq1_0"},
      {35, "tq2_0"},   {39, "mxfp4"},
  };
  for (const auto& [known_id, name] : kNames) {
    if (known_id == id) return name;
  }
  return nullptr;
}

}  // namespace

std::string GgufTypeName(GgufType type) {
  const uint32_t id = static_cast<uint32_t>(type);
  return id <= kMaxTypeId ? kTypes[id].name : absl::StrCat("type ", id);
}

TensorView GgufTensorInfo::view() const {
  TensorView t;
  t.data = const_cast<uint8_t*>(data);
  t.dtype = dtype;
  t.device = Device::Cpu();
  t.ndim = ndim;
  t.shape = shape;
  return t;
}

// Walks the bytes once, validating as it goes. Every read goes through Need(), which checks
// the remaining length, so nothing past the end of the buffer is ever touched.
class GgufFile::Parser {
 public:
  explicit Parser(GgufFile* file) : f_(file), bytes_(file->bytes_) {}

  absl::Status Run() {
    RETURN_IF_ERROR(ParseHeader());
    for (uint64_t i = 0; i < n_kv_; ++i) RETURN_IF_ERROR(ParseKeyValue(i));
    RETURN_IF_ERROR(ReadAlignment());
    f_->tensors_.reserve(n_tensors_);
    for (uint64_t i = 0; i < n_tensors_; ++i) RETURN_IF_ERROR(ParseTensorInfo(i));
    return PlaceTensors();
  }

 private:
  absl::Status Error(absl::string_view msg) const {
    return absl::InvalidArgumentError(absl::StrCat(f_->name_, ": ", msg));
  }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  absl::Status Need(uint64_t n, absl::string_view what) const {
    if (n > remaining()) {
      return Error(absl::StrCat("truncated ", what, " at byte ", pos_, " (needs ", n, " bytes, ",
                                remaining(), " left)"));
    }
    return absl::OkStatus();
  }

  absl::Status ReadU32(uint32_t* out, absl::string_view what) {
    RETURN_IF_ERROR(Need(4, what));
    *out = Load<uint32_t>(bytes_.data() + pos_);
    pos_ += 4;
    return absl::OkStatus();
  }

  absl::Status ReadU64(uint64_t* out, absl::string_view what) {
    RETURN_IF_ERROR(Need(8, what));
    *out = Load<uint64_t>(bytes_.data() + pos_);
    pos_ += 8;
    return absl::OkStatus();
  }

  absl::Status ReadString(absl::string_view* out, absl::string_view what) {
    uint64_t len = 0;
    RETURN_IF_ERROR(ReadU64(&len, what));
    if (len > remaining()) {
      return Error(
          absl::StrCat(what, ": string length ", len, " exceeds the ", remaining(), " bytes left"));
    }
    *out = absl::string_view(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return absl::OkStatus();
  }

  absl::Status ReadType(GgufType* out, absl::string_view what) {
    uint32_t id = 0;
    RETURN_IF_ERROR(ReadU32(&id, what));
    if (id > kMaxTypeId) return Error(absl::StrCat(what, ": unknown value type id ", id));
    *out = static_cast<GgufType>(id);
    return absl::OkStatus();
  }

  absl::Status ParseHeader() {
    uint32_t magic = 0;
    RETURN_IF_ERROR(ReadU32(&magic, "header"));
    if (magic != kGgufMagic) return Error("not a GGUF file (bad magic)");
    uint32_t version = 0;
    RETURN_IF_ERROR(ReadU32(&version, "header"));
    if (version == 1) return Error("GGUF version 1 is not supported (only 2 and 3)");
    if (version != 2 && version != 3) {
      if ((version & 0xffff) == 0 && version != 0) {
        return Error("big-endian GGUF files are not supported");
      }
      return Error(absl::StrCat("unsupported GGUF version ", version, " (only 2 and 3)"));
    }
    f_->version_ = version;
    RETURN_IF_ERROR(ReadU64(&n_tensors_, "header"));
    RETURN_IF_ERROR(ReadU64(&n_kv_, "header"));
    if (n_kv_ > remaining() / kMinKvBytes) {
      return Error(absl::StrCat("metadata count ", n_kv_, " cannot fit in the ", remaining(),
                                " bytes left"));
    }
    if (n_tensors_ > remaining() / kMinTensorInfoBytes) {
      return Error(absl::StrCat("tensor count ", n_tensors_, " cannot fit in the ", remaining(),
                                " bytes left"));
    }
    f_->values_.reserve(n_kv_);
    return absl::OkStatus();
  }

  // Validates the value at the cursor and records where its bytes are.
  absl::Status ParseValue(Value* v, const std::string& what) {
    RETURN_IF_ERROR(ReadType(&v->type, what));
    if (v->type == GgufType::kString) {
      absl::string_view s;
      RETURN_IF_ERROR(ReadString(&s, what));
      v->payload = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
      return absl::OkStatus();
    }
    if (v->type != GgufType::kArray) {
      const uint64_t n = ScalarBytes(v->type);
      RETURN_IF_ERROR(Need(n, what));
      v->payload = bytes_.subspan(pos_, n);
      pos_ += n;
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(ReadType(&v->element_type, what));
    if (v->element_type == GgufType::kArray) {
      return Error(absl::StrCat(what, ": nested arrays are not supported"));
    }
    RETURN_IF_ERROR(ReadU64(&v->count, what));
    const uint64_t begin = pos_;
    if (v->element_type == GgufType::kString) {
      if (v->count > remaining() / 8) {
        return Error(absl::StrCat(what, ": array of ", v->count, " strings cannot fit in the ",
                                  remaining(), " bytes left"));
      }
      for (uint64_t i = 0; i < v->count; ++i) {
        absl::string_view s;
        RETURN_IF_ERROR(ReadString(&s, what));
      }
    } else {
      const uint64_t elem = ScalarBytes(v->element_type);
      if (v->count > remaining() / elem) {
        return Error(absl::StrCat(what, ": array of ", v->count, " ", GgufTypeName(v->element_type),
                                  " cannot fit in the ", remaining(), " bytes left"));
      }
      pos_ += v->count * elem;
    }
    v->payload = bytes_.subspan(begin, pos_ - begin);
    return absl::OkStatus();
  }

  absl::Status ParseKeyValue(uint64_t i) {
    Value v;
    absl::string_view key;
    RETURN_IF_ERROR(ReadString(&key, absl::StrCat("metadata key #", i)));
    v.key = std::string(key);
    RETURN_IF_ERROR(ParseValue(&v, absl::StrCat("metadata '", v.key, "'")));
    if (!f_->value_index_.emplace(v.key, f_->values_.size()).second) {
      return Error(absl::StrCat("duplicate metadata key '", v.key, "'"));
    }
    f_->values_.push_back(std::move(v));
    return absl::OkStatus();
  }

  absl::Status ReadAlignment() {
    if (!f_->Has("general.alignment")) {
      f_->alignment_ = kDefaultAlignment;
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(int64_t a, f_->GetInt("general.alignment"));
    if (a <= 0 || static_cast<uint64_t>(a) > kMaxAlignment || (a & (a - 1)) != 0) {
      return Error(
          absl::StrCat("general.alignment ", a, " is not a power of two up to ", kMaxAlignment));
    }
    f_->alignment_ = static_cast<uint64_t>(a);
    return absl::OkStatus();
  }

  absl::Status ParseTensorInfo(uint64_t i) {
    GgufTensorInfo t;
    absl::string_view name;
    RETURN_IF_ERROR(ReadString(&name, absl::StrCat("tensor info #", i)));
    t.name = std::string(name);
    const std::string what = absl::StrCat("tensor '", t.name, "'");
    uint32_t n_dims = 0;
    RETURN_IF_ERROR(ReadU32(&n_dims, what));
    if (n_dims < 1 || n_dims > TensorView::kMaxDims) {
      return Error(absl::StrCat(what, ": ", n_dims, " dimensions (must be 1 to ",
                                TensorView::kMaxDims, ")"));
    }
    t.ndim = static_cast<int>(n_dims);
    for (int d = 0; d < t.ndim; ++d) {
      uint64_t ne = 0;
      RETURN_IF_ERROR(ReadU64(&ne, what));
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Error(absl::StrCat(what, ": dimension ", d, " is ", ne, ", too large"));
      }
      t.shape[t.ndim - 1 - d] = static_cast<int64_t>(ne);  // ne[0] is innermost
    }
    uint32_t type_id = 0;
    RETURN_IF_ERROR(ReadU32(&type_id, what));
    t.dtype = DTypeFromGgufId(type_id);
    if (t.dtype == DType::kInvalid) {
      const char* known = KnownGgmlTypeName(type_id);
      return Error(absl::StrCat(
          what, ": ",
          known != nullptr
              ? absl::StrCat("tensor type ", known, " (id ", type_id, ") is not supported")
              : absl::StrCat("unknown tensor type id ", type_id)));
    }
    RETURN_IF_ERROR(ReadU64(&t.offset, what));
    const int64_t block = BlockSize(t.dtype);
    if (t.shape[t.ndim - 1] % block != 0) {
      return Error(absl::StrCat(what, ": row of ", t.shape[t.ndim - 1], " elements is not a ",
                                "multiple of the ", DTypeName(t.dtype), " block size ", block));
    }
    // Zero dimensions count as one here, so that no partial product a user of the view may
    // form (a row's bytes, rows times stride) can overflow even when the tensor is empty.
    int64_t numel = 1;
    bool empty = false;
    for (int d = 0; d < t.ndim; ++d) {
      empty = empty || t.shape[d] == 0;
      if (__builtin_mul_overflow(numel, std::max<int64_t>(t.shape[d], 1), &numel)) {
        return Error(absl::StrCat(what, ": element count overflows"));
      }
    }
    const int64_t blocks = t.shape[t.ndim - 1] == 0 ? numel : numel / block;
    if (__builtin_mul_overflow(blocks, BlockBytes(t.dtype), &t.nbytes)) {
      return Error(absl::StrCat(what, ": byte size overflows"));
    }
    if (empty) t.nbytes = 0;
    if (!f_->tensor_index_.emplace(t.name, f_->tensors_.size()).second) {
      return Error(absl::StrCat("duplicate tensor name '", t.name, "'"));
    }
    f_->tensors_.push_back(std::move(t));
    return absl::OkStatus();
  }

  // The data section starts at the first aligned offset after the tensor infos.
  absl::Status PlaceTensors() {
    const uint64_t align = f_->alignment_;
    const uint64_t data_offset = (pos_ + align - 1) / align * align;
    f_->data_offset_ = data_offset;
    if (f_->tensors_.empty()) return absl::OkStatus();
    if (data_offset > bytes_.size()) {
      return Error(absl::StrCat("tensor data section at byte ", data_offset,
                                " starts past the end of the file (", bytes_.size(), " bytes)"));
    }
    const uint64_t available = bytes_.size() - data_offset;
    for (GgufTensorInfo& t : f_->tensors_) {
      if (t.offset % align != 0) {
        return Error(absl::StrCat("tensor '", t.name, "': data offset ", t.offset,
                                  " is not a multiple of the alignment ", align));
      }
      const uint64_t nbytes = static_cast<uint64_t>(t.nbytes);
      if (t.offset > available || nbytes > available - t.offset) {
        return Error(absl::StrCat("tensor '", t.name, "': data [", t.offset, ", +", nbytes,
                                  ") extends past the end of the data section (", available,
                                  " bytes)"));
      }
      t.data = bytes_.data() + data_offset + t.offset;
    }
    return absl::OkStatus();
  }

  GgufFile* f_;
  absl::Span<const uint8_t> bytes_;
  uint64_t pos_ = 0;
  uint64_t n_tensors_ = 0;
  uint64_t n_kv_ = 0;
};

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  const absl::Span<const uint8_t> bytes = mapped->bytes();
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file, Parse(path, bytes));
  file->file_ = std::move(mapped);
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::string name,
                                                          absl::Span<const uint8_t> bytes) {
  std::unique_ptr<GgufFile> file(new GgufFile(std::move(name), bytes));
  Parser parser(file.get());
  RETURN_IF_ERROR(parser.Run());
  return file;
}

bool GgufFile::Has(absl::string_view key) const { return value_index_.contains(key); }

std::vector<std::string> GgufFile::Keys() const {
  std::vector<std::string> keys;
  keys.reserve(values_.size());
  for (const Value& v : values_) keys.push_back(v.key);
  return keys;
}

absl::StatusOr<const GgufFile::Value*> GgufFile::Find(absl::string_view key) const {
  auto it = value_index_.find(key);
  if (it == value_index_.end()) {
    return absl::NotFoundError(absl::StrCat(name_, ": no metadata key '", key, "'"));
  }
  return &values_[it->second];
}

absl::Status GgufFile::TypeError(const Value& v, absl::string_view wanted) const {
  const std::string actual = v.type == GgufType::kArray
                                 ? absl::StrCat("array[", GgufTypeName(v.element_type), "]")
                                 : GgufTypeName(v.type);
  return absl::InvalidArgumentError(
      absl::StrCat(name_, ": metadata '", v.key, "' is ", actual, ", expected ", wanted));
}

absl::StatusOr<GgufType> GgufFile::TypeOf(absl::string_view key, GgufType* element_type) const {
  ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (element_type != nullptr) *element_type = v->element_type;
  return v->type;
}

absl::StatusOr<std::string> GgufFile::GetString(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (v->type != GgufType::kString) return TypeError(*v, "string");
  return std::string(reinterpret_cast<const char*>(v->payload.data()), v->payload.size());
}

absl::StatusOr<int64_t> GgufFile::GetInt(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (!IsIntegerType(v->type)) return TypeError(*v, "an integer");
  int64_t out = 0;
  if (!LoadInt(v->type, v->payload.data(), &out)) {
    return absl::OutOfRangeError(
        absl::StrCat(name_, ": metadata '", v->key, "' does not fit a signed 64-bit integer"));
  }
  return out;
}

absl::StatusOr<double> GgufFile::GetFloat(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (!IsIntegerType(v->type) && !IsFloatType(v->type)) return TypeError(*v, "a number");
  return LoadNumber(v->type, v->payload.data());
}

absl::StatusOr<bool> GgufFile::GetBool(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (v->type != GgufType::kBool) return TypeError(*v, "bool");
  return v->payload[0] != 0;
}

absl::StatusOr<uint64_t> GgufFile::GetArrayLength(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (v->type != GgufType::kArray) return TypeError(*v, "an array");
  return v->count;
}

absl::StatusOr<std::vector<std::string>> GgufFile::GetStringArray(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (v->type != GgufType::kArray || v->element_type != GgufType::kString) {
    return TypeError(*v, "array[string]");
  }
  std::vector<std::string> out;
  out.reserve(v->count);
  // The parser checked that `count` strings fill the payload exactly.
  const uint8_t* p = v->payload.data();
  for (uint64_t i = 0; i < v->count; ++i) {
    const uint64_t len = Load<uint64_t>(p);
    out.emplace_back(reinterpret_cast<const char*>(p + 8), len);
    p += 8 + len;
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (v->type != GgufType::kArray || !IsIntegerType(v->element_type)) {
    return TypeError(*v, "an array of integers");
  }
  const uint64_t elem = ScalarBytes(v->element_type);
  std::vector<int64_t> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) {
    if (!LoadInt(v->element_type, v->payload.data() + i * elem, &out[i])) {
      return absl::OutOfRangeError(absl::StrCat(name_, ": metadata '", v->key, "' element ", i,
                                                " does not fit a signed 64-bit integer"));
    }
  }
  return out;
}

absl::StatusOr<std::vector<double>> GgufFile::GetFloatArray(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* v, Find(key));
  if (v->type != GgufType::kArray ||
      (!IsIntegerType(v->element_type) && !IsFloatType(v->element_type))) {
    return TypeError(*v, "an array of numbers");
  }
  const uint64_t elem = ScalarBytes(v->element_type);
  std::vector<double> out(v->count);
  for (uint64_t i = 0; i < v->count; ++i) {
    out[i] = LoadNumber(v->element_type, v->payload.data() + i * elem);
  }
  return out;
}

const GgufTensorInfo* GgufFile::FindTensor(absl::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace shardserve
