// A named POSIX shared-memory segment (shm_open + mmap), owned by the process that created it.
//
//   ASSIGN_OR_RETURN(auto seg, ShmSegment::Create("/shardserve_g1", bytes));  // rank 0
//   ASSIGN_OR_RETURN(auto seg, ShmSegment::Open("/shardserve_g1"));          // the others
//
// The creator removes the name (shm_unlink) when it calls Unlink() or is destroyed, whichever
// comes first, including when setup fails later; mappings stay valid until every process has
// unmapped. Openers never remove the name.
//
// Thread safety: not thread-safe; the mapped memory itself is shared by design.
#ifndef SHARDSERVE_WORKER_COMM_SHM_SEGMENT_H_
#define SHARDSERVE_WORKER_COMM_SHM_SEGMENT_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace shardserve {

class ShmSegment {
 public:
  // A new zero-filled segment of `bytes` bytes. A leftover segment of the same name (from a
  // process that crashed before cleaning up) is removed first. `name` starts with '/'.
  static absl::StatusOr<std::unique_ptr<ShmSegment>> Create(const std::string& name, size_t bytes);
  // Maps an existing segment whole. NOT_FOUND when the name does not exist (yet); UNAVAILABLE
  // when it exists but its creator has not sized it yet.
  static absl::StatusOr<std::unique_ptr<ShmSegment>> Open(const std::string& name);

  ~ShmSegment();
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;

  // Removes the name (creator only; idempotent). Existing mappings stay valid.
  void Unlink();

  void* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& name() const { return name_; }

 private:
  ShmSegment(std::string name, void* data, size_t size, bool owner)
      : name_(std::move(name)), data_(data), size_(size), owner_(owner) {}

  std::string name_;
  void* data_;
  size_t size_;
  bool owner_;  // still responsible for removing the name
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_SHM_SEGMENT_H_
