#include "worker/comm/tcp_kv_transport_receiver.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/comm/tcp_kv_transport_reservation.h"

namespace shardserve {
namespace {

std::string PeerName(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
    return absl::StrCat("[", host, "]:", port);
  }
  const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
  inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
  port = ntohs(a->sin_port);
  return absl::StrCat(host, ":", port);
}

}  // namespace

struct TcpKvReceiver::Reservation {
  explicit Reservation(KvReservation r) : rows(std::move(r)) {}
  KvReservation rows;
  bool ended = false;
  absl::Status status;        // the outcome, once ended
  int reads_in_progress = 0;  // socket reads writing into the reserved blocks right now
};

struct TcpKvReceiver::Connection {
  int fd = -1;  // closed (and -1) once the reader is done, under mu_
  std::string peer;
  std::thread thread;
  bool closed = false;
};

// Reads one connection's frames in order, on the connection's own thread.
class TcpKvReceiver::ConnectionReader {
 public:
  ConnectionReader(TcpKvReceiver* receiver, Connection* conn)
      : r_(*receiver), fd_(conn->fd), peer_(conn->peer), conn_(conn) {}

  void Run() {
    const absl::Status end = Serve();
    absl::MutexLock lock(&r_.mu_);
    for (const auto& [transfer_id, verdict] : open_) {
      auto it = r_.pending_.find(transfer_id);
      if (it == r_.pending_.end() || it->second->ended) continue;
      r_.EndLocked(*it->second,
                   absl::UnavailableError(absl::StrCat(
                       "KV sender ", peer_, " left transfer ", transfer_id, " unfinished: ",
                       absl::IsOutOfRange(end) ? "connection closed" : end.message())));
    }
    close(fd_);
    conn_->fd = -1;
    conn_->closed = true;
  }

 private:
  absl::Status Serve() {
    while (true) {
      KvFrameHeader h;
      RETURN_IF_ERROR(RecvAll(fd_, &h, sizeof(h), r_.wake_read_fd_, absl::InfiniteDuration(),
                              r_.options_.io_timeout, peer_));
      if (absl::Status s = CheckFrameHeader(h); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("protocol error: ", s.message()));
      }
      switch (static_cast<KvFrameType>(h.type)) {
        case KvFrameType::kData:
          RETURN_IF_ERROR(ReadData(h));
          break;
        case KvFrameType::kFinish:
          RETURN_IF_ERROR(ReadFinish(h));
          break;
        default:
          return absl::InvalidArgumentError("protocol error: unexpected ack frame");
      }
    }
  }

  absl::Status ReadData(const KvFrameHeader& h) {
    std::shared_ptr<Reservation> target;
    IovecCursor cursor;
    {
      absl::MutexLock lock(&r_.mu_);
      absl::Status verdict;
      auto it = r_.pending_.find(h.transfer_id);
      if (it == r_.pending_.end() || it->second->ended) {
        verdict = absl::NotFoundError(
            absl::StrCat("KV receiver ", r_.address_, " has no pending reservation for transfer ",
                         h.transfer_id, " (never expected, ended or cancelled)"));
      } else if (verdict = it->second->rows.Claim(h, &cursor); !verdict.ok()) {
        r_.EndLocked(*it->second, verdict);
      } else {
        target = it->second;
      }
      absl::Status& record = open_[h.transfer_id];
      if (record.ok()) record = verdict;
    }
    if (target == nullptr) return Discard(h.payload_bytes);
    if (cursor.remaining_bytes() < kStageBelowBytes * cursor.num_ranges()) {
      return ReceiveStaged(h, *target, cursor);
    }
    while (!cursor.done()) {
      {
        absl::MutexLock lock(&r_.mu_);
        // Ended elsewhere (a failure, Wait's timeout, Cancel): its blocks are no longer ours.
        if (target->ended) break;
        ++target->reads_in_progress;
      }
      absl::StatusOr<size_t> n = RecvSome(fd_, cursor, peer_);
      {
        absl::MutexLock lock(&r_.mu_);
        --target->reads_in_progress;
      }
      if (!n.ok()) return n.status();
      if (*n == 0) RETURN_IF_ERROR(WaitMidFrame());
    }
    if (!cursor.done()) return Discard(cursor.remaining_bytes());
    absl::MutexLock lock(&r_.mu_);
    if (!target->ended && target->rows.Received(h)) r_.EndLocked(*target, absl::OkStatus());
    return absl::OkStatus();
  }

  // Receives the payload in chunks into a buffer, then copies each chunk into the rows.
  absl::Status ReceiveStaged(const KvFrameHeader& h, Reservation& target, IovecCursor& rows) {
    staging_.resize(std::min<size_t>(rows.remaining_bytes(), kStagingBytes));
    while (!rows.done()) {
      IovecCursor chunk;
      chunk.Add(staging_.data(), std::min(rows.remaining_bytes(), staging_.size()));
      const size_t chunk_bytes = chunk.remaining_bytes();
      while (!chunk.done()) {
        ASSIGN_OR_RETURN(const size_t n, RecvSome(fd_, chunk, peer_));
        if (n == 0) RETURN_IF_ERROR(WaitMidFrame());
      }
      {
        absl::MutexLock lock(&r_.mu_);
        if (target.ended) return Discard(rows.remaining_bytes() - chunk_bytes);
        ++target.reads_in_progress;
      }
      rows.CopyIn(staging_.data(), chunk_bytes);
      absl::MutexLock lock(&r_.mu_);
      --target.reads_in_progress;
    }
    absl::MutexLock lock(&r_.mu_);
    if (!target.ended && target.rows.Received(h)) r_.EndLocked(target, absl::OkStatus());
    return absl::OkStatus();
  }

  absl::Status ReadFinish(const KvFrameHeader& h) {
    std::string message(h.payload_bytes, '\0');
    if (!message.empty()) {
      RETURN_IF_ERROR(RecvAll(fd_, message.data(), message.size(), r_.wake_read_fd_,
                              r_.options_.io_timeout, r_.options_.io_timeout, peer_));
    }
    const absl::Status sender_status = FrameStatus(h, message);
    absl::Status ack;
    {
      absl::MutexLock lock(&r_.mu_);
      if (auto it = open_.find(h.transfer_id); it != open_.end()) {
        ack = it->second;
        open_.erase(it);
      }
      auto it = r_.pending_.find(h.transfer_id);
      if (!sender_status.ok() && it != r_.pending_.end() && !it->second->ended) {
        r_.EndLocked(*it->second,
                     absl::Status(sender_status.code(), absl::StrCat("KV sender ", peer_, ": ",
                                                                     sender_status.message())));
      }
    }
    KvFrameHeader reply;
    reply.type = static_cast<uint16_t>(KvFrameType::kAck);
    reply.transfer_id = h.transfer_id;
    reply.status_code = static_cast<int32_t>(ack.code());
    const std::string reply_message(ack.message().substr(0, kKvMaxMessageBytes));
    reply.payload_bytes = reply_message.size();
    IovecCursor out;
    out.Add(&reply, sizeof(reply));
    out.Add(reply_message.data(), reply_message.size());
    return SendAll(fd_, out, r_.options_.io_timeout, peer_);
  }

  // Reads and drops `bytes` of payload that must not be written anywhere.
  absl::Status Discard(uint64_t bytes) {
    std::vector<char> scratch(std::min<uint64_t>(bytes, 1 << 16));
    while (bytes > 0) {
      IovecCursor cursor;
      cursor.Add(scratch.data(), std::min<uint64_t>(bytes, scratch.size()));
      ASSIGN_OR_RETURN(size_t n, RecvSome(fd_, cursor, peer_));
      if (n == 0) RETURN_IF_ERROR(WaitMidFrame());
      bytes -= n;
    }
    return absl::OkStatus();
  }

  absl::Status WaitMidFrame() {
    absl::Status s = WaitReadable(fd_, r_.wake_read_fd_, r_.options_.io_timeout);
    if (absl::IsDeadlineExceeded(s)) {
      return absl::UnavailableError(absl::StrCat("KV sender ", peer_, " stalled mid-frame for ",
                                                 absl::FormatDuration(r_.options_.io_timeout)));
    }
    return s;
  }

  TcpKvReceiver& r_;
  const int fd_;
  const std::string peer_;
  Connection* const conn_;
  // Rows of a frame that land in ranges shorter than this on average (heads that re-slicing
  // cuts out of each token's row) are received into staging_ and copied: thousands of tiny
  // scatter ranges cost the kernel more than one copy.
  static constexpr size_t kStageBelowBytes = 4096;
  static constexpr size_t kStagingBytes = 1 << 20;
  std::vector<char> staging_;
  // Transfers this connection sent data for and has not finished, with the first error among
  // its frames (OK: all of them were written). Only this thread touches it.
  absl::flat_hash_map<uint64_t, absl::Status> open_;
};

absl::StatusOr<std::unique_ptr<TcpKvReceiver>> TcpKvReceiver::Create(const std::string& host,
                                                                     int port,
                                                                     const TcpKvOptions& options) {
  if (options.io_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("TcpKvReceiver: io_timeout must be positive");
  }
  std::string address;
  ASSIGN_OR_RETURN(const int listen_fd, ListenTcp(host, port, &address));
  int wake[2];
  if (fcntl(listen_fd, F_SETFL, O_NONBLOCK) != 0 || pipe2(wake, O_CLOEXEC) != 0) {
    close(listen_fd);
    return absl::InternalError(absl::StrCat("TcpKvReceiver setup: ", std::strerror(errno)));
  }
  std::unique_ptr<TcpKvReceiver> receiver(
      new TcpKvReceiver(listen_fd, wake[0], wake[1], std::move(address), options));
  receiver->accept_thread_ = std::thread([r = receiver.get()] { r->AcceptLoop(); });
  return receiver;
}

TcpKvReceiver::TcpKvReceiver(int listen_fd, int wake_read_fd, int wake_write_fd,
                             std::string address, const TcpKvOptions& options)
    : listen_fd_(listen_fd),
      wake_read_fd_(wake_read_fd),
      wake_write_fd_(wake_write_fd),
      address_(std::move(address)),
      options_(options) {}

TcpKvReceiver::~TcpKvReceiver() {
  std::list<std::unique_ptr<Connection>> connections;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // Also fails sends in progress (acks), which do not poll the wake pipe.
    for (const auto& c : connections_) {
      if (c->fd >= 0) shutdown(c->fd, SHUT_RDWR);
    }
  }
  const char byte = 1;
  while (write(wake_write_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
  accept_thread_.join();
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  for (auto& c : connections) c->thread.join();
  close(listen_fd_);
  close(wake_read_fd_);
  close(wake_write_fd_);
}

void TcpKvReceiver::AcceptLoop() {
  while (WaitReadable(listen_fd_, wake_read_fd_, absl::InfiniteDuration()).ok()) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      // Out of descriptors or a transient failure: back off instead of spinning on poll.
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) usleep(10000);
      continue;
    }
    if (!ConfigureSocket(fd).ok()) {
      close(fd);
      continue;
    }
    ReapClosed();
    auto conn = std::make_unique<Connection>();
    conn->fd = fd;
    conn->peer = PeerName(addr);
    Connection* c = conn.get();
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    connections_.push_back(std::move(conn));
    c->thread = std::thread([this, c] { ConnectionReader(this, c).Run(); });
  }
}

void TcpKvReceiver::ReapClosed() {
  std::list<std::unique_ptr<Connection>> closed;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      auto next = std::next(it);
      if ((*it)->closed) closed.splice(closed.end(), connections_, it);
      it = next;
    }
  }
  for (auto& c : closed) c->thread.join();
}

void TcpKvReceiver::EndLocked(Reservation& r, absl::Status status) {
  r.ended = true;
  r.status = std::move(status);
}

void TcpKvReceiver::ForgetLocked(uint64_t transfer_id, Reservation& r) {
  auto it = pending_.find(transfer_id);
  if (it != pending_.end() && it->second.get() == &r) pending_.erase(it);
  mu_.Await(absl::Condition(
      +[](Reservation* res) { return res->reads_in_progress == 0; }, &r));
}

absl::Status TcpKvReceiver::Expect(uint64_t transfer_id, const KvDestination& destination) {
  ASSIGN_OR_RETURN(KvReservation rows, KvReservation::Create(transfer_id, destination));
  auto reservation = std::make_shared<Reservation>(std::move(rows));
  absl::MutexLock lock(&mu_);
  if (!pending_.try_emplace(transfer_id, std::move(reservation)).second) {
    return absl::AlreadyExistsError(
        absl::StrCat("KV transfer ", transfer_id, " is already pending on ", address_));
  }
  return absl::OkStatus();
}

absl::Status TcpKvReceiver::Wait(uint64_t transfer_id, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(transfer_id);
  if (it == pending_.end()) {
    return absl::NotFoundError(
        absl::StrCat("KV transfer ", transfer_id, " is not pending on ", address_));
  }
  std::shared_ptr<Reservation> r = it->second;
  if (!mu_.AwaitWithTimeout(absl::Condition(&r->ended), timeout)) {
    EndLocked(
        *r, absl::DeadlineExceededError(absl::StrCat(
                "KV transfer ", transfer_id, ": ", r->rows.rows_received(), " of ",
                r->rows.rows_expected(), " rows arrived within ", absl::FormatDuration(timeout))));
  }
  ForgetLocked(transfer_id, *r);
  return r->status;
}

void TcpKvReceiver::Cancel(uint64_t transfer_id) {
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(transfer_id);
  if (it == pending_.end()) return;
  std::shared_ptr<Reservation> r = it->second;
  if (!r->ended)
    EndLocked(*r, absl::CancelledError(absl::StrCat("KV transfer ", transfer_id, " cancelled")));
  ForgetLocked(transfer_id, *r);
}

int64_t TcpKvReceiver::num_pending() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(pending_.size());
}

int64_t TcpKvReceiver::num_connections() const {
  absl::MutexLock lock(&mu_);
  int64_t n = 0;
  for (const auto& c : connections_) n += c->closed ? 0 : 1;
  return n;
}

}  // namespace shardserve
