// `shardserve serve` supervising a real local cluster on SmolLM2 (SHARDSERVE_TEST_GGUF): it
// starts the coordinator and the workers the layout needs as its children, prints its ready
// line once every group is ready, and on SIGTERM stops them all and exits 0 leaving no process
// behind; killed outright, its children die with it; a layout the model refuses ends it at once
// with the coordinator's reason and exit code. Also: generate and bench report an unreachable
// server instead of waiting; every command taking --threads refuses a bad count with exit code 2,
// and every command taking --kv_cache_dtype a dtype other than f16 and f32.
//
// Ports are picked by the coordinator (--port=0, read from the ready line); every wait has a
// deadline and ChildProcesses ends whatever the test started, also when an assertion fails.
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/child_processes.h"
#include "common/testing/test_env.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/shardserve/v1/cluster.grpc.pb.h"

namespace shardserve {
namespace {

constexpr absl::Duration kReadyTimeout = absl::Seconds(120);
constexpr absl::Duration kExitTimeout = absl::Seconds(30);
constexpr char kReady[] = "ready: serving ";
constexpr char kOnLoopback[] = " on 127.0.0.1:";

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

// A process as /proc/<pid>/stat shows it.
struct ProcessInfo {
  pid_t pid = 0;
  std::string command;  // comm: the executable's name, cut at 15 characters
  char state = '?';
  pid_t parent = 0;
  unsigned long long start_time = 0;  // clock ticks after boot; tells a reused pid apart
};

absl::optional<ProcessInfo> ReadProcess(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::stringstream text;
  text << in.rdbuf();
  const std::string stat = text.str();
  // "pid (comm) state ppid ..." where comm may hold spaces and parentheses.
  const size_t open = stat.find('(');
  const size_t close = stat.rfind(')');
  if (!in.good() && stat.empty()) return absl::nullopt;
  if (open == std::string::npos || close == std::string::npos) return absl::nullopt;
  const std::vector<std::string> fields =
      absl::StrSplit(stat.substr(close + 2), ' ', absl::SkipEmpty());
  // fields[0] is field 3 of the stat line (state); starttime is field 22.
  if (fields.size() < 20) return absl::nullopt;
  ProcessInfo info;
  info.pid = pid;
  info.command = stat.substr(open + 1, close - open - 1);
  info.state = fields[0][0];
  if (!absl::SimpleAtoi(fields[1], &info.parent) ||
      !absl::SimpleAtoi(fields[19], &info.start_time)) {
    return absl::nullopt;
  }
  return info;
}

std::vector<ProcessInfo> ChildrenOf(pid_t parent) {
  std::vector<ProcessInfo> children;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return children;
  while (dirent* entry = readdir(proc)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    absl::optional<ProcessInfo> info = ReadProcess(pid);
    if (info.has_value() && info->parent == parent) children.push_back(*info);
  }
  closedir(proc);
  return children;
}

// True while the process still runs (not ended, not a zombie, its pid not reused).
bool Running(const ProcessInfo& process) {
  absl::optional<ProcessInfo> now = ReadProcess(process.pid);
  return now.has_value() && now->start_time == process.start_time && now->state != 'Z' &&
         now->state != 'X';
}

// Waits up to `timeout` for every process to end; the ones still running.
std::vector<ProcessInfo> StillRunningAfter(const std::vector<ProcessInfo>& processes,
                                           absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<ProcessInfo> running;
  do {
    running.clear();
    for (const ProcessInfo& p : processes) {
      if (Running(p)) running.push_back(p);
    }
    if (running.empty()) break;
    absl::SleepFor(absl::Milliseconds(50));
  } while (absl::Now() < deadline);
  return running;
}

int CountCommand(const std::vector<ProcessInfo>& processes, const std::string& prefix) {
  int n = 0;
  for (const ProcessInfo& p : processes) n += absl::StartsWith(p.command, prefix) ? 1 : 0;
  return n;
}

// The commands that validate --threads and --kv_cache_dtype before loading anything: run,
// bench-engine, serve and the worker, each with the other flags it needs.
std::vector<std::vector<std::string>> CommandsValidatingEngineFlags() {
  return {
      {TestRunfile("tools/shardserve"), "run", "--model=" + TestGgufPath(), "--prompt=hi"},
      {TestRunfile("tools/shardserve"), "bench-engine", "--model=" + TestGgufPath()},
      {TestRunfile("tools/shardserve"), "serve", "--model=" + TestGgufPath(), "--port=0",
       "--log_dir=" + TestTempDir()},
      {TestRunfile("worker/shardserve-worker"),
       absl::StrCat("--coordinator=127.0.0.1:", ClosedPort())},
  };
}

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(TestGgufPath().empty())
        << "SHARDSERVE_TEST_GGUF must name SmolLM2-135M-Instruct.Q4_1.gguf";
  }

  void TearDown() override { children_.KillAll(absl::Seconds(15)); }

  // Starts serve with its children's logs in a directory of their own (see Logs()).
  pid_t StartServe(const std::vector<std::string>& flags) {
    static int next_dir = 0;
    log_dir_ = absl::StrCat(TestTempDir(), "/serve-", next_dir++);
    EXPECT_EQ(mkdir(log_dir_.c_str(), 0755), 0) << log_dir_;
    std::vector<std::string> argv = {TestRunfile("tools/shardserve"),
                                     "serve",
                                     "--model=" + TestGgufPath(),
                                     "--port=0",
                                     "--threads=1",
                                     "--kv_cache_bytes=16777216",
                                     "--ready_timeout=100s",
                                     "--log_dir=" + log_dir_};
    argv.insert(argv.end(), flags.begin(), flags.end());
    const pid_t pid = children_.Spawn("serve", argv);
    EXPECT_GT(pid, 0);
    return pid;
  }

  // Waits for serve's ready line; returns it ("" when serve exited or the deadline passed).
  std::string WaitReady(pid_t serve) {
    const absl::Time deadline = absl::Now() + kReadyTimeout;
    while (absl::Now() < deadline) {
      const std::string out = children_.Output(serve);
      const size_t at = out.find(kReady);
      const size_t end = at == std::string::npos ? at : out.find('\n', at);
      if (end != std::string::npos) return out.substr(at, end - at);
      if (children_.WaitExit(serve, absl::ZeroDuration()).has_value()) return "";
      absl::SleepFor(absl::Milliseconds(50));
    }
    return "";
  }

  // serve's output and every log of its children, for failure messages.
  std::string Logs(pid_t serve) {
    std::string all = absl::StrCat("--- serve\n", children_.Output(serve));
    DIR* dir = opendir(log_dir_.c_str());
    if (dir == nullptr) return all;
    while (dirent* entry = readdir(dir)) {
      const std::string name = entry->d_name;
      if (!absl::EndsWith(name, ".log")) continue;
      std::ifstream in(absl::StrCat(log_dir_, "/", name));
      std::stringstream text;
      text << in.rdbuf();
      absl::StrAppend(&all, "--- ", name, "\n", text.str());
    }
    closedir(dir);
    return all;
  }

  // The coordinator's address in a ready line.
  static std::string Address(const std::string& ready_line) {
    const size_t at = ready_line.find(kOnLoopback);
    if (at == std::string::npos) return "";
    size_t end = at + sizeof(kOnLoopback) - 1;
    while (end < ready_line.size() && isdigit(ready_line[end])) ++end;
    return absl::StrCat("127.0.0.1:", ready_line.substr(at + sizeof(kOnLoopback) - 1,
                                                        end - at - sizeof(kOnLoopback) + 1));
  }

  ChildProcesses children_{TestTempDir()};
  std::string log_dir_;
};

TEST_F(ServeTest, StartsEveryProcessAndStopsThemAllOnSigterm) {
  const pid_t serve = StartServe({"--tp=2"});
  const std::string ready = WaitReady(serve);
  ASSERT_FALSE(ready.empty()) << Logs(serve);
  EXPECT_TRUE(absl::StrContains(ready, "(2 workers)")) << ready;
  const std::string address = Address(ready);

  // The coordinator and two workers, all children of serve.
  const std::vector<ProcessInfo> children = ChildrenOf(serve);
  EXPECT_EQ(children.size(), 3u);
  EXPECT_EQ(CountCommand(children, "shardserve-coo"), 1);
  EXPECT_EQ(CountCommand(children, "shardserve-wor"), 2);

  // The coordinator agrees: one ready TP=2 group of two live workers.
  auto stub =
      v1::ClusterService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(TestDeadline(absl::Seconds(5)));
  v1::GetPlanReply plan;
  ASSERT_TRUE(stub->GetPlan(&context, v1::GetPlanRequest(), &plan).ok()) << address;
  ASSERT_EQ(plan.plan().groups_size(), 1);
  EXPECT_TRUE(plan.plan().groups(0).ready());
  EXPECT_EQ(plan.plan().groups(0).worker_ids_size(), 2);
  ASSERT_EQ(plan.worker_status_size(), 2);
  for (const v1::WorkerStatus& w : plan.worker_status()) EXPECT_TRUE(w.alive());

  children_.Signal(serve, SIGTERM);
  const absl::optional<int> code = children_.WaitExit(serve, kExitTimeout);
  ASSERT_TRUE(code.has_value()) << "serve did not exit:\n" << Logs(serve);
  EXPECT_EQ(*code, 0) << Logs(serve);
  // serve reaped its children before it exited: none is left running (nor a zombie).
  for (const ProcessInfo& p : StillRunningAfter(children, absl::ZeroDuration())) {
    ADD_FAILURE() << p.command << " (pid " << p.pid << ") outlived serve";
  }
}

TEST_F(ServeTest, ChildrenDieWhenServeIsKilled) {
  const pid_t serve = StartServe({});
  const std::string ready = WaitReady(serve);
  ASSERT_FALSE(ready.empty()) << Logs(serve);
  EXPECT_TRUE(absl::StrContains(ready, "(1 worker)")) << ready;
  const std::vector<ProcessInfo> children = ChildrenOf(serve);
  ASSERT_EQ(children.size(), 2u);

  children_.Signal(serve, SIGKILL);
  ASSERT_TRUE(children_.WaitExit(serve, kExitTimeout).has_value());
  for (const ProcessInfo& p : StillRunningAfter(children, absl::Seconds(10))) {
    ADD_FAILURE() << p.command << " (pid " << p.pid << ") outlived a killed serve";
  }
}

TEST_F(ServeTest, ImpossibleLayoutFailsAtOnceWithTheCoordinatorsReason) {
  // SmolLM2 has 3 KV heads: TP=4 cannot split them.
  const absl::Time start = absl::Now();
  const pid_t serve = StartServe({"--tp=4"});
  const absl::optional<int> code = children_.WaitExit(serve, kExitTimeout);
  ASSERT_TRUE(code.has_value()) << "serve still runs:\n" << children_.Output(serve);
  const std::string out = children_.Output(serve);
  EXPECT_EQ(*code, 2) << out;  // the coordinator's exit code for a refused layout
  EXPECT_TRUE(absl::StrContains(out, "impossible layout")) << out;
  EXPECT_FALSE(absl::StrContains(out, "ready: ")) << out;
  EXPECT_LT(absl::Now() - start, absl::Seconds(20)) << out;
}

TEST_F(ServeTest, ClientsReportAnUnreachableServer) {
  const std::string server = absl::StrCat("--server=127.0.0.1:", ClosedPort());
  const pid_t generate = children_.Spawn("generate", {TestRunfile("tools/shardserve"), "generate",
                                                      server, "--prompt=hi", "--timeout=20s"});
  absl::optional<int> code = children_.WaitExit(generate, kExitTimeout);
  ASSERT_TRUE(code.has_value()) << children_.Output(generate);
  EXPECT_EQ(*code, 1) << children_.Output(generate);
  EXPECT_TRUE(absl::StrContains(children_.Output(generate), "UNAVAILABLE"))
      << children_.Output(generate);

  const pid_t bench = children_.Spawn(
      "bench", {TestRunfile("tools/shardserve"), "bench", server, "--num_prompts=4"});
  code = children_.WaitExit(bench, kExitTimeout);
  ASSERT_TRUE(code.has_value()) << children_.Output(bench);
  EXPECT_EQ(*code, 1) << children_.Output(bench);
  EXPECT_TRUE(absl::StrContains(children_.Output(bench), "UNAVAILABLE")) << children_.Output(bench);
}

TEST_F(ServeTest, BadThreadCountsExitWithCode2) {
  const std::vector<std::vector<std::string>> commands = CommandsValidatingEngineFlags();
  for (const std::string threads : {"-3", "100000"}) {
    for (std::vector<std::string> argv : commands) {
      argv.push_back("--threads=" + threads);
      const std::string what = absl::StrCat(argv[0], " ", argv[1], " --threads=", threads);
      const pid_t pid = children_.Spawn("bad-threads", argv);
      const absl::optional<int> code = children_.WaitExit(pid, kExitTimeout);
      ASSERT_TRUE(code.has_value()) << what << " still runs:\n" << children_.Output(pid);
      const std::string out = children_.Output(pid);
      EXPECT_EQ(*code, 2) << what << "\n" << out;
      EXPECT_TRUE(absl::StrContains(out, "--threads must be 0")) << what << out;
      EXPECT_TRUE(absl::StrContains(out, absl::StrCat("got ", threads))) << what << "\n" << out;
    }
  }
}

TEST_F(ServeTest, BadKvCacheDTypeExitsWithCode2) {
  const std::vector<std::vector<std::string>> commands = CommandsValidatingEngineFlags();
  for (std::vector<std::string> argv : commands) {
    argv.push_back("--kv_cache_dtype=bf16");
    const std::string what = absl::StrCat(argv[0], " ", argv[1], " --kv_cache_dtype=bf16");
    const pid_t pid = children_.Spawn("bad-kv-dtype", argv);
    const absl::optional<int> code = children_.WaitExit(pid, kExitTimeout);
    ASSERT_TRUE(code.has_value()) << what << " still runs:\n" << children_.Output(pid);
    const std::string out = children_.Output(pid);
    EXPECT_EQ(*code, 2) << what << "\n" << out;
    EXPECT_TRUE(absl::StrContains(out, "--kv_cache_dtype must be f16 or f32, not 'bf16'"))
        << what << "\n"
        << out;
  }
}

}  // namespace
}  // namespace shardserve
