#include "tools/bench_engine_command.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/thread_pool.h"
#include "model/model_bundle.h"
#include "model/model_resolver.h"
#include "model/shard_spec.h"
#include "nlohmann/json.hpp"
#include "tools/cli_flags.h"
#include "worker/engine.h"
#include "worker/group_engine.h"
#include "worker/kv_cache.h"
#include "worker/serving_engine.h"

ABSL_FLAG(int32_t, prefill_tokens, 512, "bench-engine: prompt length for the prefill timing");
ABSL_FLAG(int32_t, decode_tokens, 128, "bench-engine: tokens generated for the decode timing");
ABSL_FLAG(int32_t, repeats, 3,
          "bench-engine: timed repetitions (the best is reported; with --concurrency, rounds of "
          "one request alone then all at once, medians reported)");
ABSL_FLAG(int32_t, concurrency, 0,
          "bench-engine: when > 0, time continuous batching instead: this many requests of "
          "--input_len prompt tokens and --output_len output tokens at once, in this process");
ABSL_FLAG(int32_t, input_len, 128, "bench-engine --concurrency: prompt tokens per request");
ABSL_FLAG(int32_t, output_len, 128, "bench-engine --concurrency: output tokens per request");

ABSL_DECLARE_FLAG(int64_t, kv_cache_bytes);          // tools/serve_command.cc
ABSL_DECLARE_FLAG(int32_t, max_num_batched_tokens);  // tools/serve_command.cc

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

// Random prompt ids from the ordinary part of the vocabulary, seeded per request.
std::vector<int32_t> RandomPrompt(int64_t vocab_size, int32_t length, uint64_t seed) {
  std::vector<int32_t> ids(length);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int32_t& id : ids) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    id = static_cast<int32_t>(100 + x % static_cast<uint64_t>(vocab_size - 100));
  }
  return ids;
}

// Continuous batching in process: the ServingEngine over a one-rank group, `concurrency`
// requests submitted at once (the offline reference for the served benchmark), and one request
// alone for the zero-load time to first token.
absl::Status BenchBatched(const WeightSource* weights, int threads, DType kv_cache_dtype,
                          double load_seconds) {
  const int32_t concurrency = absl::GetFlag(FLAGS_concurrency);
  const int32_t input_len = absl::GetFlag(FLAGS_input_len);
  const int32_t output_len = absl::GetFlag(FLAGS_output_len);
  ASSIGN_OR_RETURN(ShardSpec shard,
                   MakeShardSpec(weights->config(), ParallelLayout{1, 1, 1}, 0, 0));
  EngineOptions options;
  options.num_threads = threads;
  options.kv_cache_bytes = absl::GetFlag(FLAGS_kv_cache_bytes);
  options.kv_cache_dtype = kv_cache_dtype;
  ASSIGN_OR_RETURN(std::unique_ptr<GroupEngine> group,
                   GroupEngine::Create(weights, shard, GroupComms{}, options));
  ServingOptions serving_options;
  serving_options.scheduler.max_num_seqs = std::max(concurrency, 1);
  serving_options.scheduler.max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens);
  ASSIGN_OR_RETURN(std::unique_ptr<ServingEngine> serving,
                   ServingEngine::Create(group.get(), serving_options));
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.ignore_eos = true;
  greedy.max_tokens = output_len;

  // Seconds until every request finished, mean seconds to a first token, and seconds to the
  // last first token (after it, every request is decoding).
  struct Timing {
    double total;
    double mean_ttft;
    double last_ttft;
  };
  uint64_t next_seed = 1;
  auto run = [&](int n) -> absl::StatusOr<Timing> {
    std::vector<std::shared_ptr<ServingRequest>> requests;
    const double t0 = Now();
    for (int i = 0; i < n; ++i) {
      ASSIGN_OR_RETURN(auto r, serving->Submit(RandomPrompt(weights->config().vocab_size, input_len,
                                                            next_seed++),
                                               greedy, absl::StrCat("bench-", i)));
      requests.push_back(std::move(r));
    }
    // Every stream is drained by its own thread, so that a first token is timed when it
    // arrives, not when an earlier request's stream has been read to its end.
    std::vector<double> ttft(n, 0);
    std::vector<absl::Status> statuses(n);
    std::vector<std::thread> drains;
    for (int i = 0; i < n; ++i) {
      drains.emplace_back([&, i] {
        ServingRequest& r = *requests[i];
        TokenEvent event;
        bool first = true;
        while (true) {
          const ServingRequest::NextResult next = r.Next(&event, absl::Seconds(600));
          if (next == ServingRequest::kDone) break;
          if (next == ServingRequest::kTimeout) {
            statuses[i] = absl::DeadlineExceededError("bench request");
            return;
          }
          if (first) ttft[i] = Now() - t0;
          first = false;
        }
        statuses[i] = r.status();
      });
    }
    for (std::thread& d : drains) d.join();
    for (const absl::Status& s : statuses) RETURN_IF_ERROR(s);
    const double ttft_sum = std::accumulate(ttft.begin(), ttft.end(), 0.0);
    return Timing{Now() - t0, ttft_sum / n, *std::max_element(ttft.begin(), ttft.end())};
  };
  // First touch of the KV cache and scratch buffers.
  RETURN_IF_ERROR(run(1).status());
  // Rounds of one request alone, then `concurrency` at once: each round's two runs see the
  // machine in about the same state, so the ratio of their rates (the batching gain) is paired
  // even where the machine's speed drifts between rounds. Medians over the rounds.
  const int rounds = std::max(1, absl::GetFlag(FLAGS_repeats));
  std::vector<double> alone_ttft, alone_rate, batched_rate, batched_ttft, gain;
  std::vector<double> alone_decode_rate, batched_decode_rate, decode_gain;
  // Decode tokens/s: the tokens after each request's first, over the time from the last first
  // token to the end (prefill excluded; the batch is whole from then on).
  auto decode_rate = [&](int n, const Timing& t) {
    return static_cast<double>(n) * (output_len - 1) / (t.total - t.last_ttft);
  };
  for (int i = 0; i < rounds; ++i) {
    ASSIGN_OR_RETURN(const Timing alone, run(1));
    ASSIGN_OR_RETURN(const Timing batched, run(concurrency));
    alone_ttft.push_back(alone.mean_ttft);
    alone_rate.push_back(output_len / alone.total);
    batched_rate.push_back(static_cast<double>(concurrency) * output_len / batched.total);
    batched_ttft.push_back(batched.mean_ttft);
    gain.push_back(batched_rate.back() / alone_rate.back());
    if (output_len > 1) {
      alone_decode_rate.push_back(decode_rate(1, alone));
      batched_decode_rate.push_back(decode_rate(concurrency, batched));
      decode_gain.push_back(batched_decode_rate.back() / alone_decode_rate.back());
    }
  }
  serving->Shutdown();
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  };

  nlohmann::json out;
  out["engine"] = "shardserve-offline-batched";
  out["threads"] = threads;
  out["kv_cache_dtype"] = std::string(KvCacheDTypeName(kv_cache_dtype));
  out["load_seconds"] = load_seconds;
  out["concurrency"] = concurrency;
  out["input_len"] = input_len;
  out["output_len"] = output_len;
  out["rounds"] = rounds;
  out["output_tokens_per_s"] = median(batched_rate);
  out["mean_ttft_ms"] = median(batched_ttft) * 1e3;
  out["single_request_ttft_ms"] = median(alone_ttft) * 1e3;
  out["single_request_output_tokens_per_s"] = median(alone_rate);
  // Output tokens/s of `concurrency` requests over one request's, per round.
  out["batching_gain"] = median(gain);
  out["batching_gain_min"] = *std::min_element(gain.begin(), gain.end());
  out["batching_gain_max"] = *std::max_element(gain.begin(), gain.end());
  if (!decode_gain.empty()) {
    out["decode_tokens_per_s"] = median(batched_decode_rate);
    out["single_request_decode_tokens_per_s"] = median(alone_decode_rate);
    // Aggregate decode tokens/s of `concurrency` requests over one request's, per round.
    out["decode_gain"] = median(decode_gain);
    out["decode_gain_min"] = *std::min_element(decode_gain.begin(), decode_gain.end());
    out["decode_gain_max"] = *std::max_element(decode_gain.begin(), decode_gain.end());
  }
  std::cout << out.dump() << std::endl;
  return absl::OkStatus();
}

absl::Status Bench() {
  const double t_start = Now();
  ASSIGN_OR_RETURN(const int threads, ThreadsFromFlags());
  ASSIGN_OR_RETURN(const DType kv_cache_dtype, KvCacheDTypeFromFlags());
  ASSIGN_OR_RETURN(std::string path, ResolveModel(absl::GetFlag(FLAGS_model)));
  ASSIGN_OR_RETURN(ModelBundle model, LoadModelBundle(path));
  if (absl::GetFlag(FLAGS_concurrency) > 0) {
    return BenchBatched(model.weights.get(), threads, kv_cache_dtype, Now() - t_start);
  }
  EngineOptions options;
  options.num_threads = threads;
  options.kv_cache_dtype = kv_cache_dtype;
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
  out["kv_cache_dtype"] = std::string(KvCacheDTypeName(kv_cache_dtype));
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
    return st.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace shardserve
