// One InferenceService.Generate call once its request is validated: registration, routing, the
// relay of the engine group's token stream to the client, the end, and the one retry that a
// disaggregated request may get.
//
//   1. Register the request id in ActiveRequests (ALREADY_EXISTS for a running duplicate).
//   2. Route: RequestDispatcher::Pick (a whole-request group, or a prefill and a decode group).
//   3. Relay: open WorkerService.Generate on the group's leader (the decode leader, with
//      `remote_prefill` naming the prefill leader, when disaggregated) with the client's
//      deadline; each token goes through ResponseBuilder (detokenizer, stop checker) to the
//      client. When a stop string ends the request before the group does, the group call is
//      cancelled so the group frees the KV blocks at once. The first token frees the prefill slot.
//   4. End: the last response carries finish_reason, stop_reason and usage. Abort ends a stream
//      with finish_reason "abort" and status OK; a client that leaves or whose deadline passes has
//      its group call cancelled within ActiveRequests' poll period, even while the request is
//      still queued on the group. Errors from the group keep their code, prefixed with the group,
//      its pool and its leader ("engine group 2 (decode pool, leader HOST:PORT): ...").
//
// Retry rule (disaggregated requests only, at most one retry per request): when the decode
// leader's stream ends with UNAVAILABLE before any token came from it (so nothing was sent to the
// client), the request is routed once more with the same logic, avoiding the group that failed:
//   - a message starting with "prefill group " (the decode leader's report that the prefill group
//     failed or could not be reached) blames the prefill group: the retry needs another ready
//     prefill group; its decode group is chosen afresh and may be the same one;
//   - any other UNAVAILABLE blames the decode group (it died or could not be reached): the retry
//     needs another ready decode group; its prefill group is chosen afresh and may be the same.
// The failed attempt's slots and KV reservation are freed before the retry is routed. When the
// retry cannot be routed, the request ends with the first error (its message notes why there was
// no retry). Never retried: once any token arrived from the group (even one the stop checker holds
// back), colocated and decode-only requests, any code but UNAVAILABLE (DEADLINE_EXCEEDED,
// RESOURCE_EXHAUSTED, ...), a second failure, an aborted or cancelled request.
//
// Metrics (RequestMetrics): the Tracker starts at the first routing (queue time observed once);
// a retry replaces it with one for the new groups and counts shardserve_request_retries_total on
// the group that failed.
//
//   GenerateRelay relay(deps, context, writer, std::move(validated), request_id, arrival);
//   absl::Status status = relay.Run();   // blocks for the request's life
//
// Not thread-safe: one per Generate call, run on its gRPC thread. Everything in Deps and
// `context`, `writer` must outlive it.
#ifndef SHARDSERVE_COORDINATOR_GENERATE_RELAY_H_
#define SHARDSERVE_COORDINATOR_GENERATE_RELAY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "coordinator/active_requests.h"
#include "coordinator/model_frontend.h"
#include "coordinator/request_dispatcher.h"
#include "coordinator/request_metrics.h"
#include "coordinator/request_validation.h"
#include "coordinator/response_builder.h"
#include "grpcpp/grpcpp.h"
#include "proto/shardserve/v1/inference.pb.h"
#include "proto/shardserve/v1/worker.pb.h"
#include "worker/finish_reason.h"

namespace shardserve {

class GenerateRelay {
 public:
  struct Deps {
    const ModelFrontend* model;
    RequestDispatcher* dispatcher;
    RequestMetrics* metrics;
    ActiveRequests* active;
  };

  GenerateRelay(const Deps& deps, grpc::ServerContext* context,
                grpc::ServerWriterInterface<v1::GenerateResponse>* writer, ValidatedRequest request,
                std::string request_id, absl::Time arrival);

  GenerateRelay(const GenerateRelay&) = delete;
  GenerateRelay& operator=(const GenerateRelay&) = delete;

  // Runs the request to its end, as described above. Call once.
  absl::Status Run();

 private:
  // Relays one call to `assignment`'s group. Returns the request's result, or nullopt when the
  // group ended with an error before sending any token (then `*group_error` is that error).
  std::optional<absl::Status> RelayOnce(RequestDispatcher::Assignment& assignment,
                                        grpc::ClientContext* group_call, grpc::Status* group_error);
  // The groups a retry must avoid after `error`, or nullopt when the rule allows no retry.
  static std::optional<RequestDispatcher::Avoid> RetryAvoiding(
      const grpc::Status& error, const RequestDispatcher::Assignment& assignment);
  std::unique_ptr<RequestMetrics::Tracker> StartTracker(
      const RequestDispatcher::Assignment& assignment) const;
  std::unique_ptr<grpc::ClientContext> NewGroupCall() const;
  RequestDispatcher::Request ToRoute() const;

  // Sends the last response for a reason no token gave; the request ends OK.
  absl::Status FinishWithoutToken(FinishReason reason);
  // Records the end with `reason` and returns `status`.
  absl::Status EndWith(absl::string_view reason, absl::Status status);

  const Deps deps_;
  grpc::ServerContext* const context_;
  grpc::ServerWriterInterface<v1::GenerateResponse>* const writer_;
  const ValidatedRequest request_;
  const std::string request_id_;
  const absl::Time arrival_;
  v1::GenerateOnGroupRequest group_request_;
  ResponseBuilder builder_;
  std::unique_ptr<RequestMetrics::Tracker> tracker_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_GENERATE_RELAY_H_
