#include "model/model_fingerprint.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/gguf_file.h"

namespace shardserve {

namespace {

namespace fs = std::filesystem;

// Bound on a safetensors header; the format's own limit is 100 MB.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// Incremental SHA-256 over OpenSSL's EVP interface (libcrypto is linked with gRPC already).
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr);
  }
  void Update(absl::string_view data) { EVP_DigestUpdate(ctx_.get(), data.data(), data.size()); }
  // Length-prefixed, so that ("ab", "c") and ("a", "bc") hash differently.
  void UpdateField(absl::string_view data) {
    const uint64_t size = data.size();
    Update(absl::string_view(reinterpret_cast<const char*>(&size), sizeof(size)));
    Update(data);
  }
  std::string HexDigest() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &size);
    return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), size));
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
};

absl::StatusOr<std::string> ReadPrefix(const std::string& path, uint64_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string data(max_bytes, '\0');
  in.read(data.data(), static_cast<std::streamsize>(max_bytes));
  data.resize(static_cast<size_t>(in.gcount()));
  return data;
}

absl::StatusOr<std::string> GgufFingerprint(const std::string& path) {
  // GgufFile checks the header and tensor table, so the prefix hashed is exactly the metadata.
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::Open(path));
  ASSIGN_OR_RETURN(std::string head, ReadPrefix(path, gguf->data_offset()));
  if (head.size() != gguf->data_offset()) {
    return absl::DataLossError(absl::StrCat(path, ": shorter than its GGUF header"));
  }
  Sha256 sha;
  sha.UpdateField("gguf");
  sha.UpdateField(head);
  return sha.HexDigest();
}

absl::StatusOr<std::string> SafetensorsHeader(const std::string& path) {
  ASSIGN_OR_RETURN(std::string size_bytes, ReadPrefix(path, 8));
  if (size_bytes.size() != 8) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": too short for a safetensors file"));
  }
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) {
    header_bytes = (header_bytes << 8) | static_cast<uint8_t>(size_bytes[i]);
  }
  if (header_bytes > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": safetensors header of ", header_bytes, " bytes is too large"));
  }
  ASSIGN_OR_RETURN(std::string head, ReadPrefix(path, 8 + header_bytes));
  if (head.size() != 8 + header_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": shorter than its safetensors header"));
  }
  return head;
}

absl::StatusOr<std::string> HfFingerprint(const fs::path& dir) {
  const fs::path config = dir / "config.json";
  std::error_code ec;
  if (!fs::is_regular_file(config, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir.string(), " has no config.json: not a Hugging Face model directory"));
  }
  std::vector<std::string> shards;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() &&
        absl::EndsWith(entry.path().filename().string(), ".safetensors")) {
      shards.push_back(entry.path().filename().string());
    }
  }
  if (ec)
    return absl::NotFoundError(absl::StrCat("cannot list ", dir.string(), ": ", ec.message()));
  if (shards.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(dir.string(), " holds no *.safetensors file"));
  }
  std::sort(shards.begin(), shards.end());
  Sha256 sha;
  sha.UpdateField("hf");
  ASSIGN_OR_RETURN(std::string config_text,
                   ReadPrefix(config.string(), kMaxSafetensorsHeaderBytes));
  sha.UpdateField(config_text);
  for (const std::string& shard : shards) {
    ASSIGN_OR_RETURN(std::string head, SafetensorsHeader((dir / shard).string()));
    sha.UpdateField(shard);
    sha.UpdateField(head);
  }
  return sha.HexDigest();
}

}  // namespace

std::string Sha256Hex(absl::string_view data) {
  Sha256 sha;
  sha.Update(data);
  return sha.HexDigest();
}

absl::StatusOr<std::string> ModelFingerprint(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  if (!fs::exists(p, ec)) return absl::NotFoundError(absl::StrCat("no such model: ", path));
  if (fs::is_directory(p, ec)) return HfFingerprint(p);
  if (absl::EndsWith(path, ".gguf")) return GgufFingerprint(path);
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": expected a .gguf file or a Hugging Face model directory"));
}

}  // namespace shardserve
