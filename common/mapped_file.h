// A read-only memory map of a whole file. Model weights are used in place from the map.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
//   absl::Span<const uint8_t> bytes = file->bytes();
//
// The bytes stay valid while the MappedFile lives.
#ifndef SHARDSERVE_COMMON_MAPPED_FILE_H_
#define SHARDSERVE_COMMON_MAPPED_FILE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace shardserve {

class MappedFile {
 public:
  // Maps `path` read-only. Fails with NOT_FOUND or a clear message naming the path.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  absl::Span<const uint8_t> bytes() const { return {data_, static_cast<size_t>(size_)}; }

 private:
  MappedFile(std::string path, const uint8_t* data, uint64_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_;
  uint64_t size_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COMMON_MAPPED_FILE_H_
