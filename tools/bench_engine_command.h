// `shardserve bench-engine`: times prefill and decode of the in-process engine on synthetic
// prompts and measures the machine's memory read bandwidth in the same run.
#ifndef SHARDSERVE_TOOLS_BENCH_ENGINE_COMMAND_H_
#define SHARDSERVE_TOOLS_BENCH_ENGINE_COMMAND_H_

namespace shardserve {

// Returns the process exit code. Prints one JSON object.
int BenchEngineCommand();

}  // namespace shardserve

#endif  // SHARDSERVE_TOOLS_BENCH_ENGINE_COMMAND_H_
