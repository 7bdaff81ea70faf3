#include "worker/comm/rank_processes.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/str_cat.h"

namespace shardserve {

std::string RankProcesses::Outcome::ToString() const {
  if (timed_out) return absl::StrCat("rank ", rank, ": killed at the deadline");
  if (!exited) return absl::StrCat("rank ", rank, ": killed by signal ", signal);
  return absl::StrCat("rank ", rank, ": exit code ", exit_code);
}

std::vector<RankProcesses::Outcome> RankProcesses::Run(
    int world_size, const std::function<absl::Status(int rank)>& body, absl::Duration deadline) {
  fflush(stdout);
  fflush(stderr);
  std::vector<pid_t> pids(world_size, -1);
  std::vector<Outcome> outcomes(world_size);
  for (int r = 0; r < world_size; ++r) {
    outcomes[r].rank = r;
    pid_t pid = fork();
    if (pid == 0) {
      absl::Status s = body(r);
      if (!s.ok()) fprintf(stderr, "rank %d: %s\n", r, s.ToString().c_str());
      fflush(stderr);
      _exit(s.ok() ? 0 : 1);
    }
    pids[r] = pid;
    if (pid < 0) outcomes[r].exit_code = -errno;
  }
  const absl::Time end = absl::Now() + deadline;
  int running = 0;
  for (pid_t p : pids) running += p > 0;
  while (running > 0) {
    for (int r = 0; r < world_size; ++r) {
      if (pids[r] <= 0) continue;
      int status = 0;
      pid_t got = waitpid(pids[r], &status, WNOHANG);
      if (got != pids[r]) continue;
      if (WIFEXITED(status)) {
        outcomes[r].exited = true;
        outcomes[r].exit_code = WEXITSTATUS(status);
      } else if (WIFSIGNALED(status)) {
        outcomes[r].signal = WTERMSIG(status);
      }
      pids[r] = -1;
      --running;
    }
    if (running == 0) break;
    if (absl::Now() > end) {
      for (int r = 0; r < world_size; ++r) {
        if (pids[r] <= 0) continue;
        kill(pids[r], SIGKILL);
        waitpid(pids[r], nullptr, 0);
        outcomes[r].timed_out = true;
        outcomes[r].signal = SIGKILL;
      }
      break;
    }
    usleep(1000);
  }
  return outcomes;
}

std::string RankProcesses::MakeTempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string pattern = absl::StrCat(base != nullptr ? base : "/tmp", "/comm_XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) return "";
  return pattern;
}

}  // namespace shardserve
