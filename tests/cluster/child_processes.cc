#include "tests/cluster/child_processes.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace shardserve {

namespace {

int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

ChildProcesses::ChildProcesses(std::string log_dir) : log_dir_(std::move(log_dir)) {}

ChildProcesses::~ChildProcesses() { KillAll(); }

pid_t ChildProcesses::Spawn(const std::string& name, const std::vector<std::string>& argv) {
  // Numbered across every ChildProcesses of the test process, so a fresh child never shares a
  // log (and a stale "listening on" line) with one from an earlier test.
  static std::atomic<int> next_log{0};
  const std::string log_path = absl::StrCat(log_dir_, "/", name, ".", next_log++, ".log");
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      close(fd);
    }
    // The test process may block signals (gRPC threads); the child must start with none blocked.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  children_[pid].log_path = log_path;
  return pid;
}

std::string ChildProcesses::Output(pid_t pid) const {
  auto it = children_.find(pid);
  if (it == children_.end()) return "";
  std::ifstream in(it->second.log_path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::optional<int> ChildProcesses::WaitExit(pid_t pid, absl::Duration timeout) {
  auto it = children_.find(pid);
  if (it == children_.end()) return absl::nullopt;
  Child& child = it->second;
  const absl::Time deadline = absl::Now() + timeout;
  while (child.running) {
    int status = 0;
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      child.running = false;
      child.exit_code = ExitCode(status);
      break;
    }
    if (done < 0 || absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (child.running) return absl::nullopt;
  return child.exit_code;
}

void ChildProcesses::Signal(pid_t pid, int signal) {
  auto it = children_.find(pid);
  if (it != children_.end() && it->second.running) kill(pid, signal);
}

void ChildProcesses::KillAll(absl::Duration grace) {
  for (auto& [pid, child] : children_) {
    if (child.running) kill(pid, SIGTERM);
  }
  const absl::Time deadline = absl::Now() + grace;
  for (auto& [pid, child] : children_) {
    if (!child.running) continue;
    if (!WaitExit(pid, std::max(deadline - absl::Now(), absl::ZeroDuration())).has_value()) {
      kill(pid, SIGKILL);
      WaitExit(pid, absl::Seconds(5));
    }
  }
}

}  // namespace shardserve
