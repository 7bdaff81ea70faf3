#include "worker/comm/tcp_kv_transport_wire.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace shardserve {
namespace {

std::string Errno(const char* what) { return absl::StrCat(what, ": ", std::strerror(errno)); }

int PollMillis(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return -1;
  return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(timeout), 0, INT_MAX));
}

// Polls `fd` for `events` (and `wake_fd` for input) for at most `timeout`. Returns 1 when `fd` is
// ready, 0 on timeout, -1 when woken, -2 on a poll error.
int PollFd(int fd, short events, int wake_fd, absl::Duration timeout) {
  pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
  const absl::Time deadline =
      timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
  while (true) {
    const int n = poll(fds, wake_fd >= 0 ? 2 : 1, PollMillis(deadline - absl::Now()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -2;
    if (wake_fd >= 0 && fds[1].revents != 0) return -1;
    if (n == 0) return 0;
    return 1;  // readiness, or an error/hangup that the next I/O call reports
  }
}

absl::Status SetNonBlockingNoDelay(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return absl::InternalError(Errno("fcntl"));
  }
  const int one = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
    return absl::InternalError(Errno("setsockopt(TCP_NODELAY)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<addrinfo*> Resolve(const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* result = nullptr;
  const std::string service = absl::StrCat(port);
  const int rc =
      getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0 || result == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", host, ":", port, ": ", gai_strerror(rc)));
  }
  return result;
}

}  // namespace

int64_t KvWireElemBytes(uint16_t dtype) {
  if (dtype == static_cast<uint16_t>(DType::kF32)) return 4;
  if (dtype == static_cast<uint16_t>(DType::kF16)) return 2;
  return 0;
}

absl::Status CheckFrameHeader(const KvFrameHeader& h) {
  if (h.magic != kKvFrameMagic) {
    return absl::InvalidArgumentError(absl::StrCat("bad frame magic 0x", absl::Hex(h.magic)));
  }
  if (h.version != kKvFrameVersion) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported frame version ", h.version));
  }
  const auto type = static_cast<KvFrameType>(h.type);
  if (type == KvFrameType::kFinish || type == KvFrameType::kAck) {
    if (h.payload_bytes > kKvMaxMessageBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("status message of ", h.payload_bytes, " bytes"));
    }
    return absl::OkStatus();
  }
  if (type != KvFrameType::kData) {
    return absl::InvalidArgumentError(absl::StrCat("unknown frame type ", h.type));
  }
  if (h.kind != 0 && h.kind != 1) {
    return absl::InvalidArgumentError(absl::StrCat("frame kind ", h.kind, " is neither K nor V"));
  }
  const int64_t elem_bytes = KvWireElemBytes(h.dtype);
  if (elem_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data frame dtype ", h.dtype, " is neither F32 (0) nor F16 (1)"));
  }
  if (h.layer < 0 || h.head_begin < 0 || h.head_end <= h.head_begin || h.token_begin < 0 ||
      h.token_end <= h.token_begin || h.head_dim <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad data frame: layer ", h.layer, " heads [", h.head_begin, ",", h.head_end,
                     ") tokens [", h.token_begin, ",", h.token_end, ") head_dim ", h.head_dim));
  }
  const uint64_t expected = uint64_t(h.token_end - h.token_begin) *
                            uint64_t(h.head_end - h.head_begin) * uint64_t(h.head_dim) *
                            uint64_t(elem_bytes);
  if (h.payload_bytes != expected || h.payload_bytes > kKvMaxPayloadBytes) {
    return absl::InvalidArgumentError(absl::StrCat("data frame payload of ", h.payload_bytes,
                                                   " bytes, its ranges give ", expected));
  }
  return absl::OkStatus();
}

absl::Status FrameStatus(const KvFrameHeader& h, const std::string& message) {
  if (h.status_code == 0) return absl::OkStatus();
  if (h.status_code < 0 || h.status_code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    return absl::UnknownError(message);
  }
  return absl::Status(static_cast<absl::StatusCode>(h.status_code), message);
}

void IovecCursor::Add(const void* data, size_t bytes) {
  if (bytes == 0) return;
  char* p = const_cast<char*>(static_cast<const char*>(data));
  if (!iov_.empty()) {
    iovec& last = iov_.back();
    if (static_cast<char*>(last.iov_base) + last.iov_len == p) {
      last.iov_len += bytes;
      remaining_ += bytes;
      return;
    }
  }
  iov_.push_back({p, bytes});
  remaining_ += bytes;
}

int IovecCursor::window_size() const {
  return static_cast<int>(std::min<size_t>(iov_.size() - index_, IOV_MAX));
}

void IovecCursor::Advance(size_t bytes) {
  remaining_ -= bytes;
  while (bytes > 0) {
    iovec& v = iov_[index_];
    const size_t step = std::min(bytes, v.iov_len);
    v.iov_base = static_cast<char*>(v.iov_base) + step;
    v.iov_len -= step;
    bytes -= step;
    if (v.iov_len == 0) ++index_;
  }
  while (index_ < iov_.size() && iov_[index_].iov_len == 0) ++index_;
}

void IovecCursor::CopyIn(const char* src, size_t bytes) {
  size_t done = 0;
  while (done < bytes) {
    const iovec& v = iov_[index_];
    const size_t step = std::min(bytes - done, v.iov_len);
    std::memcpy(v.iov_base, src + done, step);
    Advance(step);
    done += step;
  }
}

absl::Status SplitHostPort(const std::string& address, std::string* host, int* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), port) ||
      *port < 0 || *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad address '", address, "': want host:port"));
  }
  *host = address.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ListenTcp(const std::string& host, int port, std::string* address) {
  absl::StatusOr<addrinfo*> ai = Resolve(host, port, /*passive=*/true);
  if (!ai.ok()) return ai.status();
  const int fd = socket((*ai)->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  const bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
                  bind(fd, (*ai)->ai_addr, (*ai)->ai_addrlen) == 0 && listen(fd, 128) == 0;
  freeaddrinfo(*ai);
  if (!ok) {
    absl::Status error =
        absl::UnavailableError(Errno(absl::StrCat("listen on ", host, ":", port).c_str()));
    if (fd >= 0) close(fd);
    return error;
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port = bound.ss_family == AF_INET6
                             ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                             : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  const bool v6_literal = host.find(':') != std::string::npos;
  *address = absl::StrCat(v6_literal ? "[" : "", host, v6_literal ? "]" : "", ":", bound_port);
  return fd;
}

absl::StatusOr<int> ConnectTcp(const std::string& address, absl::Duration timeout) {
  std::string host;
  int port = 0;
  if (absl::Status s = SplitHostPort(address, &host, &port); !s.ok()) return s;
  absl::StatusOr<addrinfo*> ai = Resolve(host, port, /*passive=*/false);
  if (!ai.ok()) return ai.status();
  const int fd = socket((*ai)->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  absl::Status status =
      fd < 0 ? absl::UnavailableError(Errno("socket")) : SetNonBlockingNoDelay(fd);
  if (status.ok() && connect(fd, (*ai)->ai_addr, (*ai)->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      status = absl::UnavailableError(Errno("connect"));
    } else if (PollFd(fd, POLLOUT, -1, timeout) != 1) {
      status = absl::UnavailableError(
          absl::StrCat("connect timed out after ", absl::FormatDuration(timeout)));
    } else {
      int error = 0;
      socklen_t len = sizeof(error);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
      if (error != 0)
        status = absl::UnavailableError(absl::StrCat("connect: ", std::strerror(error)));
    }
  }
  freeaddrinfo(*ai);
  if (!status.ok()) {
    if (fd >= 0) close(fd);
    return absl::UnavailableError(absl::StrCat("KV receiver ", address, ": ", status.message()));
  }
  return fd;
}

absl::Status ConfigureSocket(int fd) { return SetNonBlockingNoDelay(fd); }

absl::Status WaitReadable(int fd, int wake_fd, absl::Duration timeout) {
  switch (PollFd(fd, POLLIN, wake_fd, timeout)) {
    case 1:
      return absl::OkStatus();
    case 0:
      return absl::DeadlineExceededError("timed out waiting for data");
    case -1:
      return absl::CancelledError("receiver is shutting down");
    default:
      return absl::UnavailableError(Errno("poll"));
  }
}

absl::Status SendAll(int fd, IovecCursor& cursor, absl::Duration stall_timeout,
                     const std::string& peer) {
  while (!cursor.done()) {
    msghdr msg{};
    msg.msg_iov = cursor.window();
    msg.msg_iovlen = cursor.window_size();
    const ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      cursor.Advance(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (PollFd(fd, POLLOUT, -1, stall_timeout) != 1) {
        return absl::UnavailableError(absl::StrCat("KV peer ", peer, " accepted no data for ",
                                                   absl::FormatDuration(stall_timeout)));
      }
      continue;
    }
    return absl::UnavailableError(
        absl::StrCat("send to KV peer ", peer, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> RecvSome(int fd, IovecCursor& cursor, const std::string& peer) {
  while (true) {
    msghdr msg{};
    msg.msg_iov = cursor.window();
    msg.msg_iovlen = cursor.window_size();
    const ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);
    if (n > 0) {
      cursor.Advance(static_cast<size_t>(n));
      return static_cast<size_t>(n);
    }
    if (n == 0)
      return absl::UnavailableError(absl::StrCat("KV peer ", peer, " closed the connection"));
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return absl::UnavailableError(
        absl::StrCat("receive from KV peer ", peer, ": ", std::strerror(errno)));
  }
}

absl::Status RecvAll(int fd, void* data, size_t bytes, int wake_fd,
                     absl::Duration first_byte_timeout, absl::Duration stall_timeout,
                     const std::string& peer) {
  IovecCursor cursor;
  cursor.Add(data, bytes);
  bool started = false;
  while (!cursor.done()) {
    absl::StatusOr<size_t> n = RecvSome(fd, cursor, peer);
    if (!n.ok()) {
      return started ? n.status() : absl::OutOfRangeError(n.status().message());
    }
    if (*n > 0) {
      started = true;
      continue;
    }
    absl::Status ready = WaitReadable(fd, wake_fd, started ? stall_timeout : first_byte_timeout);
    if (absl::IsDeadlineExceeded(ready) && started) {
      return absl::UnavailableError(absl::StrCat("KV peer ", peer, " stalled mid-frame for ",
                                                 absl::FormatDuration(stall_timeout)));
    }
    if (!ready.ok()) return ready;
  }
  return absl::OkStatus();
}

}  // namespace shardserve
