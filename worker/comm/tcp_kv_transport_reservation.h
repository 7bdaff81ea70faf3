// The bookkeeping of one KV reservation on a decode rank: where each incoming row goes, which
// rows have been claimed by a frame, and how many have fully arrived. Pure memory arithmetic, no
// sockets, so every check that keeps a frame from writing out of bounds lives here.
//
// A row is one (layer, K or V, head, token) of head_dim elements of the KV cache's dtype (F32 or
// F16). A data frame covers the rows of one layer and kind for a head range and a token range;
// its payload is [tokens, heads, head_dim] of the frame's dtype, which must be the destination
// cache's (rows are copied as bytes, never converted), and token t's heads land in the
// destination block block_ids[t / block_size] at offset t % block_size.
//
// Thread safety: none; the receiver guards each reservation with its mutex.
#ifndef SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_RESERVATION_H_
#define SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_RESERVATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/comm/tcp_kv_transport_wire.h"
#include "worker/kv_transport.h"

namespace shardserve {

class KvReservation {
 public:
  // Checks that `destination` is consistent (views match the ranges and share one dtype, F32 or
  // F16; block ids are in range and enough for num_tokens) and starts with no rows claimed.
  static absl::StatusOr<KvReservation> Create(uint64_t transfer_id,
                                              const KvDestination& destination);

  // Checks data frame `h` against the reservation (layer, heads, tokens, head_dim, dtype, none of
  // its rows claimed before), claims its rows, and appends to `cursor` the destination memory of
  // its payload in payload order. INVALID_ARGUMENT, claiming nothing, when the frame does not fit.
  // REQUIRES: CheckFrameHeader(h).ok().
  absl::Status Claim(const KvFrameHeader& h, IovecCursor* cursor);

  // Records that the payload of claimed frame `h` has been written; true once every row of the
  // reservation has been.
  bool Received(const KvFrameHeader& h);

  int64_t rows_expected() const { return rows_expected_; }
  int64_t rows_received() const { return rows_received_; }

 private:
  KvReservation(uint64_t transfer_id, const KvDestination& destination);
  int64_t RowIndex(int64_t layer_idx, int kind, int64_t head_idx, int64_t token) const;

  uint64_t transfer_id_;
  KvDestination destination_;
  int64_t num_heads_;  // destination_.kv_heads.size()
  int64_t head_dim_;
  DType dtype_;  // of every layer view
  // [layers, 2, num_heads, num_tokens]: whether a frame has claimed the row.
  std::vector<bool> claimed_;
  int64_t rows_expected_;
  int64_t rows_received_ = 0;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_TCP_KV_TRANSPORT_RESERVATION_H_
