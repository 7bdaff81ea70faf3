#include "common/child_processes.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
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
  // A fresh file, never one an earlier child (of this process or another) wrote: a stale log
  // (and a stale "listening on" line in it) would mislead whoever reads it. Opened here, so the
  // child only inherits it; O_CLOEXEC keeps it out of children spawned later.
  static std::atomic<int> next_log{0};
  std::string log_path;
  int log_fd = -1;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    log_path = absl::StrCat(log_dir_, "/", name, ".", next_log++, ".log");
    log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (log_fd >= 0 || errno != EEXIST) break;
  }
  // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    if (log_fd >= 0) close(log_fd);
    return -1;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl took effect
    if (log_fd >= 0) {
      dup2(log_fd, STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
    }
    // The parent may block signals (gRPC threads); the child must start with none blocked.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  if (log_fd >= 0) close(log_fd);
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

std::string ChildProcesses::LogPath(pid_t pid) const {
  auto it = children_.find(pid);
  return it == children_.end() ? "" : it->second.log_path;
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
