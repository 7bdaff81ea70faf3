// Moves the KV cache of a prompt from the ranks of a prefill engine group straight into the
// blocks of the ranks of a decode engine group, layer by layer, re-slicing KV heads in flight.
//
// Each side is tp_size x pp_size ranks; a rank's KvCache holds its pipeline stage's layers and
// its tensor-parallel slice of KV heads (ShardSpec::layers, ShardSpec::kv_heads). The two groups
// may use different TP and PP degrees: every prefill rank sends every decode rank the
// intersection of their layer ranges and of their head ranges, for every token, so each
// (layer, K/V, head, token) row reaches the one decode rank that owns it from the one prefill
// rank that computed it (KV heads are split, never replicated, over TP ranks; a row that arrives
// twice fails the transfer).
//
// Rows move as the caches store them, F32 or F16 (KvLayerView::dtype), never converted: both
// groups must run KV caches of one dtype, and a row of another dtype fails its transfer
// (INVALID_ARGUMENT on both sides) without being written.
//
// Block ids differ on the two sides. The wire carries token positions, never block ids: each
// decode rank maps position t to (block_ids[t / block_size], t % block_size) of its own
// reservation, so no frame can name a block the reservation does not hold.
//
// Decode rank:
//   KvDestination dst;                      // blocks the leader reserved for the prompt
//   dst.block_ids = {7, 3, 9};              // in token order
//   dst.num_tokens = 40;
//   dst.layers = shard.layers;
//   dst.kv_heads = shard.kv_heads;
//   dst.layer_views.assign(cache->layers().begin(), cache->layers().end());  // its KvCache
//   RETURN_IF_ERROR(receiver->Expect(transfer_id, dst));
//   ... hand receiver->address() and the ranges to the prefill group ...
//   RETURN_IF_ERROR(receiver->Wait(transfer_id, absl::Seconds(30)));  // KV in place
//
// Prefill rank, as each layer of the prompt finishes:
//   RETURN_IF_ERROR(sender->SendLayer(transfer_id, peers, layer, source));
//   ...
//   RETURN_IF_ERROR(sender->Finish(transfer_id, peers, absl::OkStatus()));
#ifndef SHARDSERVE_WORKER_KV_TRANSPORT_H_
#define SHARDSERVE_WORKER_KV_TRANSPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "kernels/ops.h"
#include "model/shard_spec.h"

namespace shardserve {

// A reservation on a decode rank: where the KV of one prompt goes.
struct KvDestination {
  // Destination blocks in token order: token t lands in block_ids[t / block_size] at offset
  // t % block_size. At least ceil(num_tokens / block_size) ids, each < the views' num_blocks;
  // later ids are not touched.
  std::vector<int32_t> block_ids;
  int64_t num_tokens = 0;  // the prompt tokens [0, num_tokens) whose KV is expected
  IndexRange layers;       // of the model's layers: this rank's pipeline stage
  IndexRange kv_heads;     // of the model's KV heads: this rank's tensor-parallel slice
  // One view per layer of `layers`, in order: K and V are
  // [num_blocks, block_size, kv_heads.size(), head_dim] of one dtype for all views, F32 or F16,
  // which the senders' must equal. The memory must stay live until the reservation ends (Wait or
  // Cancel returns, or the receiver is destroyed).
  std::vector<KvLayerView> layer_views;
};

// A decode rank as a prefill rank sees it.
struct KvPeer {
  std::string address;  // host:port of the rank's KvReceiver
  IndexRange layers;    // of the model's layers held by the rank
  IndexRange kv_heads;  // of the model's KV heads held by the rank
};

// One layer of a prefill rank's KV for a prompt.
struct KvSource {
  // K and V: [num_blocks, block_size, kv_heads.size(), head_dim] of view.dtype, F32 or F16.
  KvLayerView view;
  // The prompt's source blocks in token order (at least ceil(num_tokens / block_size)).
  absl::Span<const int32_t> block_ids;
  int64_t num_tokens = 0;  // the prompt's length
  IndexRange kv_heads;     // of the model's KV heads held by `view`
  // The tokens to send now, within [0, num_tokens); empty means all of them. Lets a chunked
  // prefill send each chunk of a layer as it is computed.
  IndexRange tokens;
};

// Receives KV into reserved blocks (one per decode rank).
//
// Thread safety: every method may be called from any thread. Incoming data is written by the
// implementation's own threads, into the reserved blocks only, and only while the reservation
// is pending.
class KvReceiver {
 public:
  virtual ~KvReceiver() = default;

  // host:port that senders connect to.
  virtual std::string address() const = 0;

  // Registers the reservation `transfer_id`: from now on, data for it is written into
  // `destination`'s blocks. Call before any sender may send for it; data that arrives for an
  // unknown transfer is discarded (and reported to its sender by Finish). Fails with
  // INVALID_ARGUMENT for an inconsistent destination and ALREADY_EXISTS for a pending id.
  // REQUIRES: transfer ids are never reused on one receiver (a late frame of an earlier
  // transfer must not land in a new reservation).
  virtual absl::Status Expect(uint64_t transfer_id, const KvDestination& destination) = 0;

  // Blocks until the transfer ends and forgets it, whatever the outcome:
  //   OK once every (layer, K/V, head, token) row of the reservation has been written;
  //   the error a sender reported through Finish, or INVALID_ARGUMENT for a frame that does not
  //   fit the reservation, its dtype included (it is never written);
  //   UNAVAILABLE when a sender's connection drops, or stalls mid-frame, before it finished;
  //   DEADLINE_EXCEEDED when `timeout` passes first (the reservation is cancelled);
  //   NOT_FOUND when the id is not pending.
  // Once Wait returns, no more data is written into the reservation's blocks.
  virtual absl::Status Wait(uint64_t transfer_id, absl::Duration timeout) = 0;

  // Drops a pending reservation (no-op when unknown). Once Cancel returns, no more data is written
  // into its blocks, so they may be freed or reused; data that arrives later is discarded.
  virtual void Cancel(uint64_t transfer_id) = 0;

  // Reservations registered and not yet ended by Wait or Cancel.
  virtual int64_t num_pending() const = 0;
};

// Sends a prefill rank's KV to the decode ranks (one per prefill rank).
//
// Thread safety: not thread-safe; call from one thread (the rank's compute thread, layer by layer
// as prefill finishes each layer). Connections to decode ranks are opened on first use and kept.
class KvSender {
 public:
  virtual ~KvSender() = default;

  // Sends `source`'s layer `layer` (of the model's layers) to every peer whose layer range holds
  // it and whose head range meets source.kv_heads: K and V rows of the common heads for
  // source.tokens. Returns once the data is handed to the network, so the source blocks may be
  // overwritten. Sends nothing to other peers. A peer that cannot be reached or stops reading
  // gives UNAVAILABLE naming it, within the implementation's I/O timeout; its connection is
  // dropped and a later call reconnects.
  virtual absl::Status SendLayer(uint64_t transfer_id, absl::Span<const KvPeer> peers,
                                 int64_t layer, const KvSource& source) = 0;

  // Tells every peer (all of `peers`, whether or not this rank sent them rows) that this rank is
  // done with `transfer_id`, and waits for each one's answer. With a non-OK `status` (prefill
  // failed or was cancelled), each peer's pending reservation fails with it, and Finish returns
  // OK once every peer has answered. With OK, returns OK once every peer has confirmed that every
  // row this rank sent it was written into the reservation; otherwise the first peer's error
  // (e.g. NOT_FOUND: the reservation had ended; UNAVAILABLE: the peer did not answer).
  // Call once per transfer, also after a failed SendLayer.
  virtual absl::Status Finish(uint64_t transfer_id, absl::Span<const KvPeer> peers,
                              const absl::Status& status) = 0;
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_KV_TRANSPORT_H_
