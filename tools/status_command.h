// `shardserve status`: shows a cluster's placement plan and the health of its groups and workers,
// as the coordinator reports them (ClusterService.GetPlan).
//
//   shardserve status --server=127.0.0.1:7000 [--json] [--timeout=5s]
//
// Exit codes, for scripts and probes: 0 when a plan exists and every engine group is ready;
// 1 when the coordinator answered but some group is not ready (or no plan exists yet; the reasons
// are printed); 2 when the coordinator cannot be reached within the timeout.
#ifndef SHARDSERVE_TOOLS_STATUS_COMMAND_H_
#define SHARDSERVE_TOOLS_STATUS_COMMAND_H_

namespace shardserve {

// Reads --server, --json and --timeout and returns the process exit code.
int StatusCommand();

}  // namespace shardserve

#endif  // SHARDSERVE_TOOLS_STATUS_COMMAND_H_
