// Starts binaries as child processes with their output in log files, and makes sure none outlives
// its parent: KillAll (also run by the destructor) sends SIGTERM, waits briefly, then SIGKILLs;
// every child also gets SIGKILL if the parent process itself dies (PR_SET_PDEATHSIG). Used by
// `shardserve serve` (tools/local_cluster) and by the multi-process tests.
//
//   ChildProcesses children(log_dir);
//   pid_t pid = children.Spawn("coordinator", {binary, "--port=0"});
//   std::string out = children.Output(pid);   // stdout and stderr so far
//   absl::optional<int> code = children.WaitExit(pid, absl::Seconds(5));  // nullopt: still running
//
// Thread safety: use from one thread, the one that spawns the children (PR_SET_PDEATHSIG fires
// when that thread exits, so it must live as long as the children should).
#ifndef SHARDSERVE_COMMON_CHILD_PROCESSES_H_
#define SHARDSERVE_COMMON_CHILD_PROCESSES_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/optional.h"

namespace shardserve {

class ChildProcesses {
 public:
  // Logs go to `log_dir`/<name>.<n>.log, a file created for the child (n is the next number
  // whose file does not exist yet).
  explicit ChildProcesses(std::string log_dir);
  ~ChildProcesses();

  ChildProcesses(const ChildProcesses&) = delete;
  ChildProcesses& operator=(const ChildProcesses&) = delete;

  // Starts argv[0] with `argv`; returns its pid, or -1 when fork fails.
  pid_t Spawn(const std::string& name, const std::vector<std::string>& argv);

  // Everything the child wrote to stdout and stderr so far.
  std::string Output(pid_t pid) const;

  // The file holding the child's stdout and stderr; empty for a pid this object did not spawn.
  std::string LogPath(pid_t pid) const;

  // Waits up to `timeout` for the child to end; its exit code (128 + signal when killed), or
  // nullopt while it still runs. Reaps it.
  absl::optional<int> WaitExit(pid_t pid, absl::Duration timeout);

  // Sends `signal` to a running child.
  void Signal(pid_t pid, int signal);

  // Ends every child still running: SIGTERM, up to `grace` to exit, then SIGKILL; reaps all.
  void KillAll(absl::Duration grace = absl::Seconds(3));

 private:
  struct Child {
    std::string log_path;
    bool running = true;
    int exit_code = -1;
  };

  const std::string log_dir_;
  std::map<pid_t, Child> children_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COMMON_CHILD_PROCESSES_H_
