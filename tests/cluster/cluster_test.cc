// Real clusters on one machine: a coordinator process and worker processes (the binaries that
// operators run), on the tiny Qwen2-MoE checkpoint so no download is needed. Each test starts
// its processes on free ports, waits for readiness by polling GetPlan with a deadline, and ends
// every child it started (ChildProcesses), even when an assertion fails.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/child_processes.h"
#include "common/testing/test_env.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "model/weight_source.h"
#include "proto/shardserve/v1/cluster.grpc.pb.h"

namespace shardserve {
namespace {

constexpr absl::Duration kStartTimeout = absl::Seconds(10);
constexpr absl::Duration kReadyTimeout = absl::Seconds(30);

const std::string& Model() {
  static const std::string* path =
      new std::string(TestRunfile("tests/fixtures/tiny/qwen2moe/model.gguf"));
  return *path;
}

// A port nothing listens on (bound, then released).
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Bytes of every tensor the model needs: what one unsharded worker holds.
int64_t FullModelBytes() {
  absl::StatusOr<std::unique_ptr<WeightSource>> weights = OpenWeightSource(Model());
  EXPECT_TRUE(weights.ok()) << weights.status();
  if (!weights.ok()) return 0;
  int64_t total = 0;
  for (const ExpectedTensor& t : RequiredTensors((*weights)->config())) {
    total += (*weights)->Get(t.name)->nbytes();
  }
  return total;
}

bool AllGroupsReady(const v1::GetPlanReply& reply) {
  if (!reply.has_plan() || reply.plan().groups_size() == 0) return false;
  for (const v1::EngineGroup& g : reply.plan().groups()) {
    if (!g.ready()) return false;
  }
  return true;
}

class ClusterTest : public ::testing::Test {
 protected:
  void TearDown() override {
    stub_.reset();
    children_.KillAll();
  }

  // Starts the coordinator (port 0) and waits for its "listening on" line.
  void StartCoordinator(std::vector<std::string> flags) {
    std::vector<std::string> argv = {TestRunfile("coordinator/shardserve-coordinator"), "--port=0",
                                     "--host=127.0.0.1", "--model=" + Model()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    coordinator_ = children_.Spawn("coordinator", argv);
    ASSERT_GT(coordinator_, 0);
    const absl::Time deadline = absl::Now() + kStartTimeout;
    while (absl::Now() < deadline) {
      const std::string out = children_.Output(coordinator_);
      const size_t at = out.find("listening on 127.0.0.1:");
      const size_t end = out.find('\n', at);
      int port = 0;
      if (at != std::string::npos && end != std::string::npos &&
          absl::SimpleAtoi(out.substr(at + 23, end - at - 23), &port)) {
        address_ = absl::StrCat("127.0.0.1:", port);
        stub_ = v1::ClusterService::NewStub(
            grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
        return;
      }
      ASSERT_FALSE(children_.WaitExit(coordinator_, absl::ZeroDuration()).has_value())
          << "coordinator exited:\n"
          << out;
      absl::SleepFor(absl::Milliseconds(20));
    }
    FAIL() << "coordinator did not start:\n" << children_.Output(coordinator_);
  }

  pid_t StartWorker(const std::string& pool = "both", const std::string& host = "127.0.0.1",
                    std::vector<std::string> flags = {}) {
    std::vector<std::string> argv = {TestRunfile("worker/shardserve-worker"),
                                     "--coordinator=" + address_,
                                     "--pool=" + pool,
                                     "--device=cpu",
                                     "--host=" + host,
                                     "--group_timeout=15s"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const pid_t pid = children_.Spawn("worker", argv);
    EXPECT_GT(pid, 0);
    workers_.push_back(pid);
    return pid;
  }

  absl::optional<v1::GetPlanReply> GetPlan() {
    grpc::ClientContext context;
    context.set_deadline(TestDeadline(absl::Seconds(2)));
    v1::GetPlanReply reply;
    if (!stub_->GetPlan(&context, v1::GetPlanRequest(), &reply).ok()) return absl::nullopt;
    return reply;
  }

  // Polls GetPlan until `done` holds or `timeout` passes; returns the last reply.
  v1::GetPlanReply WaitFor(const std::function<bool(const v1::GetPlanReply&)>& done,
                           absl::Duration timeout, bool* met) {
    const absl::Time deadline = absl::Now() + timeout;
    v1::GetPlanReply last;
    *met = false;
    while (absl::Now() < deadline) {
      absl::optional<v1::GetPlanReply> reply = GetPlan();
      if (reply.has_value()) {
        last = *reply;
        if (done(last)) {
          *met = true;
          break;
        }
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return last;
  }

  // Runs `shardserve status`; returns its exit code (-1 if it did not end in time).
  int Status(const std::string& server, std::string* output, bool json = false) {
    std::vector<std::string> argv = {TestRunfile("tools/shardserve"), "status",
                                     "--server=" + server, "--timeout=2s"};
    if (json) argv.push_back("--json");
    const pid_t pid = children_.Spawn("status", argv);
    absl::optional<int> code = children_.WaitExit(pid, absl::Seconds(10));
    *output = children_.Output(pid);
    return code.value_or(-1);
  }

  std::string Logs() {
    std::string all = absl::StrCat("--- coordinator\n", children_.Output(coordinator_));
    for (pid_t w : workers_) absl::StrAppend(&all, "--- worker ", w, "\n", children_.Output(w));
    return all;
  }

  ChildProcesses children_{TestTempDir()};
  pid_t coordinator_ = -1;
  std::vector<pid_t> workers_;
  std::string address_;
  std::unique_ptr<v1::ClusterService::Stub> stub_;
};

struct LayoutCase {
  std::string name;
  std::vector<std::string> coordinator_flags;
  std::vector<std::string> pools;  // one worker per entry
  std::vector<std::string> hosts;  // per worker; 127.0.0.1 when absent
  // The shards partition the weights with nothing replicated (pipeline stages only), so their
  // resident bytes add up to the whole model.
  bool disjoint_shards = false;
};

void PrintTo(const LayoutCase& c, std::ostream* os) { *os << c.name; }

class ClusterLayoutTest : public ClusterTest, public ::testing::WithParamInterface<LayoutCase> {};

TEST_P(ClusterLayoutTest, EveryGroupBecomesReady) {
  const LayoutCase& c = GetParam();
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(c.coordinator_flags));
  for (size_t i = 0; i < c.pools.size(); ++i) {
    StartWorker(c.pools[i], i < c.hosts.size() ? c.hosts[i] : "127.0.0.1");
  }
  bool ready = false;
  v1::GetPlanReply reply = WaitFor(AllGroupsReady, kReadyTimeout, &ready);
  ASSERT_TRUE(ready) << reply.DebugString() << Logs();
  int placed = 0;
  for (const v1::EngineGroup& g : reply.plan().groups()) placed += g.worker_ids_size();
  EXPECT_EQ(placed, static_cast<int>(c.pools.size()));
  const int64_t full_bytes = FullModelBytes();
  int64_t sum_bytes = 0;
  for (const v1::WorkerInfo& w : reply.workers()) {
    EXPECT_GT(w.resident_bytes(), 0) << w.worker_id();
    sum_bytes += w.resident_bytes();
  }
  for (const v1::EngineGroup& g : reply.plan().groups()) {
    for (const std::string& id : g.worker_ids()) {
      for (const v1::WorkerInfo& w : reply.workers()) {
        if (w.worker_id() != id) continue;
        if (g.worker_ids_size() == 1) {
          EXPECT_EQ(w.resident_bytes(), full_bytes) << id;
        } else {
          EXPECT_LT(w.resident_bytes(), full_bytes) << id;
        }
      }
    }
  }
  if (c.disjoint_shards) {
    EXPECT_EQ(sum_bytes, full_bytes);
  }
  EXPECT_TRUE(reply.problems().empty()) << reply.DebugString();

  std::string output;
  EXPECT_EQ(Status(address_, &output), 0) << output;
  EXPECT_TRUE(absl::StrContains(output, "every group is ready")) << output;
  EXPECT_EQ(Status(address_, &output, /*json=*/true), 0) << output;
  EXPECT_TRUE(absl::StrContains(output, "\"all_ready\": true")) << output;

  // Workers leave cleanly on SIGTERM.
  for (pid_t w : workers_) children_.Signal(w, SIGTERM);
  for (pid_t w : workers_) EXPECT_EQ(children_.WaitExit(w, absl::Seconds(10)), 0) << Logs();
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, ClusterLayoutTest,
    ::testing::Values(
        LayoutCase{"one_worker", {}, {"both"}, {}},
        LayoutCase{"tp2", {"--tp=2"}, {"both", "both"}, {}},
        LayoutCase{"tp2_ep2", {"--tp=2", "--ep=2"}, {"both", "both"}, {}},
        LayoutCase{"pp2", {"--pp=2"}, {"both", "both"}, {}, /*disjoint_shards=*/true},
        LayoutCase{"tp2_pp2", {"--tp=2", "--pp=2"}, {"both", "both", "both", "both"}, {}},
        // Ranks on different (loopback) addresses: the device group falls back to Gloo.
        LayoutCase{"tp2_two_hosts", {"--tp=2"}, {"both", "both"}, {"127.0.0.1", "127.0.0.2"}},
        LayoutCase{"prefill_and_decode",
                   {"--prefill_groups=1", "--decode_groups=1", "--decode_tp=2"},
                   {"prefill", "decode", "decode"},
                   {}}),
    [](const ::testing::TestParamInfo<LayoutCase>& info) { return info.param.name; });

TEST_F(ClusterTest, MissingWorkerIsReported) {
  ASSERT_NO_FATAL_FAILURE(StartCoordinator({"--tp=2", "--wait_for_workers=1s"}));
  StartWorker();
  bool registered = false;
  v1::GetPlanReply reply = WaitFor([](const v1::GetPlanReply& r) { return r.workers_size() == 1; },
                                   kStartTimeout, &registered);
  ASSERT_TRUE(registered) << Logs();
  std::string output;
  EXPECT_EQ(Status(address_, &output), 1) << output;
  EXPECT_TRUE(absl::StrContains(output, "need 2 workers")) << output;
  EXPECT_TRUE(absl::StrContains(output, "have 1")) << output;
  EXPECT_FALSE(reply.has_plan());
}

TEST_F(ClusterTest, KilledWorkerFailsItsGroupWithinHeartbeatTimeout) {
  ASSERT_NO_FATAL_FAILURE(StartCoordinator({"--tp=2", "--heartbeat_timeout=1s"}));
  StartWorker();
  const pid_t victim = StartWorker();
  bool ready = false;
  v1::GetPlanReply reply = WaitFor(AllGroupsReady, kReadyTimeout, &ready);
  ASSERT_TRUE(ready) << reply.DebugString() << Logs();

  children_.Signal(victim, SIGKILL);
  const absl::Time killed = absl::Now();
  bool failed = false;
  reply = WaitFor(
      [](const v1::GetPlanReply& r) {
        return !r.plan().groups(0).ready() && !r.plan().groups(0).error().empty();
      },
      absl::Seconds(5), &failed);
  ASSERT_TRUE(failed) << reply.DebugString() << Logs();
  // Heartbeat timeout plus the sweep period and scheduling noise on a loaded machine.
  EXPECT_LT(absl::Now() - killed, absl::Seconds(3));
  EXPECT_TRUE(absl::StrContains(reply.plan().groups(0).error(), "missed heartbeats"))
      << reply.plan().groups(0).error();
  std::string output;
  EXPECT_EQ(Status(address_, &output), 1) << output;
  EXPECT_TRUE(absl::StrContains(output, "FAILED")) << output;
}

TEST_F(ClusterTest, WorkerWithDifferentModelIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartCoordinator({}));
  const pid_t worker = StartWorker(
      "both", "127.0.0.1", {"--model=" + TestRunfile("tests/fixtures/tiny/olmoe/model.gguf")});
  absl::optional<int> code = children_.WaitExit(worker, absl::Seconds(10));
  ASSERT_TRUE(code.has_value()) << Logs();
  EXPECT_NE(*code, 0);
  EXPECT_TRUE(absl::StrContains(children_.Output(worker), "fingerprint mismatch")) << Logs();
  absl::optional<v1::GetPlanReply> reply = GetPlan();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->workers_size(), 0);
  bool named = false;
  for (const std::string& p : reply->problems()) named |= absl::StrContains(p, "fingerprint");
  EXPECT_TRUE(named) << reply->DebugString();
  std::string output;
  EXPECT_EQ(Status(address_, &output), 1) << output;
  EXPECT_TRUE(absl::StrContains(output, "fingerprint mismatch")) << output;
}

TEST_F(ClusterTest, ImpossibleLayoutStopsTheCoordinator) {
  // The tiny Qwen2-MoE has 2 KV heads: TP=4 cannot give every rank one.
  const pid_t pid =
      children_.Spawn("coordinator", {TestRunfile("coordinator/shardserve-coordinator"), "--port=0",
                                      "--model=" + Model(), "--tp=4"});
  absl::optional<int> code = children_.WaitExit(pid, kStartTimeout);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 2);
  EXPECT_TRUE(absl::StrContains(children_.Output(pid), "num_kv_heads")) << children_.Output(pid);
}

TEST_F(ClusterTest, UnreachableCoordinatorExitsTwo) {
  std::string output;
  EXPECT_EQ(Status(absl::StrCat("127.0.0.1:", ClosedPort()), &output), 2) << output;
}

}  // namespace
}  // namespace shardserve
