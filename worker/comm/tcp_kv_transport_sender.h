// The prefill rank's end of the TCP KV transport: a KvSender that keeps one TCP connection per
// decode rank and writes each (peer, layer) as one gathered send, straight from the source
// blocks; only rows that re-slicing cuts into small pieces are copied into one buffer first.
//
//   TcpKvSender sender(TcpKvOptions{});
//   for (int64_t layer : shard.layers) {
//     ... compute the layer ...
//     RETURN_IF_ERROR(sender.SendLayer(transfer_id, peers, layer, source_of(layer)));
//   }
//   RETURN_IF_ERROR(sender.Finish(transfer_id, peers, absl::OkStatus()));
//
// Failures: connecting, every send and every ack wait are bounded by TcpKvOptions::io_timeout. A
// failed connection is closed and forgotten (the receiver then fails the transfers it carried)
// and the error, UNAVAILABLE naming the peer, is returned; the next call reconnects. A cached
// connection that the receiver closed while idle is noticed and replaced before it is used.
//
// Thread safety: none; one thread (the rank's compute thread) makes every call.
#ifndef SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_SENDER_H_
#define SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_SENDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/comm/tcp_kv_transport_wire.h"
#include "worker/kv_transport.h"

namespace shardserve {

class TcpKvSender : public KvSender {
 public:
  explicit TcpKvSender(const TcpKvOptions& options) : options_(options) {}
  // Closes every connection; receivers fail the transfers left unfinished with UNAVAILABLE.
  ~TcpKvSender() override;

  TcpKvSender(const TcpKvSender&) = delete;
  TcpKvSender& operator=(const TcpKvSender&) = delete;

  // Opens the connection to `address` now (it is otherwise opened on first use), so a
  // transfer's first layer does not pay for the handshake.
  absl::Status Connect(const std::string& address);

  absl::Status SendLayer(uint64_t transfer_id, absl::Span<const KvPeer> peers, int64_t layer,
                         const KvSource& source) override;
  absl::Status Finish(uint64_t transfer_id, absl::Span<const KvPeer> peers,
                      const absl::Status& status) override;

  // Connections currently cached.
  int64_t num_connections() const { return static_cast<int64_t>(fds_.size()); }

 private:
  // The cached connection to `address`, (re)connecting when there is none or the receiver has
  // closed it.
  absl::StatusOr<int> Connection(const std::string& address);
  // Closes and forgets the connection to `address`; returns `error`.
  absl::Status Drop(const std::string& address, absl::Status error);

  const TcpKvOptions options_;
  absl::flat_hash_map<std::string, int> fds_;  // address -> connected socket
  // K then V rows of one (peer, layer) when they are copied rather than gathered in place.
  std::vector<char> staging_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_SENDER_H_
