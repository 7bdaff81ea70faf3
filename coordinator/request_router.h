// Picks the engine group that runs a request, and admits or refuses it; holds the slots that
// bound the requests in flight per group, and the WorkerService stubs of the groups' leaders.
//
// The plan's pools decide how requests run (Mode):
//   - some "both" group                     -> kColocated: "both" groups run whole requests (any
//                                              prefill or decode groups of the plan stay idle);
//   - no "both", prefill and decode groups  -> kDisaggregated: RequestDispatcher
//                                              (coordinator/request_dispatcher.h) picks a prefill
//                                              and a decode group and holds a slot on each;
//   - only decode groups                    -> kDecodeOnly: decode groups run whole requests;
//   - only prefill groups                   -> kPrefillOnly: nothing can generate; UNAVAILABLE;
//   - no group (no plan yet)                -> kNoGroups: UNAVAILABLE.
// Candidates are the groups that run whole requests (kColocated, kDecodeOnly) with their leader's
// address (the WorkerInfo host:port of group rank 0). Of the ready candidates with room, Pick()
// takes the one with the fewest requests in flight from this router (ties go round-robin), and
// holds a slot there until the returned Route is destroyed. Hold() takes a slot on one given group
// (the disaggregated path, which decides itself).
//
//   RequestRouter router([&] { return registry.GetPlan(); }, {.max_inflight_per_group = 256});
//   ASSIGN_OR_RETURN(RequestRouter::Route route, router.Pick());
//   route.stub()->Generate(&context, request);   // the slot is freed when `route` goes
//
// Admission: a group holds at most `max_inflight_per_group` routed requests; when every ready
// candidate is full, Pick() fails at once with RESOURCE_EXHAUSTED (never waits). With no ready
// candidate it fails with UNAVAILABLE saying how many groups are ready and why the others are
// not.
//
// Channels and stubs are cached per leader address for the router's lifetime; they connect on
// first use, so picking needs no network.
//
// Thread safety: every method may be called from many threads. A Route must not outlive its
// router.
#ifndef SHARDSERVE_COORDINATOR_REQUEST_ROUTER_H_
#define SHARDSERVE_COORDINATOR_REQUEST_ROUTER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "proto/shardserve/v1/cluster.pb.h"
#include "proto/shardserve/v1/worker.grpc.pb.h"

namespace shardserve {

class RequestRouter {
 public:
  struct Options {
    // Requests routed to one group and not yet finished, at most.
    int max_inflight_per_group = 256;
  };

  // Returns the current plan and registrations (WorkerRegistry::GetPlan in the coordinator).
  // Called on every Pick(); must be thread-safe.
  using PlanSource = std::function<v1::GetPlanReply()>;

  // How the plan's requests run (see the file comment).
  enum class Mode { kColocated, kDisaggregated, kDecodeOnly, kPrefillOnly, kNoGroups };

  // A group of the plan as routing sees it.
  struct Candidate {
    int32_t group_id = 0;
    v1::PoolRole role = v1::POOL_ROLE_UNSPECIFIED;
    bool ready = false;
    std::string leader_address;  // host:port; empty when the leader serves no WorkerService
    std::string error;           // why the group cannot serve; empty when healthy
  };

  // A request's slot on its group. Move-only; destroying it frees the slot.
  class Route {
   public:
    Route(Route&& other) noexcept;
    Route& operator=(Route&& other) noexcept;  // frees this route's slot first
    Route(const Route&) = delete;
    ~Route();

    int32_t group_id() const { return group_id_; }
    const std::string& pool() const { return pool_; }  // "prefill", "decode" or "both"
    const std::string& leader_address() const { return leader_address_; }
    v1::WorkerService::StubInterface* stub() const { return stub_.get(); }

   private:
    friend class RequestRouter;
    Route(RequestRouter* router, int32_t group_id, std::string pool, std::string leader_address,
          std::shared_ptr<v1::WorkerService::StubInterface> stub);

    RequestRouter* router_;  // null once moved from
    int32_t group_id_;
    std::string pool_;
    std::string leader_address_;
    std::shared_ptr<v1::WorkerService::StubInterface> stub_;
  };

  RequestRouter(PlanSource plan_source, Options options);

  RequestRouter(const RequestRouter&) = delete;
  RequestRouter& operator=(const RequestRouter&) = delete;

  // Routes one whole request, as described above, under the source's plan or `plan`.
  // FAILED_PRECONDITION for a kDisaggregated plan (RequestDispatcher routes those).
  absl::StatusOr<Route> Pick();
  absl::StatusOr<Route> Pick(const v1::GetPlanReply& plan);
  // Takes a slot on `group`: UNAVAILABLE when it is not ready, RESOURCE_EXHAUSTED when it holds
  // max_inflight_per_group requests. The check and the count are one atomic step.
  absl::StatusOr<Route> Hold(const Candidate& group);

  // The mode of `plan` (see the file comment).
  static Mode ModeOf(const v1::GetPlanReply& plan);
  // The groups of `plan` that run whole requests, in plan order: "both" groups (kColocated),
  // decode groups (kDecodeOnly), none otherwise.
  static std::vector<Candidate> Candidates(const v1::GetPlanReply& plan);
  // The groups of `plan` with `role`, in plan order.
  static std::vector<Candidate> PoolGroups(const v1::GetPlanReply& plan, v1::PoolRole role);
  // Whether `plan` can run a request now: a ready candidate, or (kDisaggregated) a ready prefill
  // group and a ready decode group.
  static bool CanServe(const v1::GetPlanReply& plan);
  // "prefill", "decode", "both".
  static std::string PoolName(v1::PoolRole role);
  // host:port of `group`'s leader from the plan's registrations; empty when unknown or portless.
  static std::string LeaderAddress(const v1::GetPlanReply& plan, const v1::EngineGroup& group);

  // The plan, from the source.
  v1::GetPlanReply Plan() const { return plan_source_(); }
  // CanServe() of the source's plan now (the coordinator's health).
  bool HasReadyGroup() const;
  // Requests routed to `group_id` and not yet finished.
  int Inflight(int32_t group_id) const;
  // The cached stub for a leader address (made on first use).
  std::shared_ptr<v1::WorkerService::StubInterface> StubFor(const std::string& address);

  const Options& options() const { return options_; }

 private:
  void Release(int32_t group_id);

  const PlanSource plan_source_;
  const Options options_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<int32_t, int> inflight_ ABSL_GUARDED_BY(mu_);  // group id -> requests
  absl::flat_hash_map<std::string, std::shared_ptr<v1::WorkerService::StubInterface>> stubs_
      ABSL_GUARDED_BY(mu_);                       // leader address -> stub
  uint64_t next_start_ ABSL_GUARDED_BY(mu_) = 0;  // round-robin among equally loaded groups
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_REQUEST_ROUTER_H_
