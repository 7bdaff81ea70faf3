#include "tools/bench_command.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "proto/shardserve/v1/inference.grpc.pb.h"
#include "tools/bench_client.h"
#include "tools/bench_stats.h"
#include "tools/cli_flags.h"

ABSL_FLAG(int32_t, num_prompts, 100, "bench: requests to measure");
ABSL_FLAG(std::string, request_rate, "inf",
          "bench: mean arrivals per second of a Poisson process, or inf to send every request at "
          "once");
ABSL_FLAG(int32_t, max_concurrency, 0, "bench: requests in flight at most; 0 means no limit");
ABSL_FLAG(double, slo_ttft_ms, 0, "bench: TTFT objective for goodput in ms; 0 means none");
ABSL_FLAG(double, slo_tpot_ms, 0, "bench: TPOT objective for goodput in ms; 0 means none");
ABSL_FLAG(int32_t, warmup, 1, "bench: unmeasured requests sent (all at once) before the run");
ABSL_FLAG(absl::Duration, request_timeout, absl::Minutes(10), "bench: deadline of each request");

// Prompt and output tokens per request; shared with bench-engine, which defines them.
ABSL_DECLARE_FLAG(int32_t, input_len);
ABSL_DECLARE_FLAG(int32_t, output_len);

namespace shardserve {
namespace {

// Ids below this are where tokenizers keep their special and control tokens.
constexpr int32_t kFirstPromptTokenId = 100;
constexpr absl::Duration kListModelsTimeout = absl::Seconds(30);

struct BenchConfig {
  std::string server;
  int num_prompts = 0;
  double request_rate = 0;
  int max_concurrency = 0;
  int input_len = 0;
  int output_len = 0;
  int warmup = 0;
  uint64_t seed = 0;
  absl::Duration request_timeout;
  SloOptions slo;
};

absl::StatusOr<BenchConfig> ConfigFromFlags() {
  BenchConfig c;
  c.server = absl::GetFlag(FLAGS_server);
  c.num_prompts = absl::GetFlag(FLAGS_num_prompts);
  c.max_concurrency = absl::GetFlag(FLAGS_max_concurrency);
  c.input_len = absl::GetFlag(FLAGS_input_len);
  c.output_len = absl::GetFlag(FLAGS_output_len);
  c.warmup = absl::GetFlag(FLAGS_warmup);
  c.request_timeout = absl::GetFlag(FLAGS_request_timeout);
  const int64_t seed = absl::GetFlag(FLAGS_seed);
  c.seed = seed >= 0 ? static_cast<uint64_t>(seed) : 0;  // reproducible unless asked otherwise
  const std::string rate = absl::GetFlag(FLAGS_request_rate);
  if (!absl::SimpleAtod(rate, &c.request_rate) || std::isnan(c.request_rate) ||
      c.request_rate <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--request_rate must be a positive number or inf, got '", rate, "'"));
  }
  if (c.num_prompts < 1) return absl::InvalidArgumentError("--num_prompts must be at least 1");
  if (c.max_concurrency < 0) return absl::InvalidArgumentError("--max_concurrency must be >= 0");
  if (c.input_len < 1) return absl::InvalidArgumentError("--input_len must be at least 1");
  if (c.output_len < 1) return absl::InvalidArgumentError("--output_len must be at least 1");
  if (c.warmup < 0) return absl::InvalidArgumentError("--warmup must be >= 0");
  if (c.request_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--request_timeout must be positive");
  }
  if (absl::GetFlag(FLAGS_slo_ttft_ms) > 0) c.slo.ttft_ms = absl::GetFlag(FLAGS_slo_ttft_ms);
  if (absl::GetFlag(FLAGS_slo_tpot_ms) > 0) c.slo.tpot_ms = absl::GetFlag(FLAGS_slo_tpot_ms);
  return c;
}

std::string CodeName(const grpc::Status& status) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
}

absl::StatusOr<v1::ModelCard> ServedModel(const std::string& server) {
  auto stub = v1::InferenceService::NewStub(
      grpc::CreateChannel(server, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kListModelsTimeout));
  v1::ListModelsResponse reply;
  const grpc::Status status = stub->ListModels(&context, v1::ListModelsRequest(), &reply);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "ListModels on ", server, " failed: ", CodeName(status), ": ", status.error_message()));
  }
  if (reply.models_size() == 0) {
    return absl::FailedPreconditionError(absl::StrCat(server, " serves no model"));
  }
  return reply.models(0);
}

// `n` requests of exactly `input_len` token ids in [lo, hi), greedy, `output_len` tokens each.
std::vector<v1::GenerateRequest> MakeRequests(int n, const BenchConfig& c, int32_t lo, int32_t hi,
                                              const std::string& id_prefix, std::mt19937_64* rng) {
  std::vector<v1::GenerateRequest> requests(n);
  for (int i = 0; i < n; ++i) {
    v1::GenerateRequest& r = requests[i];
    r.set_request_id(absl::StrCat(id_prefix, i));
    for (int t = 0; t < c.input_len; ++t) {
      r.mutable_token_ids()->add_ids(lo + static_cast<int32_t>((*rng)() % (hi - lo)));
    }
    v1::SamplingParams* p = r.mutable_params();
    p->set_temperature(0);
    p->set_max_tokens(c.output_len);
    p->set_ignore_eos(true);
  }
  return requests;
}

std::string FailureCounts(const BenchSummary& s) {
  std::string out;
  for (const auto& [code, count] : s.failures_by_code) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", code, " ", count);
  }
  return out;
}

std::string RenderTable(const BenchConfig& c, const BenchSummary& s) {
  std::string out;
  auto line = [&out](const std::string& name, const std::string& value) {
    absl::StrAppend(&out, absl::StrFormat("%-40s%s\n", name, value));
  };
  auto number = [](double v) { return absl::StrFormat("%.2f", v); };
  auto section = [&out](const std::string& title) {
    const int pad = std::max(0, 50 - static_cast<int>(title.size()));
    absl::StrAppend(&out, std::string(pad / 2, '-'), title, std::string(pad - pad / 2, '-'), "\n");
  };
  auto latency = [&](const std::string& name, const LatencyStats& l) {
    line(absl::StrCat("Mean ", name, " (ms):"), number(l.mean_ms));
    line(absl::StrCat("P50 ", name, " (ms):"), number(l.p50_ms));
    line(absl::StrCat("P99 ", name, " (ms):"), number(l.p99_ms));
  };
  absl::StrAppend(&out, "============ Serving Benchmark Result ============\n");
  line("Successful requests:", absl::StrCat(s.successful));
  line("Failed requests:",
       s.failed == 0 ? "0" : absl::StrCat(s.failed, " (", FailureCounts(s), ")"));
  line("Request rate (req/s):", std::isinf(c.request_rate) ? "inf" : number(c.request_rate));
  line("Max concurrency:", c.max_concurrency > 0 ? absl::StrCat(c.max_concurrency) : "unlimited");
  line("Benchmark duration (s):", number(s.duration_s));
  line("Total input tokens:", absl::StrCat(s.total_input_tokens));
  line("Total generated tokens:", absl::StrCat(s.total_output_tokens));
  line("Request throughput (req/s):", number(s.request_throughput));
  line("Output token throughput (tok/s):", number(s.output_throughput));
  line("Total token throughput (tok/s):", number(s.total_token_throughput));
  line("Request goodput (req/s):", number(s.goodput));
  section("Time to First Token");
  latency("TTFT", s.ttft);
  section("Time per Output Token (excl. 1st token)");
  latency("TPOT", s.tpot);
  section("Inter-token Latency");
  latency("ITL", s.itl);
  section("End-to-end Latency");
  latency("E2E", s.e2e);
  absl::StrAppend(&out, std::string(50, '='), "\n");
  return out;
}

nlohmann::json RenderJson(const BenchConfig& c, const BenchSummary& s) {
  nlohmann::json out;
  out["server"] = c.server;
  out["num_prompts"] = c.num_prompts;
  out["request_rate"] =
      std::isinf(c.request_rate) ? nlohmann::json("inf") : nlohmann::json(c.request_rate);
  out["max_concurrency"] = c.max_concurrency;
  out["input_len"] = c.input_len;
  out["output_len"] = c.output_len;
  out["seed"] = c.seed;
  out["slo_ttft_ms"] = c.slo.ttft_ms.has_value() ? nlohmann::json(*c.slo.ttft_ms) : nullptr;
  out["slo_tpot_ms"] = c.slo.tpot_ms.has_value() ? nlohmann::json(*c.slo.tpot_ms) : nullptr;
  out["successful_requests"] = s.successful;
  out["failed_requests"] = s.failed;
  out["failures_by_code"] = s.failures_by_code;
  out["duration_s"] = s.duration_s;
  out["total_input_tokens"] = s.total_input_tokens;
  out["total_output_tokens"] = s.total_output_tokens;
  out["request_throughput"] = s.request_throughput;
  out["output_throughput"] = s.output_throughput;
  out["total_token_throughput"] = s.total_token_throughput;
  out["goodput"] = s.goodput;
  out["good_requests"] = s.good_requests;
  for (const auto& [name, l] : {std::pair<const char*, const LatencyStats*>{"ttft", &s.ttft},
                                {"tpot", &s.tpot},
                                {"itl", &s.itl},
                                {"e2e", &s.e2e}}) {
    out[absl::StrCat("mean_", name, "_ms")] = l->mean_ms;
    out[absl::StrCat("p50_", name, "_ms")] = l->p50_ms;
    out[absl::StrCat("p99_", name, "_ms")] = l->p99_ms;
  }
  return out;
}

const RequestRecord* FirstFailure(const std::vector<RequestRecord>& records) {
  for (const RequestRecord& r : records) {
    if (!r.success) return &r;
  }
  return nullptr;
}

int Bench() {
  absl::StatusOr<BenchConfig> config = ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "shardserve bench: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  const BenchConfig& c = *config;
  absl::StatusOr<v1::ModelCard> model = ServedModel(c.server);
  if (!model.ok()) {
    std::fprintf(stderr, "shardserve bench: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  if (model->max_model_len() > 0 && c.input_len + c.output_len > model->max_model_len()) {
    std::fprintf(stderr,
                 "shardserve bench: --input_len + --output_len = %d exceeds %s's context of %d "
                 "tokens\n",
                 c.input_len + c.output_len, model->name().c_str(), model->max_model_len());
    return 2;
  }
  const int32_t vocab = model->vocab_size();
  if (vocab < 1) {
    std::fprintf(stderr, "shardserve bench: the server reports no vocabulary size\n");
    return 1;
  }
  const int32_t lo = vocab > 2 * kFirstPromptTokenId ? kFirstPromptTokenId : 0;
  std::mt19937_64 rng(c.seed);
  BenchClientOptions options;
  options.server = c.server;
  options.max_concurrency = c.max_concurrency;
  options.request_timeout = c.request_timeout;
  BenchClient client(options);

  std::fprintf(stderr,
               "shardserve bench: %s on %s: %d prompts of %d tokens, %d output tokens each, "
               "rate %s, max concurrency %d, seed %llu\n",
               model->name().c_str(), c.server.c_str(), c.num_prompts, c.input_len, c.output_len,
               absl::GetFlag(FLAGS_request_rate).c_str(), c.max_concurrency,
               static_cast<unsigned long long>(c.seed));
  if (c.warmup > 0) {
    std::vector<v1::GenerateRequest> warmup = MakeRequests(c.warmup, c, lo, vocab, "warmup-", &rng);
    double unused = 0;
    const std::vector<RequestRecord> records =
        client.Run(warmup, std::vector<double>(warmup.size(), 0.0), &unused);
    const RequestRecord* failure = FirstFailure(records);
    if (failure != nullptr && Summarize(records, unused, SloOptions()).successful == 0) {
      std::fprintf(stderr, "shardserve bench: every warmup request failed, e.g. %s: %s\n",
                   failure->error_code.c_str(), failure->error_message.c_str());
      return 1;
    }
  }

  const std::vector<v1::GenerateRequest> requests =
      MakeRequests(c.num_prompts, c, lo, vocab, "bench-", &rng);
  const std::vector<double> arrivals = PoissonArrivals(c.num_prompts, c.request_rate, c.seed);
  double duration_s = 0;
  const std::vector<RequestRecord> records = client.Run(requests, arrivals, &duration_s);
  const BenchSummary summary = Summarize(records, duration_s, c.slo);
  if (const RequestRecord* failure = FirstFailure(records)) {
    std::fprintf(stderr, "shardserve bench: %lld requests failed; the first: %s: %s\n",
                 static_cast<long long>(summary.failed), failure->error_code.c_str(),
                 failure->error_message.c_str());
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", RenderJson(c, summary).dump(2).c_str());
  } else {
    std::fputs(RenderTable(c, summary).c_str(), stdout);
  }
  std::fflush(stdout);
  return summary.successful > 0 ? 0 : 1;
}

}  // namespace

int BenchCommand() { return Bench(); }

}  // namespace shardserve
