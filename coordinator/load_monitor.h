// Keeps the latest WorkerService.GetLoad reply of every engine group's leader, polled in the
// background, so routing reads loads from memory and never waits on the network.
//
// Every `poll_interval` (first at construction) a thread reads the plan and calls GetLoad,
// asynchronously, on the leader of each ready group (ready, no error, a leader with a
// WorkerService port) of every pool, each call with a deadline of `call_timeout`. A group whose
// previous call is still out gets no new one, so a hung leader costs one outstanding call and
// delays nobody else; its last report stays as it was and LastError() says why nothing newer
// came. Replies land on gRPC's callback threads.
//
// Each call gets a sequence number, increasing in the order the calls are issued; a Report keeps
// the number of its call and the time it was received. KvReservations compares these numbers
// with last_issued_sequence() at a routing decision to tell which reports already count that
// decision's request.
//
// A group drops its report (and error) when it leaves the plan, stops being ready or changes
// leader address: a new leader's cache is a new cache. Otherwise the last report stays however
// old it is (Report.received tells its age); a group the plan still calls ready but whose leader
// stopped answering keeps its last known load, and its requests fail fast on their own.
//
//   LoadMonitor monitor(&router, LoadMonitor::Options{});
//   if (std::optional<LoadMonitor::Report> r = monitor.Latest(group_id))
//   use(r->load.free_kv_blocks());
//
// Thread safety: every method may be called from many threads. `router` must outlive the monitor.
// The destructor cancels the calls still out and waits for their callbacks (at most about one
// round trip, never the full call_timeout).
#ifndef SHARDSERVE_COORDINATOR_LOAD_MONITOR_H_
#define SHARDSERVE_COORDINATOR_LOAD_MONITOR_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "coordinator/request_router.h"
#include "grpcpp/grpcpp.h"
#include "proto/shardserve/v1/worker.pb.h"

namespace shardserve {

class LoadMonitor {
 public:
  struct Options {
    // Time between polling rounds. REQUIRES: > 0.
    absl::Duration poll_interval = absl::Milliseconds(250);
    // Deadline of each GetLoad call. REQUIRES: > 0.
    absl::Duration call_timeout = absl::Seconds(1);
  };

  // A leader's latest load.
  struct Report {
    v1::GetLoadReply load;
    absl::Time received;
    uint64_t sequence = 0;       // of the GetLoad call that returned it; >= 1
    std::string leader_address;  // the leader that answered
  };

  // Starts polling at once.
  LoadMonitor(RequestRouter* router, Options options);
  ~LoadMonitor();

  LoadMonitor(const LoadMonitor&) = delete;
  LoadMonitor& operator=(const LoadMonitor&) = delete;

  // The latest report of `group_id`; nullopt before the first one (or after it was dropped).
  std::optional<Report> Latest(int32_t group_id) const;
  // Why the last call to `group_id`'s leader failed ("DEADLINE_EXCEEDED: ..."); empty when it
  // succeeded or none has ended yet.
  std::string LastError(int32_t group_id) const;
  // The sequence number of the last GetLoad call issued so far (0 before the first).
  uint64_t last_issued_sequence() const;

  const Options& options() const { return options_; }

 private:
  // One GetLoad call in flight; owned by the monitor until its callback ran.
  struct Call {
    int32_t group_id = 0;
    std::string leader_address;
    uint64_t sequence = 0;
    std::shared_ptr<v1::WorkerService::StubInterface> stub;
    grpc::ClientContext context;
    v1::GetLoadRequest request;
    v1::GetLoadReply reply;
  };

  void Poll();
  void PollOnce();
  void OnDone(Call* call, const grpc::Status& status);

  RequestRouter* const router_;
  const Options options_;

  mutable absl::Mutex mu_;
  // The groups of the last round: group id -> leader address.
  absl::flat_hash_map<int32_t, std::string> polled_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int32_t, Report> reports_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int32_t, std::string> errors_ ABSL_GUARDED_BY(mu_);
  // At most one call per group; moved to `finished_` by its callback and freed by the poller.
  absl::flat_hash_map<int32_t, std::unique_ptr<Call>> in_flight_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Call>> finished_ ABSL_GUARDED_BY(mu_);
  uint64_t last_issued_ ABSL_GUARDED_BY(mu_) = 0;

  absl::Notification stop_;
  std::thread poller_;  // last: started once everything above exists
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_LOAD_MONITOR_H_
