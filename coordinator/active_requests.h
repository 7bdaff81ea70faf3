// The coordinator's table of running Generate calls: request id -> the client's call and the
// call to the engine group. It serves Abort, refuses duplicate ids, and propagates client
// cancellation to the group.
//
// Why a watcher thread: a request waiting in a group's queue produces no tokens, so the relay,
// blocked reading the group's stream, would not notice that its client went away. Every
// `poll_period` the watcher asks each client call whether it was cancelled (or its deadline
// passed) and cancels the group call, which frees the request's KV blocks on the group.
//
//   ActiveRequests active(absl::Milliseconds(20));
//   grpc::ClientContext group_call;
//   RETURN_IF_ERROR(active.Add(id, server_context, &group_call));   // ALREADY_EXISTS
//   ... relay ...
//   active.Remove(id);          // before group_call or server_context is destroyed
//
// A retried request gets a new group call (a ClientContext serves one call): SetGroupCall swaps
// it in before the old one is destroyed.
//
// Thread safety: every method may be called from any thread. The contexts passed to Add must
// stay alive until Remove(id) returns; the table calls TryCancel on the group call and
// IsCancelled on the client call from the watcher and from Abort, both of which gRPC allows from
// any thread.
#ifndef SHARDSERVE_COORDINATOR_ACTIVE_REQUESTS_H_
#define SHARDSERVE_COORDINATOR_ACTIVE_REQUESTS_H_

#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"

namespace shardserve {

class ActiveRequests {
 public:
  // Starts the watcher thread.
  explicit ActiveRequests(absl::Duration poll_period = absl::Milliseconds(20));
  // Stops the watcher. REQUIRES: no request is registered any more.
  ~ActiveRequests();

  ActiveRequests(const ActiveRequests&) = delete;
  ActiveRequests& operator=(const ActiveRequests&) = delete;

  // Registers a request. `client_call` may be null (not watched). ALREADY_EXISTS when `id` is
  // registered already.
  absl::Status Add(const std::string& id, grpc::ServerContextBase* client_call,
                   grpc::ClientContext* group_call);
  // Forgets `id`; afterwards the table touches neither context.
  void Remove(const std::string& id);
  // Replaces the group call of `id`; afterwards the table no longer touches the old one. When the
  // request was aborted or its client left already, the new call is cancelled at once (gRPC then
  // cancels it as it starts). No-op for an unknown id.
  void SetGroupCall(const std::string& id, grpc::ClientContext* group_call);

  // Cancels the group call of `id` and marks the request aborted. False for an unknown id.
  bool Abort(const std::string& id);
  // Whether Abort named `id` (false for unknown ids).
  bool IsAborted(const std::string& id) const;

  int size() const;

 private:
  struct Entry {
    grpc::ServerContextBase* client_call;
    grpc::ClientContext* group_call;
    bool aborted = false;
    bool cancel_sent = false;
  };

  void Watch();

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  const absl::Duration poll_period_;
  absl::Notification stop_;
  std::thread watcher_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_ACTIVE_REQUESTS_H_
