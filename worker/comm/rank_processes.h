// Test support: runs one function per rank in forked child processes and collects how each
// ended, with a deadline so a stuck rank fails the test instead of hanging it.
//
//   std::vector<RankProcesses::Outcome> out = RankProcesses::Run(
//       3, [](int rank) { return DoRankWork(rank); }, absl::Seconds(20));
//   for (const auto& o : out) EXPECT_TRUE(o.ok()) << o.ToString();
//
// Fork before creating threads in the parent (a gtest body is fine). Children never return into
// the test framework: they leave with _exit.
#ifndef SHARDSERVE_WORKER_COMM_RANK_PROCESSES_H_
#define SHARDSERVE_WORKER_COMM_RANK_PROCESSES_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace shardserve {

class RankProcesses {
 public:
  struct Outcome {
    int rank = 0;
    bool exited = false;     // returned from its body (else killed by a signal or the deadline)
    int exit_code = -1;      // 0 when its body returned OK
    int signal = 0;          // the signal that ended it, if any
    bool timed_out = false;  // still running at the deadline, then killed
    bool ok() const { return exited && exit_code == 0; }
    std::string ToString() const;
  };

  // Forks `world_size` children; child r runs body(r) and exits 0 when it returns OK (else prints
  // the status to stderr and exits 1). Children still running at `deadline` are killed.
  static std::vector<Outcome> Run(int world_size, const std::function<absl::Status(int rank)>& body,
                                  absl::Duration deadline);

  // A fresh private directory under $TEST_TMPDIR (or /tmp) for rendezvous files.
  static std::string MakeTempDir();
};

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_RANK_PROCESSES_H_
