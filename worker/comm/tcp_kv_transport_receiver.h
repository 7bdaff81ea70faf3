// The decode rank's end of the TCP KV transport: a KvReceiver that listens on a TCP port and
// writes incoming rows straight from the socket into the reserved KV blocks.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<TcpKvReceiver> receiver,
//                    TcpKvReceiver::Create("10.0.0.7", /*port=*/0, TcpKvOptions{}));
//   RETURN_IF_ERROR(receiver->Expect(transfer_id, destination));
//   RETURN_IF_ERROR(receiver->Wait(transfer_id, absl::Seconds(30)));
//
// Threads: one accepts connections, one per accepted connection reads its frames in order. Each
// data frame is checked against its reservation (layer and head ranges, token range, head_dim,
// rows not received before) before a byte of its payload is read; the payload is then received
// with scatter reads into the destination rows, one non-blocking read at a time, so that Wait and
// Cancel, which wait for the read in progress, never let a write land after they return. Rows
// that re-slicing cuts into short pieces (a sender holding some of the rank's heads) are read
// into a 1 MiB buffer first and copied, under the same rule. Frames
// that do not fit are drained and discarded: the reservation fails (INVALID_ARGUMENT), or, for a
// transfer that is not pending, the sender learns it from the ack to its kFinish. A frame that
// breaks the protocol (bad magic, sizes that do not match) closes its connection only.
//
// Failures: a connection that closes or stalls mid-frame for TcpKvOptions::io_timeout fails, with
// UNAVAILABLE, every pending transfer it sent data for and has not finished.
#ifndef SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_RECEIVER_H_
#define SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_RECEIVER_H_

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/comm/tcp_kv_transport_wire.h"
#include "worker/kv_transport.h"

namespace shardserve {

class TcpKvReceiver : public KvReceiver {
 public:
  // Listens on host:port (port 0: a free port) and advertises host:port as address(), so `host`
  // must be a name or IP the prefill ranks can reach (127.0.0.1 when all ranks share a host).
  static absl::StatusOr<std::unique_ptr<TcpKvReceiver>> Create(const std::string& host, int port,
                                                               const TcpKvOptions& options);
  // Closes every connection and joins the threads; pending reservations are dropped.
  ~TcpKvReceiver() override;

  TcpKvReceiver(const TcpKvReceiver&) = delete;
  TcpKvReceiver& operator=(const TcpKvReceiver&) = delete;

  std::string address() const override { return address_; }
  absl::Status Expect(uint64_t transfer_id, const KvDestination& destination) override;
  absl::Status Wait(uint64_t transfer_id, absl::Duration timeout) override;
  void Cancel(uint64_t transfer_id) override;
  int64_t num_pending() const override;

  // Connections currently open (accepted and not yet closed); for tests.
  int64_t num_connections() const;

 private:
  struct Reservation;
  struct Connection;
  class ConnectionReader;

  TcpKvReceiver(int listen_fd, int wake_read_fd, int wake_write_fd, std::string address,
                const TcpKvOptions& options);

  void AcceptLoop();
  // Joins the threads of connections that have closed.
  void ReapClosed() ABSL_LOCKS_EXCLUDED(mu_);
  // Ends pending `r` with `status` and wakes its waiter.
  void EndLocked(Reservation& r, absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes `r` from pending_ once no read into its blocks is in progress.
  void ForgetLocked(uint64_t transfer_id, Reservation& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int listen_fd_;
  // Readable once the receiver shuts down: every thread polls it beside its socket.
  const int wake_read_fd_;
  const int wake_write_fd_;
  const std::string address_;
  const TcpKvOptions options_;
  std::thread accept_thread_;

  mutable absl::Mutex mu_;
  // Reservations from Expect until Wait or Cancel ends them (Reservation fields are guarded by
  // mu_ too).
  absl::flat_hash_map<uint64_t, std::shared_ptr<Reservation>> pending_ ABSL_GUARDED_BY(mu_);
  std::list<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_RECEIVER_H_
