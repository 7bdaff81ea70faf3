#include "tools/status_command.h"

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/placement_planner.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "proto/shardserve/v1/cluster.grpc.pb.h"
#include "tools/cli_flags.h"

namespace shardserve {
namespace {

constexpr int kAllReady = 0;
constexpr int kNotReady = 1;
constexpr int kUnreachable = 2;

bool AllReady(const v1::GetPlanReply& reply) {
  if (!reply.has_plan() || reply.plan().groups_size() == 0) return false;
  for (const v1::EngineGroup& group : reply.plan().groups()) {
    if (!group.ready()) return false;
  }
  return true;
}

std::string PoolName(v1::PoolRole role) {
  switch (role) {
    case v1::POOL_ROLE_PREFILL:
      return "prefill";
    case v1::POOL_ROLE_DECODE:
      return "decode";
    case v1::POOL_ROLE_BOTH:
      return "both";
    default:
      return "?";
  }
}

std::string RenderText(const std::string& server, const v1::GetPlanReply& reply, bool ready) {
  std::string out = absl::StrCat("coordinator ", server, " serves ", reply.model_path(),
                                 " (fingerprint ", reply.model_fingerprint().substr(0, 12), ")\n");
  if (reply.has_plan()) {
    absl::StrAppend(&out, PlacementPlanner::Render(reply.plan()));
    for (const v1::EngineGroup& group : reply.plan().groups()) {
      if (!group.error().empty()) {
        absl::StrAppend(&out, "group ", group.id(), " FAILED: ", group.error(), "\n");
      }
    }
  } else {
    absl::StrAppend(&out, "no placement plan yet\n");
  }
  absl::StrAppend(&out, "workers (", reply.workers_size(), "):\n");
  for (int i = 0; i < reply.workers_size(); ++i) {
    const v1::WorkerInfo& w = reply.workers(i);
    const v1::WorkerStatus& s =
        i < reply.worker_status_size() ? reply.worker_status(i) : v1::WorkerStatus();
    absl::StrAppend(&out, "  ", w.worker_id(), " ", w.host(), " ", PoolName(w.role()), " ",
                    w.device(), ": ", s.alive() ? "alive" : "DEAD", ", ",
                    s.ready() ? "ready" : "not ready", ", ", w.resident_bytes(),
                    " bytes, last heartbeat ", s.ms_since_heartbeat(), " ms ago");
    if (!s.error().empty()) absl::StrAppend(&out, ", error: ", s.error());
    absl::StrAppend(&out, "\n");
  }
  if (reply.problems_size() > 0) {
    absl::StrAppend(&out, "problems:\n");
    for (const std::string& p : reply.problems()) absl::StrAppend(&out, "  - ", p, "\n");
  }
  absl::StrAppend(&out, ready ? "status: every group is ready\n" : "status: NOT READY\n");
  return out;
}

}  // namespace

int StatusCommand() {
  const std::string server = absl::GetFlag(FLAGS_server);
  auto stub =
      v1::ClusterService::NewStub(grpc::CreateChannel(server, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + TimeoutOr(absl::Seconds(5))));
  v1::GetPlanReply reply;
  const grpc::Status status = stub->GetPlan(&context, v1::GetPlanRequest(), &reply);
  if (!status.ok()) {
    std::fprintf(stderr, "shardserve status: cannot reach the coordinator at %s: %s\n",
                 server.c_str(), status.error_message().c_str());
    return kUnreachable;
  }
  const bool ready = AllReady(reply);
  if (absl::GetFlag(FLAGS_json)) {
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.always_print_primitive_fields = true;
    options.preserve_proto_field_names = true;
    google::protobuf::util::MessageToJsonString(reply, &json, options);
    nlohmann::json out = nlohmann::json::parse(json);
    out["all_ready"] = ready;
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::fputs(RenderText(server, reply, ready).c_str(), stdout);
  }
  return ready ? kAllReady : kNotReady;
}

}  // namespace shardserve
