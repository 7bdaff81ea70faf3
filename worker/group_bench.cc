// Tensor-parallel decode against single-process decode on the same cores.
//
// Alternating rounds, in one process:
//   TP=1: Engine with a 2-thread pool;
//   TP=2: a GroupEngine of 2 ranks on 2 threads of this process, each with a 1-thread pool,
//         ShmCommunicator for both the tensor-parallel and the control communicator, each
//         wrapped in a TimedCommunicator.
// Both greedily decode --decode_tokens tokens at batch 1 after the same short prompt. Prints
// decode tokens/s (median over rounds), the TP2/TP1 ratio, the time the TP=2 ranks spend in
// collectives per decode step, and whether both produced the same tokens.
//
//   bazel build -c opt //worker:group_bench && bazel-bin/worker/group_bench --rounds=3
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/thread_pool.h"
#include "model/model_bundle.h"
#include "model/model_resolver.h"
#include "model/shard_spec.h"
#include "nlohmann/json.hpp"
#include "worker/comm/shm_communicator.h"
#include "worker/engine.h"
#include "worker/group_engine.h"
#include "worker/timed_communicator.h"

ABSL_FLAG(std::string, model, shardserve::kDefaultModelName, "model path or known name");
ABSL_FLAG(int32_t, decode_tokens, 128, "tokens decoded per round after the first one");
ABSL_FLAG(int32_t, rounds, 3, "rounds; each runs TP=1 then TP=2");
ABSL_FLAG(bool, json, false, "print one JSON object instead of tables");

namespace shardserve {
namespace {

constexpr int kPromptTokens = 8;
// A top-2 logit gap below this is inside the noise sharding adds to SmolLM2's re-quantized
// activations (tests/conformance/parallel_test.cc uses the same bound): either token is right.
constexpr double kNearTieGap = 0.5;
// Cores the two configurations share: TP=1 gets a pool of this many threads, TP=2 this many
// ranks of one thread each.
constexpr int kCores = 2;

using Timings = std::array<CollectiveTiming, kNumCollectiveKinds>;

Timings Snapshot(const TimedCommunicator& comm) {
  Timings t;
  for (int k = 0; k < kNumCollectiveKinds; ++k) t[k] = comm.timing(static_cast<CollectiveKind>(k));
  return t;
}

double Seconds(const Timings& t, CollectiveKind kind) { return t[static_cast<int>(kind)].seconds; }
int64_t Calls(const Timings& t, CollectiveKind kind) { return t[static_cast<int>(kind)].calls; }
double TotalSeconds(const Timings& t) {
  double s = 0;
  for (const CollectiveTiming& c : t) s += c.seconds;
  return s;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

SamplingParams Greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.ignore_eos = true;
  p.max_tokens = max_tokens;
  return p;
}

struct DecodeRun {
  std::vector<int32_t> tokens;
  double decode_seconds = 0;
  // TP=2 only: collectives issued during the decode steps (after the first token).
  Timings leader_tp{}, leader_control{}, follower_tp{}, follower_control{};
};

absl::StatusOr<DecodeRun> RunTp1(const WeightSource* weights, const std::vector<int32_t>& prompt,
                                 const SamplingParams& params) {
  EngineOptions options;
  options.num_threads = kCores;
  ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(weights, options));
  ASSIGN_OR_RETURN(GenerationResult r,
                   engine->Generate(prompt, params, [](int32_t) { return true; }));
  DecodeRun run;
  run.tokens = std::move(r.token_ids);
  run.decode_seconds = r.decode_seconds;
  return run;
}

// The communicators and engine of one TP=2 rank. Built on the rank's own thread: a
// ShmCommunicator's Create waits for every rank to join.
struct Rank {
  std::unique_ptr<ShmCommunicator> tp_shm, control_shm;
  std::unique_ptr<TimedCommunicator> tp, control;
  std::unique_ptr<GroupEngine> engine;
};

absl::Status SetUpRank(const WeightSource* weights, const std::string& group_id, int tp_rank,
                       Rank* rank) {
  ParallelLayout layout;
  layout.tp_size = kCores;
  ASSIGN_OR_RETURN(ShardSpec shard, MakeShardSpec(weights->config(), layout, tp_rank, 0));
  ShmOptions shm;
  ASSIGN_OR_RETURN(rank->tp_shm,
                   ShmCommunicator::Create(group_id + "-tp", tp_rank, layout.tp_size, shm));
  ASSIGN_OR_RETURN(rank->control_shm,
                   ShmCommunicator::Create(group_id + "-ctl", tp_rank, layout.tp_size, shm));
  rank->tp = std::make_unique<TimedCommunicator>(rank->tp_shm.get());
  rank->control = std::make_unique<TimedCommunicator>(rank->control_shm.get());
  GroupComms comms;
  comms.control = rank->control.get();
  comms.decoder.tp = rank->tp.get();
  EngineOptions options;
  options.num_threads = 1;
  ASSIGN_OR_RETURN(rank->engine, GroupEngine::Create(weights, shard, comms, options));
  return absl::OkStatus();
}

absl::StatusOr<DecodeRun> RunTp2(const WeightSource* weights, const std::vector<int32_t>& prompt,
                                 const SamplingParams& params, int round) {
  const std::string group_id = absl::StrCat("group-bench-", getpid(), "-", round);
  // Plans the follower runs before the decode: the prefill chunks of the prompt.
  const int64_t prefill_plans =
      (static_cast<int64_t>(prompt.size()) + EngineOptions{}.max_num_batched_tokens - 1) /
      EngineOptions{}.max_num_batched_tokens;
  DecodeRun run;
  Rank follower;
  absl::Status follower_status;
  std::thread follower_thread([&] {
    follower_status = SetUpRank(weights, group_id, 1, &follower);
    if (!follower_status.ok()) return;
    int64_t plans = 0;
    // Called after each plan has run: zero the counters after the prefill, and keep what the
    // decode steps used before the STOP plan's broadcast adds to them.
    follower_status = follower.engine->ServeFollower([&] {
      if (++plans == prefill_plans) {
        follower.tp->Reset();
        follower.control->Reset();
      }
      run.follower_tp = Snapshot(*follower.tp);
      run.follower_control = Snapshot(*follower.control);
      return false;
    });
  });
  Rank leader;
  absl::Status status = SetUpRank(weights, group_id, 0, &leader);
  if (status.ok()) {
    int64_t sampled = 0;
    // Runs on this thread, the one issuing the leader's collectives, after each token.
    absl::StatusOr<GenerationResult> r = leader.engine->Generate(prompt, params, [&](int32_t) {
      if (++sampled == 1) {
        leader.tp->Reset();
        leader.control->Reset();
      }
      run.leader_tp = Snapshot(*leader.tp);
      run.leader_control = Snapshot(*leader.control);
      return true;
    });
    if (r.ok()) {
      run.tokens = std::move(r->token_ids);
      run.decode_seconds = r->decode_seconds;
    } else {
      status = r.status();
    }
    // Stop even after a failure so the follower leaves ServeFollower; it then returns the
    // broken group's error, bounded by the communicators' timeout.
    leader.engine->Stop().IgnoreError();
  }
  follower_thread.join();
  RETURN_IF_ERROR(status);
  if (!follower_status.ok()) {
    return absl::Status(follower_status.code(),
                        absl::StrCat("TP=2 rank 1: ", follower_status.message()));
  }
  return run;
}

// When greedy tokens differ, the logprob (= logit) gap between TP=1's two best candidates at
// the first difference.
absl::StatusOr<double> TopTwoGap(const WeightSource* weights, const std::vector<int32_t>& prompt,
                                 int index) {
  EngineOptions options;
  options.num_threads = kCores;
  ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(weights, options));
  SamplingParams params = Greedy(index + 1);
  params.logprobs = 2;
  ASSIGN_OR_RETURN(GenerationResult r,
                   engine->Generate(prompt, params, [](int32_t) { return true; }));
  const std::vector<TokenLogprob>& top = r.samples.at(index).top_logprobs;
  if (top.size() < 2) return absl::InternalError("fewer than 2 top logprobs");
  return static_cast<double>(top[0].logprob - top[1].logprob);
}

int FirstDifference(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return static_cast<int>(i);
  }
  return a.size() == b.size() ? -1 : static_cast<int>(n);
}

absl::Status Bench() {
  const int decode_n = std::max(1, absl::GetFlag(FLAGS_decode_tokens));
  const int rounds = std::max(1, absl::GetFlag(FLAGS_rounds));
  ASSIGN_OR_RETURN(std::string path, ResolveModel(absl::GetFlag(FLAGS_model)));
  ASSIGN_OR_RETURN(ModelBundle model, LoadModelBundle(path));
  RETURN_IF_ERROR(ValidateLayout(model.weights->config(), ParallelLayout{kCores, 1, 1}));

  // The text bench-engine uses, cut to a short prompt.
  std::vector<int32_t> prompt = model.tokenizer->Encode(
      "The history of the city begins with a small settlement on the river, where traders "
      "exchanged grain, salt and wool. Over the centuries it grew into a busy port. ",
      /*add_special_tokens=*/false);
  if (static_cast<int>(prompt.size()) < kPromptTokens) {
    return absl::InternalError("the prompt text encodes to too few tokens");
  }
  prompt.resize(kPromptTokens);
  // The first token comes from the prefill; decode_seconds covers the decode_n after it.
  const SamplingParams params = Greedy(decode_n + 1);

  std::vector<double> tp1_tps, tp2_tps, ratios;
  std::vector<double> step_ms, all_reduce_ms, all_gather_ms, broadcast_ms, leader_coll_ms,
      follower_coll_ms, all_reduce_calls;
  std::vector<bool> same;
  nlohmann::json leader_calls;  // calls per decode step by kind and communicator, last round
  int mismatch_round = -1, mismatch_index = -1;
  for (int round = 0; round < rounds; ++round) {
    ASSIGN_OR_RETURN(DecodeRun tp1, RunTp1(model.weights.get(), prompt, params));
    ASSIGN_OR_RETURN(DecodeRun tp2, RunTp2(model.weights.get(), prompt, params, round));
    tp1_tps.push_back(decode_n / tp1.decode_seconds);
    tp2_tps.push_back(decode_n / tp2.decode_seconds);
    ratios.push_back(tp2_tps.back() / tp1_tps.back());
    const double per_step = 1e3 / decode_n;
    step_ms.push_back(tp2.decode_seconds * per_step);
    all_reduce_ms.push_back(Seconds(tp2.leader_tp, CollectiveKind::kAllReduceSum) * per_step);
    all_reduce_calls.push_back(
        static_cast<double>(Calls(tp2.leader_tp, CollectiveKind::kAllReduceSum)) / decode_n);
    all_gather_ms.push_back(Seconds(tp2.leader_tp, CollectiveKind::kAllGather) * per_step);
    broadcast_ms.push_back(Seconds(tp2.leader_control, CollectiveKind::kBroadcast) * per_step);
    leader_coll_ms.push_back((TotalSeconds(tp2.leader_tp) + TotalSeconds(tp2.leader_control)) *
                             per_step);
    follower_coll_ms.push_back(
        (TotalSeconds(tp2.follower_tp) + TotalSeconds(tp2.follower_control)) * per_step);
    if (round == rounds - 1) {
      for (int k = 0; k < kNumCollectiveKinds; ++k) {
        const std::string name = CollectiveKindName(static_cast<CollectiveKind>(k));
        leader_calls[name + "_tp"] = static_cast<double>(tp2.leader_tp[k].calls) / decode_n;
        leader_calls[name + "_control"] =
            static_cast<double>(tp2.leader_control[k].calls) / decode_n;
      }
    }
    const int diff = FirstDifference(tp1.tokens, tp2.tokens);
    same.push_back(diff < 0);
    if (diff >= 0 && mismatch_round < 0) {
      mismatch_round = round;
      mismatch_index = diff;
    }
  }
  double gap = -1;
  if (mismatch_round >= 0 && mismatch_index < decode_n + 1) {
    ASSIGN_OR_RETURN(gap, TopTwoGap(model.weights.get(), prompt, mismatch_index));
  }

  const double tp1_med = Median(tp1_tps), tp2_med = Median(tp2_tps);
  const double step = Median(step_ms);
  auto share = [&](double ms) { return 100.0 * ms / step; };
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json out;
    out["model"] = path;
    out["cpus"] = ThreadPool::DefaultThreads();
    out["decode_tokens"] = decode_n;
    out["prompt_tokens"] = kPromptTokens;
    out["rounds"] = rounds;
    out["tp1_decode_tokens_per_s"] = tp1_tps;
    out["tp2_decode_tokens_per_s"] = tp2_tps;
    out["tp1_median"] = tp1_med;
    out["tp2_median"] = tp2_med;
    out["ratio_tp2_tp1"] = tp2_med / tp1_med;
    out["tp2_step_ms"] = step;
    out["leader_all_reduce_ms_per_step"] = Median(all_reduce_ms);
    out["leader_all_reduce_calls_per_step"] = Median(all_reduce_calls);
    out["leader_all_gather_ms_per_step"] = Median(all_gather_ms);
    out["leader_broadcast_ms_per_step"] = Median(broadcast_ms);
    out["leader_collectives_ms_per_step"] = Median(leader_coll_ms);
    out["follower_collectives_ms_per_step"] = Median(follower_coll_ms);
    out["leader_outside_collectives_ms_per_step"] = step - Median(leader_coll_ms);
    out["follower_outside_collectives_ms_per_step"] = step - Median(follower_coll_ms);
    out["leader_calls_per_step"] = leader_calls;
    out["same_tokens"] = same;
    if (gap >= 0) out["first_difference_top2_logprob_gap"] = gap;
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("model %s, %d CPUs, prompt %d tokens, greedy decode of %d tokens, %d rounds\n",
                path.c_str(), ThreadPool::DefaultThreads(), kPromptTokens, decode_n, rounds);
    std::printf("TP=1: Engine, %d-thread pool.  TP=2: %d ranks x 1 thread, shm communicators\n\n",
                kCores, kCores);
    std::printf("%-7s %12s %12s %8s  %s\n", "round", "TP1 tok/s", "TP2 tok/s", "TP2/TP1",
                "same tokens");
    for (int r = 0; r < rounds; ++r) {
      std::printf("%-7d %12.1f %12.1f %8.3f  %s\n", r + 1, tp1_tps[r], tp2_tps[r], ratios[r],
                  same[r] ? "yes" : "NO");
    }
    std::printf("%-7s %12.1f %12.1f %8.3f\n\n", "median", tp1_med, tp2_med, tp2_med / tp1_med);
    std::printf("TP=2 per decode step (medians): %.3f ms\n", step);
    std::printf("%-34s %10s %8s\n", "leader collective", "ms/step", "share");
    std::printf("%-34s %10.3f %7.1f%%\n",
                absl::StrCat("all-reduce (", Median(all_reduce_calls), " per step)").c_str(),
                Median(all_reduce_ms), share(Median(all_reduce_ms)));
    std::printf("%-34s %10.3f %7.1f%%\n", "all-gather of logits", Median(all_gather_ms),
                share(Median(all_gather_ms)));
    std::printf("%-34s %10.3f %7.1f%%\n", "broadcast of step plans", Median(broadcast_ms),
                share(Median(broadcast_ms)));
    std::printf("%-34s %10.3f %7.1f%%\n", "leader total", Median(leader_coll_ms),
                share(Median(leader_coll_ms)));
    std::printf("%-34s %10.3f %7.1f%%\n", "follower total", Median(follower_coll_ms),
                share(Median(follower_coll_ms)));
    // Outside collectives a rank computes (the leader also plans and samples); the faster rank
    // spends the difference waiting inside its next collective.
    std::printf("%-34s %10.3f %7.1f%%\n", "leader outside collectives",
                step - Median(leader_coll_ms), share(step - Median(leader_coll_ms)));
    std::printf("%-34s %10.3f %7.1f%%\n", "follower outside collectives",
                step - Median(follower_coll_ms), share(step - Median(follower_coll_ms)));
  }
  if (mismatch_round >= 0) {
    std::fprintf(stderr,
                 "warning: round %d: TP=2 tokens differ from TP=1 from generated token index %d "
                 "on; TP=1's top-2 logit gap there is %.4f, %s\n",
                 mismatch_round + 1, mismatch_index, gap,
                 gap >= 0 && gap < kNearTieGap ? "a near-tie (either token is legitimate)"
                                               : "NOT a near-tie: check the sharded decoder");
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace shardserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::Status status = shardserve::Bench();
  if (!status.ok()) {
    std::fprintf(stderr, "group_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
