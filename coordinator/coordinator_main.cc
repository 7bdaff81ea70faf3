// shardserve-coordinator: hosts the public API (InferenceService), the cluster control plane
// (worker registry, placement plan, readiness) and the rendezvous store on one gRPC port, with the
// gRPC health service and server reflection beside them.
//
//   shardserve-coordinator --port=7000 --model=smollm2 --groups=1 --tp=3
//   shardserve-coordinator --port=0 --model=model.gguf --prefill_groups=1 --decode_groups=2
//       --prefill_tp=2 --decode_tp=1   (one command line)
//
// The coordinator reads only the model's config, tokenizer and chat template (it never loads
// weights or runs kernels), validates the layout at start (exit 2 with the reason for a layout
// the model cannot take), prints "listening on HOST:PORT" once serving, and runs until SIGINT or
// SIGTERM. Health ("" and "shardserve.v1.InferenceService") is SERVING only while the plan can
// run a request: a ready "both" group, or with prefill and decode pools a ready group in each.
// With --metrics_port, request metrics are served at http://HOST:PORT/metrics.
//
// Pools: with "both" groups requests run colocated on them; with prefill and decode groups only,
// each request is disaggregated (RequestDispatcher): the coordinator picks a prefill group
// (prefix-cache affinity, load) and a decode group (free KV blocks per request, from the leaders'
// GetLoad polled every --load_poll_interval) and streams from the decode leader, which has the
// prompt prefilled on the prefill group.
#include <signal.h>

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/metrics_server.h"
#include "common/status_macros.h"
#include "coordinator/cluster_service.h"
#include "coordinator/disagg_router.h"
#include "coordinator/health_reporter.h"
#include "coordinator/inference_service.h"
#include "coordinator/load_monitor.h"
#include "coordinator/model_frontend.h"
#include "coordinator/placement_planner.h"
#include "coordinator/rendezvous_store.h"
#include "coordinator/request_dispatcher.h"
#include "coordinator/request_metrics.h"
#include "coordinator/request_router.h"
#include "coordinator/store_service.h"
#include "coordinator/worker_registry.h"
#include "glog/logging.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "model/model_fingerprint.h"
#include "model/model_resolver.h"
#include "model/weight_source.h"
#include "prometheus/registry.h"

ABSL_FLAG(int32_t, port, 7000, "gRPC port; 0 picks a free one (printed on stdout)");
ABSL_FLAG(std::string, host, "0.0.0.0", "address to listen on");
ABSL_FLAG(std::string, model, "smollm2", "model file, Hugging Face directory or known name");
ABSL_FLAG(int32_t, groups, -1, "colocated ('both') engine groups; 1 when no pool flag is given");
ABSL_FLAG(int32_t, prefill_groups, -1, "prefill engine groups");
ABSL_FLAG(int32_t, decode_groups, -1, "decode engine groups");
ABSL_FLAG(int32_t, tp, 1, "tensor-parallel ranks per stage, every pool");
ABSL_FLAG(int32_t, pp, 1, "pipeline stages, every pool");
ABSL_FLAG(int32_t, ep, 1, "expert-parallel ranks (1 or tp), every pool");
ABSL_FLAG(std::string, moe_combine, "allreduce",
          "how expert-parallel MoE layers combine experts: allreduce, or alltoall (dispatch and "
          "combine with all-to-all; needs ep == tp > 1), every pool");
ABSL_FLAG(int32_t, prefill_tp, 0, "prefill pool's tp (0: --tp)");
ABSL_FLAG(int32_t, decode_tp, 0, "decode pool's tp (0: --tp)");
ABSL_FLAG(int32_t, prefill_pp, 0, "prefill pool's pp (0: --pp)");
ABSL_FLAG(int32_t, decode_pp, 0, "decode pool's pp (0: --pp)");
ABSL_FLAG(int32_t, prefill_ep, 0, "prefill pool's ep (0: --ep)");
ABSL_FLAG(int32_t, decode_ep, 0, "decode pool's ep (0: --ep)");
ABSL_FLAG(absl::Duration, heartbeat_timeout, absl::Seconds(5),
          "a worker silent this long is declared dead and its group failed");
ABSL_FLAG(absl::Duration, wait_for_workers, absl::Seconds(60),
          "after this long without enough workers, the planner's refusal is logged");
ABSL_FLAG(std::string, served_model_name, "",
          "the model name requests use; empty: the --model name (\"smollm2\"), or the model "
          "file's name without its extension");
ABSL_FLAG(int32_t, max_inflight_per_group, 256,
          "requests in flight per engine group at most; when every group is full, Generate "
          "answers RESOURCE_EXHAUSTED");
ABSL_FLAG(int32_t, metrics_port, 0, "port of the Prometheus /metrics endpoint; 0: none");
ABSL_FLAG(absl::Duration, load_poll_interval, absl::Milliseconds(250),
          "how often every ready group leader is asked for its load (GetLoad), which routes "
          "disaggregated requests");
ABSL_FLAG(absl::Duration, load_poll_timeout, absl::Seconds(1),
          "deadline of each GetLoad call; a leader that does not answer keeps its last load");

namespace shardserve {
namespace {

int OrDefault(int value, int fallback) { return value > 0 ? value : fallback; }

ClusterLayout LayoutFromFlags() {
  ClusterLayout layout;
  const int groups = absl::GetFlag(FLAGS_groups);
  const int prefill = absl::GetFlag(FLAGS_prefill_groups);
  const int decode = absl::GetFlag(FLAGS_decode_groups);
  const bool none_given = groups < 0 && prefill < 0 && decode < 0;
  layout.both.num_groups = none_given ? 1 : std::max(groups, 0);
  layout.prefill.num_groups = std::max(prefill, 0);
  layout.decode.num_groups = std::max(decode, 0);
  const int tp = absl::GetFlag(FLAGS_tp);
  const int pp = absl::GetFlag(FLAGS_pp);
  const int ep = absl::GetFlag(FLAGS_ep);
  layout.both.layout = ParallelLayout{tp, pp, ep};
  layout.prefill.layout = ParallelLayout{OrDefault(absl::GetFlag(FLAGS_prefill_tp), tp),
                                         OrDefault(absl::GetFlag(FLAGS_prefill_pp), pp),
                                         OrDefault(absl::GetFlag(FLAGS_prefill_ep), ep)};
  layout.decode.layout = ParallelLayout{OrDefault(absl::GetFlag(FLAGS_decode_tp), tp),
                                        OrDefault(absl::GetFlag(FLAGS_decode_pp), pp),
                                        OrDefault(absl::GetFlag(FLAGS_decode_ep), ep)};
  const bool all_to_all = absl::GetFlag(FLAGS_moe_combine) == "alltoall";
  layout.both.layout.moe_all_to_all = all_to_all;
  layout.prefill.layout.moe_all_to_all = all_to_all;
  layout.decode.layout.moe_all_to_all = all_to_all;
  return layout;
}

// Blocks SIGINT and SIGTERM in every thread started afterwards, so only sigwait sees them.
sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

int Serve() {
  const sigset_t stop_signals = BlockStopSignals();
  absl::StatusOr<std::string> path = ResolveModel(absl::GetFlag(FLAGS_model));
  if (!path.ok()) {
    std::fprintf(stderr, "shardserve-coordinator: %s\n", path.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<WeightSource>> weights = OpenWeightSource(*path);
  if (!weights.ok()) {
    std::fprintf(stderr, "shardserve-coordinator: %s\n", weights.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::string> fingerprint = ModelFingerprint(*path);
  if (!fingerprint.ok()) {
    std::fprintf(stderr, "shardserve-coordinator: %s\n", fingerprint.status().ToString().c_str());
    return 1;
  }
  const std::string moe_combine = absl::GetFlag(FLAGS_moe_combine);
  if (moe_combine != "allreduce" && moe_combine != "alltoall") {
    std::fprintf(stderr,
                 "shardserve-coordinator: --moe_combine must be allreduce or alltoall, got %s\n",
                 moe_combine.c_str());
    return 2;
  }
  absl::StatusOr<PlacementPlanner> planner =
      PlacementPlanner::Create((*weights)->config(), LayoutFromFlags());
  if (!planner.ok()) {
    std::fprintf(stderr, "shardserve-coordinator: impossible layout for %s: %s\n", path->c_str(),
                 std::string(planner.status().message()).c_str());
    return 2;
  }
  const int workers_needed = planner->TotalWorkersNeeded();
  weights->reset();  // only the config was needed

  absl::StatusOr<std::unique_ptr<ModelFrontend>> frontend =
      ModelFrontend::Load(*path, *fingerprint);
  if (!frontend.ok()) {
    std::fprintf(stderr, "shardserve-coordinator: %s\n", frontend.status().ToString().c_str());
    return 1;
  }
  std::string served_name = absl::GetFlag(FLAGS_served_model_name);
  if (served_name.empty()) {
    served_name = ModelFrontend::DefaultServedName(absl::GetFlag(FLAGS_model), *path);
  }
  const int max_inflight = absl::GetFlag(FLAGS_max_inflight_per_group);
  if (max_inflight < 1) {
    std::fprintf(stderr, "shardserve-coordinator: --max_inflight_per_group must be >= 1\n");
    return 2;
  }
  LoadMonitor::Options load_options;
  load_options.poll_interval = absl::GetFlag(FLAGS_load_poll_interval);
  load_options.call_timeout = absl::GetFlag(FLAGS_load_poll_timeout);
  if (load_options.poll_interval <= absl::ZeroDuration() ||
      load_options.call_timeout <= absl::ZeroDuration()) {
    std::fprintf(stderr,
                 "shardserve-coordinator: --load_poll_interval and --load_poll_timeout must be "
                 "positive\n");
    return 2;
  }

  WorkerRegistry::Options options;
  options.model_path = *path;
  options.model_fingerprint = *fingerprint;
  options.heartbeat_timeout = absl::GetFlag(FLAGS_heartbeat_timeout);
  options.wait_for_workers = absl::GetFlag(FLAGS_wait_for_workers);
  if (options.heartbeat_timeout <= absl::ZeroDuration()) {
    std::fprintf(stderr, "shardserve-coordinator: --heartbeat_timeout must be positive\n");
    return 2;
  }
  WorkerRegistry registry(*std::move(planner), options);
  RendezvousStore store;
  ClusterService cluster_service(&registry);
  StoreService store_service(&store);

  RequestRouter::Options router_options;
  router_options.max_inflight_per_group = max_inflight;
  RequestRouter router([&registry] { return registry.GetPlan(); }, router_options);
  auto metrics_registry = std::make_shared<prometheus::Registry>();
  RequestMetrics metrics(metrics_registry.get(), (*frontend)->info().max_model_len);
  LoadMonitor load_monitor(&router, load_options);
  DisaggRouter::Options disagg_options;
  disagg_options.max_inflight_per_group = max_inflight;  // the same bound as the router's
  DisaggRouter disagg_router(*metrics_registry, disagg_options);
  RequestDispatcher dispatcher(&router, &disagg_router, &load_monitor,
                               RequestDispatcher::Options());
  InferenceService inference_service(frontend->get(), served_name, &dispatcher, &metrics,
                                     InferenceService::Options());

  const std::string host = absl::GetFlag(FLAGS_host);
  std::unique_ptr<MetricsServer> metrics_server;
  if (const int metrics_port = absl::GetFlag(FLAGS_metrics_port); metrics_port > 0) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> started =
        MetricsServer::Start(host, metrics_port, metrics_registry);
    if (!started.ok()) {
      std::fprintf(stderr, "shardserve-coordinator: %s\n",
                   std::string(started.status().message()).c_str());
      return 1;
    }
    metrics_server = std::move(*started);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat(host, ":", absl::GetFlag(FLAGS_port)),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&inference_service);
  builder.RegisterService(&cluster_service);
  builder.RegisterService(&store_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "shardserve-coordinator: cannot listen on %s:%d\n", host.c_str(),
                 absl::GetFlag(FLAGS_port));
    return 1;
  }
  auto health = std::make_unique<HealthReporter>(
      server->GetHealthCheckService(),
      std::vector<std::string>{"", v1::InferenceService::service_full_name()},
      [&router] { return router.HasReadyGroup(); }, absl::Milliseconds(200));
  LOG(INFO) << "serving " << *path << " as '" << served_name << "' (fingerprint "
            << fingerprint->substr(0, 12) << "), waiting for " << workers_needed << " workers";
  std::printf("listening on %s:%d\n", host == "0.0.0.0" ? "127.0.0.1" : host.c_str(), port);
  std::fflush(stdout);

  absl::Notification stop;
  std::thread sweeper([&] {
    const absl::Duration period = std::max(absl::Milliseconds(50), options.heartbeat_timeout / 10);
    do {
      registry.Sweep();
    } while (!stop.WaitForNotificationWithTimeout(period));
  });
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  LOG(INFO) << "signal " << signal_number << ": shutting down";
  stop.Notify();
  sweeper.join();
  health.reset();
  server->GetHealthCheckService()->Shutdown();
  registry.Close();
  store.Close();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

}  // namespace
}  // namespace shardserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "shardserve-coordinator --port=P --model=PATH_OR_NAME [--groups N | --prefill_groups N "
      "--decode_groups N] [--tp --pp --ep, --prefill_tp ...] [--heartbeat_timeout=5s] "
      "[--served_model_name=NAME] [--max_inflight_per_group=256] [--metrics_port=P] "
      "[--load_poll_interval=250ms] [--load_poll_timeout=1s]");
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  return shardserve::Serve();
}
