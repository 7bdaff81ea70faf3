#include "tools/local_cluster.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "proto/shardserve/v1/cluster.grpc.pb.h"

namespace shardserve {
namespace {

constexpr absl::Duration kPollPeriod = absl::Milliseconds(20);
constexpr absl::Duration kPlanPollPeriod = absl::Milliseconds(100);
constexpr absl::Duration kGetPlanTimeout = absl::Seconds(2);
constexpr int kLogTailLines = 20;
constexpr char kListening[] = "listening on ";

absl::Duration Remaining(absl::Time deadline) {
  return std::max(deadline - absl::Now(), absl::ZeroDuration());
}

}  // namespace

LocalCluster::LocalCluster(LocalClusterOptions options)
    : options_(std::move(options)), children_(options_.log_dir) {}

LocalCluster::~LocalCluster() { Stop(); }

std::vector<LocalCluster::Child*> LocalCluster::AllChildren() {
  std::vector<Child*> all = {&coordinator_};
  for (Child& w : workers_) all.push_back(&w);
  return all;
}

std::vector<pid_t> LocalCluster::pids() const {
  std::vector<pid_t> pids;
  if (coordinator_.pid > 0) pids.push_back(coordinator_.pid);
  for (const Child& w : workers_) pids.push_back(w.pid);
  return pids;
}

std::string LocalCluster::LogTail(const std::string& path, int lines) {
  // Only the end of a long log is read.
  constexpr std::streamoff kMaxBytes = 64 * 1024;
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const std::streamoff size = in.tellg();
  const std::streamoff from = std::max<std::streamoff>(0, size - kMaxBytes);
  in.seekg(from);
  std::string text(static_cast<size_t>(size - from), '\0');
  in.read(text.data(), size - from);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  size_t at = text.size();
  for (int i = 0; i < lines && at != std::string::npos && at > 0; ++i) {
    at = text.rfind('\n', at - 1);
  }
  return at == std::string::npos || at == 0 ? text : text.substr(at + 1);
}

LocalCluster::Exit LocalCluster::ExitOf(const Child& child, int code) const {
  Exit exit;
  exit.pid = child.pid;
  exit.name = child.name;
  exit.coordinator = child.coordinator;
  exit.code = code;
  exit.log_path = children_.LogPath(child.pid);
  return exit;
}

absl::Status LocalCluster::CheckNoneExited() {
  for (Child* child : AllChildren()) {
    if (child->pid <= 0) continue;
    const absl::optional<int> code = children_.WaitExit(child->pid, absl::ZeroDuration());
    if (!code.has_value()) continue;
    child->reported = true;
    failed_exit_code_ = *code;
    const std::string log = children_.LogPath(child->pid);
    return absl::FailedPreconditionError(
        absl::StrCat(child->name, " (pid ", child->pid, ") exited with code ", *code,
                     " before the cluster was ready; the end of its log ", log, ":\n",
                     LogTail(log, kLogTailLines)));
  }
  return absl::OkStatus();
}

absl::Status LocalCluster::WaitForListening(absl::Time deadline,
                                            const std::function<bool()>& interrupted) {
  while (true) {
    const std::string out = children_.Output(coordinator_.pid);
    const size_t at = out.find(kListening);
    const size_t end = at == std::string::npos ? at : out.find('\n', at);
    if (end != std::string::npos) {
      const size_t from = at + sizeof(kListening) - 1;
      const std::string host_port = out.substr(from, end - from);
      const size_t colon = host_port.rfind(':');
      int port = 0;
      if (colon == std::string::npos || !absl::SimpleAtoi(host_port.substr(colon + 1), &port)) {
        return absl::InternalError(absl::StrCat("cannot read the port from the coordinator's '",
                                                kListening, host_port, "'"));
      }
      address_ = absl::StrCat("127.0.0.1:", port);
      return absl::OkStatus();
    }
    absl::Status exited = CheckNoneExited();
    if (!exited.ok()) return exited;
    if (interrupted()) return absl::CancelledError("interrupted");
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the coordinator did not start listening in time; the end of its log ",
                       children_.LogPath(coordinator_.pid), ":\n",
                       LogTail(children_.LogPath(coordinator_.pid), kLogTailLines)));
    }
    absl::SleepFor(kPollPeriod);
  }
}

absl::Status LocalCluster::WaitForReady(absl::Time deadline,
                                        const std::function<bool()>& interrupted) {
  auto stub = v1::ClusterService::NewStub(
      grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  std::string not_ready = "the coordinator did not answer GetPlan";
  while (true) {
    absl::Status exited = CheckNoneExited();
    if (!exited.ok()) return exited;
    if (interrupted()) return absl::CancelledError("interrupted");
    grpc::ClientContext context;
    context.set_deadline(
        absl::ToChronoTime(absl::Now() + std::min(kGetPlanTimeout, Remaining(deadline))));
    v1::GetPlanReply reply;
    const grpc::Status status = stub->GetPlan(&context, v1::GetPlanRequest(), &reply);
    if (status.ok()) {
      bool ready = reply.has_plan() && reply.plan().groups_size() > 0;
      std::vector<std::string> waiting;
      for (const v1::EngineGroup& group : reply.plan().groups()) {
        if (!group.error().empty()) {
          return absl::FailedPreconditionError(
              absl::StrCat("group ", group.id(), " failed: ", group.error()));
        }
        if (!group.ready()) {
          ready = false;
          waiting.push_back(absl::StrCat(group.id()));
        }
      }
      if (ready) return absl::OkStatus();
      std::vector<std::string> reasons(reply.problems().begin(), reply.problems().end());
      if (!reply.has_plan()) reasons.push_back("no placement plan yet");
      if (!waiting.empty()) {
        reasons.push_back(absl::StrCat("groups not ready: ", absl::StrJoin(waiting, ", ")));
      }
      not_ready = absl::StrJoin(reasons, "; ");
    } else {
      not_ready = absl::StrCat("GetPlan failed: ", status.error_message());
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the cluster was not ready in time: ", not_ready));
    }
    absl::SleepFor(std::min(kPlanPollPeriod, Remaining(deadline)));
  }
}

absl::Status LocalCluster::Start(absl::Time deadline, const std::function<bool()>& interrupted) {
  for (const std::string& binary : {options_.coordinator_binary, options_.worker_binary}) {
    if (access(binary.c_str(), X_OK) != 0) {
      return absl::NotFoundError(absl::StrCat("no executable ", binary));
    }
  }
  std::vector<std::string> argv = {options_.coordinator_binary,
                                   absl::StrCat("--port=", options_.port), "--host=127.0.0.1",
                                   absl::StrCat("--model=", options_.model)};
  argv.insert(argv.end(), options_.coordinator_flags.begin(), options_.coordinator_flags.end());
  if (options_.metrics_port > 0) {
    argv.push_back(absl::StrCat("--metrics_port=", options_.metrics_port));
  }
  coordinator_.name = "coordinator";
  coordinator_.coordinator = true;
  coordinator_.pid = children_.Spawn(coordinator_.name, argv);
  if (coordinator_.pid < 0) return absl::InternalError("cannot fork the coordinator");
  absl::Status status = WaitForListening(deadline, interrupted);
  if (!status.ok()) return status;

  for (size_t i = 0; i < options_.worker_pools.size(); ++i) {
    Child worker;
    worker.name = absl::StrCat("worker-", options_.worker_pools[i], "-", i);
    argv = {options_.worker_binary, absl::StrCat("--coordinator=", address_),
            absl::StrCat("--pool=", options_.worker_pools[i]),
            absl::StrCat("--threads=", options_.threads_per_worker),
            // Loopback: peers on one host reach each other there and share memory.
            "--host=127.0.0.1"};
    argv.insert(argv.end(), options_.worker_flags.begin(), options_.worker_flags.end());
    if (options_.metrics_port > 0) {
      argv.push_back(absl::StrCat("--metrics_port=", options_.metrics_port + 1 + i));
    }
    worker.pid = children_.Spawn(worker.name, argv);
    if (worker.pid < 0) return absl::InternalError(absl::StrCat("cannot fork ", worker.name));
    workers_.push_back(worker);
  }
  return WaitForReady(deadline, interrupted);
}

std::vector<LocalCluster::Exit> LocalCluster::PollExits() {
  std::vector<Exit> exits;
  for (Child* child : AllChildren()) {
    if (child->pid <= 0 || child->reported) continue;
    const absl::optional<int> code = children_.WaitExit(child->pid, absl::ZeroDuration());
    if (!code.has_value()) continue;
    child->reported = true;
    exits.push_back(ExitOf(*child, *code));
  }
  return exits;
}

std::vector<LocalCluster::Exit> LocalCluster::Stop(absl::Duration grace) {
  if (!stopped_) {
    stopped_ = true;
    for (const Child& w : workers_) children_.Signal(w.pid, SIGTERM);
    const absl::Time deadline = absl::Now() + grace;
    for (const Child& w : workers_) children_.WaitExit(w.pid, Remaining(deadline));
    children_.KillAll(grace);
  }
  std::vector<Exit> exits;
  for (Child* child : AllChildren()) {
    if (child->pid <= 0 || child->reported) continue;
    child->reported = true;
    const int code = children_.WaitExit(child->pid, absl::ZeroDuration()).value_or(-1);
    if (code != 0) exits.push_back(ExitOf(*child, code));
  }
  return exits;
}

}  // namespace shardserve
