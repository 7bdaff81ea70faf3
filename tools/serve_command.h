// `shardserve serve`: runs a whole cluster on this machine (tools/local_cluster): the
// coordinator and as many workers as the layout needs, each a child process with its log in
// --log_dir.
//
//   shardserve serve --model=smollm2 [--groups=N | --prefill_groups=N --decode_groups=N]
//       [--tp --pp --ep --moe_combine --prefill_tp ... as shardserve-coordinator takes them]
//       [--port=7000] [--threads=N] [--kv_cache_bytes=N] [--kv_cache_dtype=f16|f32]
//       [--metrics_port=P] [--log_dir=DIR] [--ready_timeout=300s]
//       [--prompt=TEXT [--chat] [sampling flags]]   (one command line)
//
// Every worker gets the same --kv_cache_bytes and --kv_cache_dtype (f16 unless given): a group's
// ranks must agree on both, and KV moves between prefill and decode groups only between caches
// of one dtype.
//
// Once every group is ready it prints `ready: serving <model> on 127.0.0.1:PORT (N workers); logs
// in DIR` (stdout; stderr with --prompt) and serves until SIGINT or SIGTERM, then stops every
// child (SIGTERM, a grace period, SIGKILL) and exits 0. A worker that dies while serving is
// reported and serving goes on (its group is failed); the coordinator dying ends serve with
// exit 1. A child that exits before the cluster is ready, or a cluster not ready within
// --ready_timeout, ends serve with the child's exit code (1 when there is none) and the end of
// its log. With --prompt, serve answers that one prompt once ready, streamed to stdout as
// `shardserve generate` would, then stops the cluster and exits with generate's code.
//
// The binaries are found next to this one (an installed layout) or in Bazel's (bazel-bin/tools,
// bazel-bin/coordinator, bazel-bin/worker); --coordinator_binary and --worker_binary override.
#ifndef SHARDSERVE_TOOLS_SERVE_COMMAND_H_
#define SHARDSERVE_TOOLS_SERVE_COMMAND_H_

namespace shardserve {

// Reads the serve flags and returns the process exit code.
int ServeCommand();

}  // namespace shardserve

#endif  // SHARDSERVE_TOOLS_SERVE_COMMAND_H_
