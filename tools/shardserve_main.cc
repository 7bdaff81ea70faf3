// The shardserve command line.
//
//   shardserve run --model=smollm2 --prompt="Hello" [--chat] [--max_tokens=N] [--json] ...
//   shardserve serve --model=smollm2 [--tp=2] [--prompt="Hello" --chat]
//   shardserve generate --server=127.0.0.1:7000 --prompt="Hello" [--chat]
//   shardserve bench --server=127.0.0.1:7000 --num_prompts=100 --request_rate=4
//
// Subcommands: run (generate in this process), serve (a whole cluster on this machine),
// generate (one request to a cluster), bench (load-test a cluster), bench-engine (time the
// engine), status (a cluster's plan and readiness). Flags follow the subcommand;
// `shardserve help` lists them.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "tools/bench_command.h"
#include "tools/bench_engine_command.h"
#include "tools/generate_command.h"
#include "tools/run_command.h"
#include "tools/serve_command.h"
#include "tools/status_command.h"

namespace {

constexpr char kUsage[] =
    "usage: shardserve <command> [flags]\n"
    "commands:\n"
    "  run           generate text for one prompt in this process\n"
    "  serve         run a whole cluster (coordinator and workers) on this machine until\n"
    "                SIGINT/SIGTERM; with --prompt, answer it and stop\n"
    "  generate      stream one request's answer from a cluster (InferenceService.Generate)\n"
    "  bench         load-test a cluster: Poisson arrivals of random prompts; TTFT, TPOT, ITL,\n"
    "                throughput, goodput\n"
    "  bench-engine  time prefill and decode of the in-process engine (JSON)\n"
    "  status        a cluster's placement plan and readiness (exit 0: all ready, 1: not, 2:\n"
    "                coordinator unreachable)\n"
    "run flags: --model --prompt --chat --system --max_tokens --min_tokens --temperature --top_k\n"
    "           --top_p --min_p --repetition_penalty --presence_penalty --frequency_penalty\n"
    "           --seed --ignore_eos --stop --stop_token_ids --include_stop_str_in_output\n"
    "           --logprobs --threads --kv_cache_dtype (f16 or f32; default f16) --json\n"
    "serve flags: --model --groups | --prefill_groups --decode_groups, --tp --pp --ep\n"
    "             --moe_combine --prefill_tp --decode_tp --prefill_pp --decode_pp --prefill_ep\n"
    "             --decode_ep (as shardserve-coordinator), --port (7000; 0: a free one)\n"
    "             --threads (per worker; 0: the cores divided among the workers)\n"
    "             --kv_cache_bytes --kv_cache_dtype (every worker's: f16 or f32; default f16)\n"
    "             --metrics_port --log_dir --ready_timeout (300s)\n"
    "             --coordinator_binary --worker_binary; --prompt with the generate flags\n"
    "generate flags: --server --prompt | --token_ids=1,2,3, --chat --system --request_id\n"
    "                --timeout (10m) --json and the sampling flags of run\n"
    "bench flags: --server --num_prompts --request_rate (req/s or inf) --max_concurrency\n"
    "             (0: no limit) --input_len --output_len --slo_ttft_ms --slo_tpot_ms\n"
    "             --seed (0 unless given) --warmup --request_timeout (10m) --json\n"
    "bench-engine flags: --model --threads --kv_cache_dtype --prefill_tokens --decode_tokens\n"
    "                    --repeats\n"
    "status flags: --server=HOST:PORT --json --timeout (5s)\n";

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = positional[1];
  if (positional.size() > 2) {
    std::fprintf(stderr, "shardserve: unexpected argument '%s'\n%s", positional[2], kUsage);
    return 2;
  }
  if (command == "run") return shardserve::RunCommand();
  if (command == "serve") return shardserve::ServeCommand();
  if (command == "generate") return shardserve::GenerateCommand();
  if (command == "bench") return shardserve::BenchCommand();
  if (command == "bench-engine") return shardserve::BenchEngineCommand();
  if (command == "status") return shardserve::StatusCommand();
  if (command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "shardserve: unknown command '%s'\n%s", command.c_str(), kUsage);
  return 2;
}
