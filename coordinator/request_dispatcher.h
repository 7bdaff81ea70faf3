// Decides where one request runs under the current plan and holds what that takes: the
// in-flight slots and, for a disaggregated request, the decode group's KV reservation.
//
// By the plan's mode (RequestRouter::ModeOf):
//   - kColocated, kDecodeOnly: RequestRouter::Pick() - one group runs the whole request.
//   - kPrefillOnly, kNoGroups: UNAVAILABLE, saying why (RequestRouter::Pick()).
//   - kDisaggregated: DisaggRouter decides over each pool's groups as known now: readiness from
//     the plan, in-flight counts from RequestRouter, loads from LoadMonitor, reserved blocks from
//     this dispatcher's KvReservations. The request then holds a slot on the prefill group and
//     one on the decode group (max_inflight_per_group applies to both; RESOURCE_EXHAUSTED when
//     full) and reserves decode_blocks_needed on the decode group. The coordinator sends
//     Generate to the decode group's leader with `remote_prefill` naming the prefill group's
//     leader (Assignment::PrepareRequest); the decode leader has the prompt prefilled there.
//
// Loads: a group without a load report yet (the first poll has not answered) is taken to have
// kUnknownKvBlocks free and in total, so at startup requests are admitted and spread by in-flight
// counts rather than refused; as soon as a report arrives its numbers are used. The price: until
// then (normally one poll interval after the group became ready) such a decode group outranks
// every reported one, and a leader that never answers GetLoad keeps that rank; its requests
// then fail on their own (and an UNAVAILABLE one is retried elsewhere). A report is used however
// old it is (LoadMonitor keeps the last one); a newer report releases the reservations it
// supersedes (see KvReservations).
//
// Slots: the prefill slot may be released once the request's first token arrived (the prefill is
// then done: Assignment::ReleasePrefill); the decode slot and the reservation go with the
// Assignment.
//
// Errors (disaggregated): UNAVAILABLE when a pool has no ready group, naming why each is not;
// RESOURCE_EXHAUSTED when every ready group of a pool is full (a decode group without the KV
// blocks the request needs still takes it into its bounded queue: see DisaggRouter);
// INVALID_ARGUMENT for an empty prompt.
//
// Retries (see GenerateRelay): Avoid names a prefill or a decode group the request must not use;
// it is passed to DisaggRouter as full (in_flight = max_inflight_per_group), not as unready, so
// the group keeps its prefix index. UNAVAILABLE when the avoided group's pool has no other ready
// group.
//
// Prefix indexes: when the plan's epoch changes, every prefill group's index is forgotten (a new
// plan's groups start with empty caches).
//
//   RequestDispatcher dispatcher(&router, &disagg_router, &load_monitor, {});
//   ASSIGN_OR_RETURN(RequestDispatcher::Assignment a, dispatcher.Pick({prompt, max_tokens}, {}));
//   a.PrepareRequest(&group_request);
//   a.route().stub()->Generate(&context, group_request);
//
// Thread safety: every method may be called from many threads; disaggregated decisions are made
// one at a time, so back-to-back requests see each other's reservations. `router`,
// `disagg_router` and `load_monitor` must outlive the dispatcher, and the dispatcher its
// Assignments. `disagg_router`'s max_inflight_per_group should equal `router`'s.
#ifndef SHARDSERVE_COORDINATOR_REQUEST_DISPATCHER_H_
#define SHARDSERVE_COORDINATOR_REQUEST_DISPATCHER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "coordinator/disagg_router.h"
#include "coordinator/kv_reservations.h"
#include "coordinator/load_monitor.h"
#include "coordinator/request_router.h"
#include "proto/shardserve/v1/worker.pb.h"

namespace shardserve {

class RequestDispatcher {
 public:
  // What a group without a load report yet is taken to have, free and in total.
  static constexpr int32_t kUnknownKvBlocks = 1 << 30;

  struct Options {
    // Tokens per KV block on the workers (worker/engine.h EngineOptions::block_size, 16 on every
    // worker today): sizes the decode reservation and the prefix hashes. REQUIRES: >= 1.
    int32_t block_size = 16;
  };

  struct Request {
    absl::Span<const int32_t> prompt_token_ids;  // [num_prompt_tokens]; must outlive Pick()
    int32_t max_tokens = 0;                      // output tokens at most
  };

  // Groups a retried request must not use; -1: none.
  struct Avoid {
    int32_t prefill_group_id = -1;
    int32_t decode_group_id = -1;
  };

  // Where one request runs, and the slots and reservation it holds. Move-only.
  class Assignment {
   public:
    Assignment(Assignment&&) = default;
    Assignment& operator=(Assignment&&) = default;

    // The group Generate goes to: the whole request's group, or the decode group.
    const RequestRouter::Route& route() const { return route_; }
    bool disaggregated() const { return prefill_group_id_ >= 0; }
    // The prefill group (disaggregated only; -1 / empty otherwise), kept after ReleasePrefill().
    int32_t prefill_group_id() const { return prefill_group_id_; }
    const std::string& prefill_leader_address() const { return prefill_leader_address_; }
    // Whether the prefill slot is still held.
    bool holds_prefill_slot() const { return prefill_slot_.has_value(); }
    // The decision (disaggregated only).
    const DisaggRouter::Decision& decision() const { return decision_; }

    // Frees the prefill slot (the prefill is done); idempotent.
    void ReleasePrefill() { prefill_slot_.reset(); }
    // Sets `request.remote_prefill` to the prefill group (disaggregated), or clears it.
    void PrepareRequest(v1::GenerateOnGroupRequest* request) const;

   private:
    friend class RequestDispatcher;
    explicit Assignment(RequestRouter::Route route);
    Assignment(RequestRouter::Route decode, RequestRouter::Route prefill,
               KvReservations::Handle reservation, DisaggRouter::Decision decision);

    RequestRouter::Route route_;
    std::optional<RequestRouter::Route> prefill_slot_;
    int32_t prefill_group_id_ = -1;
    std::string prefill_leader_address_;
    KvReservations::Handle reservation_;
    DisaggRouter::Decision decision_;
  };

  RequestDispatcher(RequestRouter* router, DisaggRouter* disagg_router, LoadMonitor* load_monitor,
                    Options options);

  RequestDispatcher(const RequestDispatcher&) = delete;
  RequestDispatcher& operator=(const RequestDispatcher&) = delete;

  // Routes one request under the router's current plan, as described above.
  absl::StatusOr<Assignment> Pick(const Request& request, const Avoid& avoid);

  RequestRouter* router() const { return router_; }
  const Options& options() const { return options_; }

 private:
  // Each group of `role` in `plan` as DisaggRouter sees it now; `avoid_group_id` is passed full.
  std::vector<DisaggRouter::GroupState> GroupStates(const v1::GetPlanReply& plan, v1::PoolRole role,
                                                    int32_t avoid_group_id);
  absl::StatusOr<Assignment> PickDisaggregated(const v1::GetPlanReply& plan, const Request& request,
                                               const Avoid& avoid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetIndexesOnNewEpoch(const v1::GetPlanReply& plan) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  RequestRouter* const router_;
  DisaggRouter* const disagg_router_;
  LoadMonitor* const load_monitor_;
  const Options options_;
  KvReservations reservations_;

  absl::Mutex mu_;  // one disaggregated decision at a time
  int64_t plan_epoch_ ABSL_GUARDED_BY(mu_) = -1;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_REQUEST_DISPATCHER_H_
