// TMPPERF: times serving steps at batch 1 and 16 through ServingEngine, from token timestamps.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "common/status_macros.h"
#include "model/model_bundle.h"
#include "model/model_resolver.h"
#include "model/shard_spec.h"
#include "worker/group_engine.h"
#include "worker/serving_engine.h"

namespace shardserve {
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
std::vector<int32_t> Prompt(int64_t vocab, int len, uint64_t seed) {
  std::vector<int32_t> ids(len);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& id : ids) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; id = 100 + x % (vocab - 100); }
  return ids;
}
absl::Status Main(int rounds, int out_len) {
  ASSIGN_OR_RETURN(std::string path, ResolveModel("smollm2"));
  ASSIGN_OR_RETURN(ModelBundle model, LoadModelBundle(path));
  ASSIGN_OR_RETURN(ShardSpec shard, MakeShardSpec(model.weights->config(), ParallelLayout{1, 1, 1}, 0, 0));
  EngineOptions options;
  options.num_threads = 2;
  ASSIGN_OR_RETURN(auto group, GroupEngine::Create(model.weights.get(), shard, GroupComms{}, options));
  ServingOptions so;
  so.scheduler.max_num_seqs = 16;
  ASSIGN_OR_RETURN(auto serving, ServingEngine::Create(group.get(), so));
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.ignore_eos = true;
  greedy.max_tokens = out_len;
  uint64_t seed = 1;
  // Returns per-step intervals (after the first token) of request 0, and the total time.
  auto run = [&](int n, std::vector<double>* steps, double* total) -> absl::Status {
    std::vector<std::shared_ptr<ServingRequest>> reqs;
    const double t0 = Now();
    for (int i = 0; i < n; ++i) {
      ASSIGN_OR_RETURN(auto r, serving->Submit(Prompt(model.weights->config().vocab_size, 16, seed++), greedy, "r"));
      reqs.push_back(r);
    }
    std::vector<double> times;
    for (int i = 0; i < n; ++i) {
      TokenEvent e;
      while (reqs[i]->Next(&e, absl::Seconds(600)) == ServingRequest::kEvent) {
        if (i == 0) times.push_back(Now());
      }
    }
    *total = Now() - t0;
    for (size_t k = 2; k < times.size(); ++k) steps->push_back(times[k] - times[k - 1]);
    return absl::OkStatus();
  };
  std::vector<double> s1, s16, t1, t16;
  double tot;
  { std::vector<double> w; RETURN_IF_ERROR(run(1, &w, &tot)); }
  for (int r = 0; r < rounds; ++r) {
    RETURN_IF_ERROR(run(1, &s1, &tot)); t1.push_back(tot);
    RETURN_IF_ERROR(run(16, &s16, &tot)); t16.push_back(tot);
  }
  auto pct = [](std::vector<double> v, double p) { std::sort(v.begin(), v.end()); return v[std::min(v.size() - 1, (size_t)(p * v.size()))]; };
  std::printf("step ms b1: p10 %.3f p25 %.3f p50 %.3f | b16: p10 %.3f p25 %.3f p50 %.3f | ratio(p10) %.2f ratio(p25) %.2f ratio(p50) %.2f\n",
              pct(s1, .1) * 1e3, pct(s1, .25) * 1e3, pct(s1, .5) * 1e3, pct(s16, .1) * 1e3, pct(s16, .25) * 1e3, pct(s16, .5) * 1e3,
              16 * pct(s1, .1) / pct(s16, .1), 16 * pct(s1, .25) / pct(s16, .25), 16 * pct(s1, .5) / pct(s16, .5));
  std::printf("run s b1: min %.3f med %.3f | b16: min %.3f med %.3f | tok/s ratio(min) %.2f ratio(med) %.2f\n",
              pct(t1, 0), pct(t1, .5), pct(t16, 0), pct(t16, .5), 16 * pct(t1, 0) / pct(t16, 0), 16 * pct(t1, .5) / pct(t16, .5));
  serving->Shutdown();
  return absl::OkStatus();
}
}  // namespace shardserve
int main(int argc, char** argv) {
  auto s = shardserve::Main(argc > 1 ? atoi(argv[1]) : 3, argc > 2 ? atoi(argv[2]) : 128);
  if (!s.ok()) { std::fprintf(stderr, "%s\n", s.ToString().c_str()); return 1; }
}
