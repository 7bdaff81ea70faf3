// An in-memory key-value store with blocking reads, for rendezvous: the ranks of a group publish
// their connection data (Gloo addresses, NCCL unique ids) under agreed keys and wait for each
// other's. The coordinator serves it over gRPC (StoreService); workers reach it through
// GrpcStore.
//
//   RendezvousStore store;
//   RETURN_IF_ERROR(store.Set("group/0/rank_1", address));
//   ASSIGN_OR_RETURN(std::string peer, store.Get("group/0/rank_0", absl::Seconds(30)));
//
// Every blocking call takes a timeout and returns DEADLINE_EXCEEDED when it passes; timeouts are
// capped at Limits::max_wait so that a careless caller cannot pin a server thread for ever.
// Close() releases every waiter (with UNAVAILABLE), which lets a server shut down promptly.
//
// Byte values (Set/Get/Wait) and integer counters (Add) are separate namespaces: a counter is
// invisible to Get and Wait, as in torch.distributed's stores where Add keys are only read back
// through Add.
//
// Thread safety: all methods may be called concurrently from any thread.
#ifndef SHARDSERVE_COORDINATOR_RENDEZVOUS_STORE_H_
#define SHARDSERVE_COORDINATOR_RENDEZVOUS_STORE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace shardserve {

class RendezvousStore {
 public:
  // Bounds that turn abuse (huge keys or values, unbounded growth, endless waits) into clear
  // errors instead of memory exhaustion or stuck threads.
  struct Limits {
    size_t max_key_bytes = 1024;
    size_t max_value_bytes = 4 << 20;  // Gloo's address tables are O(world_size) small records
    size_t max_keys = 1 << 16;         // byte keys and counters together
    size_t max_keys_per_wait = 4096;
    absl::Duration max_wait = absl::Minutes(10);
  };

  RendezvousStore() : RendezvousStore(Limits()) {}
  explicit RendezvousStore(const Limits& limits);

  RendezvousStore(const RendezvousStore&) = delete;
  RendezvousStore& operator=(const RendezvousStore&) = delete;

  // Stores `value` under `key` (replacing an earlier value) and wakes waiters on it.
  // INVALID_ARGUMENT for an empty or oversized key or an oversized value; RESOURCE_EXHAUSTED
  // when the store is full; UNAVAILABLE after Close().
  absl::Status Set(absl::string_view key, std::string value);

  // The value of `key`, waiting up to `timeout` for it to be set. NOT_FOUND when `timeout` is
  // zero (or negative) and the key is absent; DEADLINE_EXCEEDED when the wait runs out.
  absl::StatusOr<std::string> Get(absl::string_view key, absl::Duration timeout);

  // Returns OK once every key is set; DEADLINE_EXCEEDED naming the missing keys otherwise.
  absl::Status Wait(const std::vector<std::string>& keys, absl::Duration timeout);

  // Adds `delta` to the counter `key` (created at 0) and returns the new value. Never blocks.
  absl::StatusOr<int64_t> Add(absl::string_view key, int64_t delta);

  // Removes every value and counter whose key starts with `prefix`; returns how many. Used when
  // a group is torn down so a re-formed group cannot read stale addresses.
  size_t RemovePrefix(absl::string_view prefix);

  // Number of byte keys plus counters held.
  size_t size() const;

  // Fails every current and future call with UNAVAILABLE. Idempotent.
  void Close();

 private:
  absl::Status CheckKey(absl::string_view key) const;
  absl::Duration ClampTimeout(absl::Duration timeout) const;
  // Why a wait for `keys` failed: closed, or which keys are still missing.
  absl::Status WaitFailure(const std::vector<std::string>& keys, absl::Duration timeout) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const Limits limits_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> counters_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_RENDEZVOUS_STORE_H_
