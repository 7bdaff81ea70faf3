#include "worker/comm/shm_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace shardserve {
namespace {

absl::Status ErrnoStatus(const std::string& what, const std::string& name, int err) {
  const std::string text = absl::StrCat(what, " ", name, ": ", strerror(err));
  if (err == ENOENT) return absl::NotFoundError(text);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(text);
  return absl::InternalError(text);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ShmSegment>> ShmSegment::Create(const std::string& name,
                                                               size_t bytes) {
  shm_unlink(name.c_str());  // a leftover of a crashed run; absent is the normal case
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) return ErrnoStatus("shm_open(create)", name, errno);
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    const int err = errno;
    close(fd);
    shm_unlink(name.c_str());
    return ErrnoStatus(absl::StrCat("ftruncate to ", bytes, " bytes"), name, err);
  }
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int err = errno;
  close(fd);
  if (data == MAP_FAILED) {
    shm_unlink(name.c_str());
    return ErrnoStatus("mmap", name, err);
  }
  return std::unique_ptr<ShmSegment>(new ShmSegment(name, data, bytes, /*owner=*/true));
}

absl::StatusOr<std::unique_ptr<ShmSegment>> ShmSegment::Open(const std::string& name) {
  int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) return ErrnoStatus("shm_open", name, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoStatus("fstat", name, err);
  }
  if (st.st_size == 0) {
    close(fd);
    return absl::UnavailableError(absl::StrCat("shm segment ", name, " is not sized yet"));
  }
  const size_t bytes = static_cast<size_t>(st.st_size);
  void* data = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int err = errno;
  close(fd);
  if (data == MAP_FAILED) return ErrnoStatus("mmap", name, err);
  return std::unique_ptr<ShmSegment>(new ShmSegment(name, data, bytes, /*owner=*/false));
}

void ShmSegment::Unlink() {
  if (!owner_) return;
  shm_unlink(name_.c_str());
  owner_ = false;
}

ShmSegment::~ShmSegment() {
  Unlink();
  munmap(data_, size_);
}

}  // namespace shardserve
