// The shardserve command line.
//
//   shardserve run --model=smollm2 --prompt="Hello" [--chat] [--max_tokens=N] [--json] ...
//
// Subcommands: run (generate in this process), bench-engine (time the engine), status (a
// cluster's plan and readiness). Flags follow the subcommand; `shardserve help`
// lists them.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "tools/bench_engine_command.h"
#include "tools/run_command.h"
#include "tools/status_command.h"

namespace {

constexpr char kUsage[] =
    "usage: shardserve <command> [flags]\n"
    "commands:\n"
    "  run           generate text for one prompt in this process\n"
    "  bench-engine  time prefill and decode of the in-process engine (JSON)\n"
    "  status        a cluster's placement plan and readiness (exit 0: all ready, 1: not, 2:\n"
    "                coordinator unreachable)\n"
    "run flags: --model --prompt --chat --system --max_tokens --min_tokens --temperature --top_k\n"
    "           --top_p --min_p --repetition_penalty --presence_penalty --frequency_penalty\n"
    "           --seed --ignore_eos --stop --logprobs --threads --json\n"
    "bench-engine flags: --model --threads --prefill_tokens --decode_tokens --repeats\n"
    "status flags: --server=HOST:PORT --json --timeout\n";

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
  if (command == "bench-engine") return shardserve::BenchEngineCommand();
  if (command == "status") return shardserve::StatusCommand();
  if (command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "shardserve: unknown command '%s'\n%s", command.c_str(), kUsage);
  return 2;
}
