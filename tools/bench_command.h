// `shardserve bench`: load-tests a cluster's InferenceService.Generate, in the manner of vLLM's
// benchmark_serving with its random dataset.
//
//   shardserve bench --server=127.0.0.1:7000 --num_prompts=200 --request_rate=4
//       --max_concurrency=32 --input_len=128 --output_len=64 [--slo_ttft_ms=500]
//       [--slo_tpot_ms=50] [--seed=0] [--warmup=1] [--json]   (one command line)
//
// Every prompt is exactly --input_len random token ids (seeded, drawn from [100, vocab_size) as
// ListModels reports the vocabulary) sent as token ids with max_tokens --output_len, ignore_eos
// and greedy sampling, so every request does the same work. Arrivals follow a Poisson process
// of --request_rate requests per second ("inf" sends all at once), with at most
// --max_concurrency in flight (0: no limit). --warmup requests run first and are not measured.
// The report (tools/bench_stats.h): successful and failed requests (by status code), duration,
// request, output and total token throughput, TTFT, TPOT, ITL and e2e latency (mean, p50, p99 in
// ms) and goodput (requests per second meeting every SLO given); --json prints it as one object.
//
// Exit codes: 0 when some request succeeded; 1 when none did, the server cannot be reached, or
// every warmup request failed; 2 for bad flags.
#ifndef SHARDSERVE_TOOLS_BENCH_COMMAND_H_
#define SHARDSERVE_TOOLS_BENCH_COMMAND_H_

namespace shardserve {

// Reads the bench flags and returns the process exit code.
int BenchCommand();

}  // namespace shardserve

#endif  // SHARDSERVE_TOOLS_BENCH_COMMAND_H_
