// KV blocks the coordinator holds back on decode groups for disaggregated requests that their
// leaders' load reports do not show yet.
//
// Why: LoadMonitor reports a decode group's free_kv_blocks every poll interval; requests routed in
// between would all see the same free count and pile onto one group. Each routing decision
// reserves the blocks it needs on its decode group, stamped with `mark`, the sequence number of
// the last GetLoad call LoadMonitor had issued when the decision was made. A reservation counts
// against its group until
//   - its Handle is destroyed (the request finished, failed or was retried elsewhere), or
//   - the group's latest load report comes from a call issued after the decision
//     (report sequence > mark): that report already counts the request's blocks, or will count
//     them as soon as the leader admits it, so holding them back as well would count them twice.
//
//   KvReservations reservations;
//   KvReservations::Handle h = reservations.Reserve(/*group_id=*/2, /*blocks=*/40, monitor.mark());
//   int32_t held = reservations.Reserved(2, latest_report.sequence);  // 40 until a newer report
//
// Thread safety: every method may be called from many threads. A Handle must not outlive its
// KvReservations.
#ifndef SHARDSERVE_COORDINATOR_KV_RESERVATIONS_H_
#define SHARDSERVE_COORDINATOR_KV_RESERVATIONS_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace shardserve {

class KvReservations {
 public:
  // One reservation. Move-only; destroying it (or a default-constructed one) releases it.
  class Handle {
   public:
    Handle() = default;
    Handle(Handle&& other) noexcept;
    Handle& operator=(Handle&& other) noexcept;  // releases this handle's reservation first
    Handle(const Handle&) = delete;
    ~Handle();

    int32_t group_id() const { return group_id_; }

   private:
    friend class KvReservations;
    Handle(KvReservations* owner, int32_t group_id, uint64_t id);

    KvReservations* owner_ = nullptr;  // null when empty or moved from
    int32_t group_id_ = -1;
    uint64_t id_ = 0;
  };

  KvReservations() = default;
  KvReservations(const KvReservations&) = delete;
  KvReservations& operator=(const KvReservations&) = delete;

  // Holds `blocks` back on `group_id` for a decision made when `mark` was the last GetLoad call
  // issued. REQUIRES: blocks >= 0.
  Handle Reserve(int32_t group_id, int32_t blocks, uint64_t mark);

  // Blocks held back on `group_id` given that its latest load report came from the call numbered
  // `report_sequence` (0: no report yet, every reservation counts). Reservations the report
  // supersedes are dropped. Saturates at INT32_MAX.
  int32_t Reserved(int32_t group_id, uint64_t report_sequence);

  // Live reservations on `group_id` (superseded ones included until Reserved() drops them).
  int NumReservations(int32_t group_id) const;

 private:
  struct Entry {
    int32_t blocks = 0;
    uint64_t mark = 0;
  };

  void Release(int32_t group_id, uint64_t id);

  mutable absl::Mutex mu_;
  // group id -> reservation id -> entry.
  absl::flat_hash_map<int32_t, absl::flat_hash_map<uint64_t, Entry>> groups_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_KV_RESERVATIONS_H_
