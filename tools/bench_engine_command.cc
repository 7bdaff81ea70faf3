#include "tools/bench_engine_command.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <numeric>
#include <vector>

#include "absl/flags/flag.h"
#include "common/status_macros.h"
#include "common/thread_pool.h"
#include "model/model_bundle.h"
#include "model/model_resolver.h"
#include "nlohmann/json.hpp"
#include "tools/cli_flags.h"
#include "worker/engine.h"

ABSL_FLAG(int32_t, prefill_tokens, 512, "bench-engine: prompt length for the prefill timing");
ABSL_FLAG(int32_t, decode_tokens, 128, "bench-engine: tokens generated for the decode timing");
ABSL_FLAG(int32_t, repeats, 3, "bench-engine: timed repetitions (the best is reported)");

namespace shardserve {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Reads a buffer much larger than the caches with every thread of `pool`; bytes per second.
double MeasureReadBandwidth(ThreadPool* pool) {
  const int64_t bytes = int64_t{256} << 20;  // far beyond any last-level cache
  std::vector<float> buf(bytes / 4, 1.0f);
  const int64_t count = static_cast<int64_t>(buf.size());
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    std::vector<double> sums(pool->num_threads(), 0);
    const double t0 = Now();
    pool->Run([&](int idx, int num) {
      const int64_t begin = count * idx / num, end = count * (idx + 1) / num;
      float acc[16] = {0};
      for (int64_t i = begin; i + 16 <= end; i += 16) {
        for (int j = 0; j < 16; ++j) acc[j] += buf[i + j];
      }
      sums[idx] = std::accumulate(acc, acc + 16, 0.0);
    });
    const double dt = Now() - t0;
    if (std::accumulate(sums.begin(), sums.end(), 0.0) < 0) std::puts("");  // keep the reads
    best = std::max(best, count * 4.0 / dt);
  }
  return best;
}

absl::Status Bench() {
  const double t_start = Now();
  ASSIGN_OR_RETURN(std::string path, ResolveModel(absl::GetFlag(FLAGS_model)));
  ASSIGN_OR_RETURN(ModelBundle model, LoadModelBundle(path));
  EngineOptions options;
  options.num_threads = absl::GetFlag(FLAGS_threads);
  options.max_num_batched_tokens = std::max(512, absl::GetFlag(FLAGS_prefill_tokens));
  ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(model.weights.get(), options));
  const double load_seconds = Now() - t_start;

  // A deterministic prompt of ordinary text tokens: the same ids a peer engine is given.
  const int32_t prefill_n = absl::GetFlag(FLAGS_prefill_tokens);
  const int32_t decode_n = absl::GetFlag(FLAGS_decode_tokens);
  const std::vector<int32_t> text_ids = model.tokenizer->Encode(
      "The history of the city begins with a small settlement on the river, where traders "
      "exchanged grain, salt and wool. Over the centuries it grew into a busy port. ",
      /*add_special_tokens=*/false);
  std::vector<int32_t> prompt;
  while (static_cast<int32_t>(prompt.size()) < prefill_n) {
    prompt.insert(prompt.end(), text_ids.begin(), text_ids.end());
  }
  prompt.resize(prefill_n);

  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.ignore_eos = true;
  double best_prefill = 1e30, best_decode = 1e30;
  const int repeats = std::max(1, absl::GetFlag(FLAGS_repeats));
  for (int r = 0; r < repeats; ++r) {
    // Prefill: the whole prompt, one token out. Distinct first tokens defeat the prefix cache.
    std::vector<int32_t> p = prompt;
    p[0] = text_ids[r % text_ids.size()];
    greedy.max_tokens = 1;
    ASSIGN_OR_RETURN(GenerationResult pre,
                     engine->Generate(p, greedy, [](int32_t) { return true; }));
    best_prefill = std::min(best_prefill, pre.prefill_seconds);
    // Decode: a short prompt, then decode_n tokens at batch 1.
    std::vector<int32_t> short_prompt(prompt.begin() + r, prompt.begin() + r + 8);
    greedy.max_tokens = decode_n + 1;
    ASSIGN_OR_RETURN(GenerationResult dec,
                     engine->Generate(short_prompt, greedy, [](int32_t) { return true; }));
    best_decode = std::min(best_decode, dec.decode_seconds);
  }
  ThreadPool pool(engine->num_threads());
  const double bandwidth = MeasureReadBandwidth(&pool);
  const double decode_tps = decode_n / best_decode;
  const double weight_bytes = static_cast<double>(engine->decoder().WeightBytesPerToken());

  nlohmann::json out;
  out["engine"] = "shardserve";
  out["threads"] = engine->num_threads();
  out["load_seconds"] = load_seconds;
  out["prefill_tokens"] = prefill_n;
  out["prefill_tokens_per_s"] = prefill_n / best_prefill;
  out["decode_tokens"] = decode_n;
  out["decode_tokens_per_s"] = decode_tps;
  out["weight_bytes_per_token"] = weight_bytes;
  out["decode_weight_gb_per_s"] = weight_bytes * decode_tps / 1e9;
  out["memory_read_gb_per_s"] = bandwidth / 1e9;
  out["prompt_ids"] = prompt;
  std::cout << out.dump() << std::endl;
  return absl::OkStatus();
}

}  // namespace

int BenchEngineCommand() {
  absl::Status st = Bench();
  if (!st.ok()) {
    std::fprintf(stderr, "shardserve bench-engine: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace shardserve
