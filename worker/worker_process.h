// One worker process of a cluster: registers with the coordinator, keeps its registration alive,
// receives its shard assignment, loads its shard, joins its engine group's communicators and
// reports ready, then serves until told to stop.
//
//   WorkerOptions options;
//   options.coordinator = "127.0.0.1:7000";
//   options.role = v1::POOL_ROLE_BOTH;
//   WorkerProcess worker(options);
//   absl::Notification stop;             // notified from the signal thread on SIGTERM
//   absl::Status status = worker.Run(&stop);
//
// Run, step by step:
//  0. starts its WorkerService (proto/shardserve/v1/worker.proto) on `service_port` and
//     registers that port as WorkerInfo.port;
//  1. resolves the model (--model, else the coordinator's model path from GetPlan) and computes
//     its ModelFingerprint; Register (the coordinator refuses a different model);
//  2. starts the heartbeat thread (every RegisterReply.heartbeat_interval_ms);
//  3. long-polls GetAssignment until the plan places this worker;
//  4. LoadShard: opens the WeightSource, checks the assignment against the model, and sums the
//     bytes of the tensor rows and columns the shard holds;
//  5. joins the group: a Gloo control group over all ranks through the coordinator's rendezvous
//     store (under the group's rendezvous prefix), and the decoder's device groups: one
//     tensor-parallel group per pipeline stage and one pipeline group per tp rank, over shared
//     memory when every rank reports the same host (else Gloo); runs a barrier and one
//     all-reduce on each as a check; then builds the rank's GroupEngine (its Decoder shard and
//     KV cache);
//  6. ReportReady (with the error instead when 4 or 5 failed);
//  7. serves: the leader (group rank 0) answers WorkerService.Generate with its GroupEngine and
//     pings the followers while idle; followers run the leader's steps (ServeFollower). Until
//     `stop`, the group failing, or the coordinator declaring the worker dead.
// Run returns early with an error when the coordinator declares this worker dead (its heartbeat
// is answered NOT_FOUND) or is unreachable for longer than `rpc_timeout` during setup.
//
// Thread safety: Run is called once, from one thread; the heartbeat thread it starts is joined
// before Run returns.
#ifndef SHARDSERVE_WORKER_WORKER_PROCESS_H_
#define SHARDSERVE_WORKER_WORKER_PROCESS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/server.h"
#include "kernels/communicator.h"
#include "kernels/dtype.h"
#include "model/weight_source.h"
#include "prometheus/registry.h"
#include "proto/shardserve/v1/cluster.grpc.pb.h"
#include "worker/comm/tcp_kv_transport.h"
#include "worker/engine_metrics.h"
#include "worker/group_engine.h"
#include "worker/grpc_prefill_client.h"
#include "worker/serving_engine.h"
#include "worker/worker_service.h"

namespace shardserve {

struct WorkerOptions {
  // HOST:PORT of the coordinator (cluster service and rendezvous store).
  std::string coordinator;
  v1::PoolRole role = v1::POOL_ROLE_BOTH;
  // "cpu" or "cuda:N".
  std::string device = "cpu";
  int num_threads = 1;
  // Model path or known name; empty loads the coordinator's model path.
  std::string model;
  // Address peers reach this worker at (Gloo listens here); also decides which ranks share a
  // host (shared-memory device group).
  std::string host = "127.0.0.1";
  // Bound on each setup RPC, including waiting for an unreachable coordinator.
  absl::Duration rpc_timeout = absl::Seconds(30);
  // Bound on forming each communicator and on each of its operations.
  absl::Duration group_timeout = absl::Seconds(30);
  // Disaggregated serving, decode groups: how long a prefill group may take to compute a prompt
  // and deliver its KV before the request fails.
  absl::Duration kv_transfer_timeout = absl::Seconds(60);
  // Port of this worker's WorkerService on all interfaces; 0 picks a free one.
  int service_port = 0;
  // K and V bytes of the whole replica (see GroupEngine); 0: the model's whole context.
  int64_t kv_cache_bytes = 0;
  // The KV cache's element type (EngineOptions::kv_cache_dtype): kF16 or kF32. Every worker of a
  // cluster must use the same one (a group's ranks derive their block count from it, and a KV
  // transfer between groups of different dtypes fails).
  DType kv_cache_dtype = DType::kF16;
  // The leader's continuous batching (scheduler limits, idle ping interval).
  ServingOptions serving;
  // Where a leader registers its engine metrics (labelled by pool and group); not owned, may be
  // null, must outlive the process object.
  prometheus::Registry* metrics_registry = nullptr;
};

class WorkerProcess {
 public:
  explicit WorkerProcess(WorkerOptions options);
  ~WorkerProcess();

  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  // Runs the steps above, then blocks until `stop` is notified (OK), the coordinator declares
  // the worker dead or the group fails (error). Errors during setup are returned after being
  // reported. A follower also returns OK when its leader shuts the group down.
  absl::Status Run(absl::Notification* stop);

 private:
  absl::StatusOr<std::string> ModelPath();
  absl::Status Register(const std::string& path);
  // Everything after registration, while the heartbeat thread runs.
  absl::Status Serve(const std::string& path, absl::Notification* stop);
  void HeartbeatLoop(absl::Duration interval, absl::Notification* stop);
  absl::StatusOr<v1::GetAssignmentReply> AwaitAssignment(absl::Notification* stop);
  // Joins the control and device groups and checks them with a barrier and an all-reduce.
  absl::Status JoinGroup(const v1::GetAssignmentReply& reply);
  // Creates this rank's KV receiver or sender for its pool and, on a decode group, publishes
  // where it receives through the rendezvous store; a decode leader reads every rank's.
  absl::Status SetUpKvTransport(const v1::GetAssignmentReply& reply);
  // One of the decoder's device groups: shared memory when `one_host`, else Gloo.
  absl::StatusOr<std::unique_ptr<Communicator>> JoinDeviceGroup(const std::string& prefix,
                                                                int group_id, int rank,
                                                                int world_size, bool one_host);
  // Step 7 on the leader and on followers.
  absl::Status ServeLeader(absl::Notification* stop);
  absl::Status ServeFollower(absl::Notification* stop);
  absl::Status Dead();
  // Cancels WorkerService calls still running after a second; called once.
  void ShutdownServer();
  absl::Status ReportReady(int64_t epoch, const absl::Status& outcome);
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) const;

  const WorkerOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ClusterService::Stub> stub_;
  v1::WorkerInfo info_;
  absl::Duration heartbeat_interval_ = absl::Seconds(1);
  std::unique_ptr<WeightSource> weights_;
  std::unique_ptr<Communicator> control_;  // Gloo over all ranks: step plans
  // shm on one host, else Gloo: activations. tp_: this stage's tp_size ranks (tp_size > 1);
  // pp_: the pp_size ranks with this tp_rank (pp_size > 1).
  std::unique_ptr<Communicator> tp_;
  std::unique_ptr<Communicator> pp_;
  // Disaggregated serving: a decode group's ranks receive KV, a prefill group's send it; a
  // decode leader calls prefill leaders and knows where each of its ranks receives.
  std::unique_ptr<TcpKvReceiver> kv_receiver_;
  std::unique_ptr<TcpKvSender> kv_sender_;
  std::unique_ptr<GrpcPrefillClient> prefill_client_;
  std::vector<v1::KvPeer> kv_peers_;
  std::unique_ptr<GroupEngine> engine_;     // after JoinGroup; uses the communicators above
  std::unique_ptr<EngineMetrics> metrics_;  // leader only, when a registry is given
  std::unique_ptr<ServingEngine> serving_;  // leader only, while serving; uses engine_
  int group_id_ = -1;                       // once assigned
  WorkerServiceImpl service_;
  std::unique_ptr<grpc::Server> server_;  // WorkerService; shut down before engine_ goes
  bool server_shut_down_ = false;

  absl::Mutex mu_;
  int64_t resident_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status dead_ ABSL_GUARDED_BY(mu_);  // set by the heartbeat thread on NOT_FOUND
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_WORKER_PROCESS_H_
