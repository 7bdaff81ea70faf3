#include "tools/bench_client.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"

namespace shardserve {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// Streams per HTTP/2 connection before another channel is opened: servers may cap concurrent
// streams per connection (often at 100), which would queue requests on the client and inflate
// their TTFT.
constexpr int kStreamsPerChannel = 64;
constexpr int kMaxChannels = 16;

// One Generate call. gRPC runs OnReadDone and OnDone on its own threads; the object must live
// until OnDone has called `on_done`, and is not touched by gRPC afterwards.
class GenerateCall final : public grpc::ClientReadReactor<v1::GenerateResponse> {
 public:
  GenerateCall(v1::InferenceService::Stub* stub, const v1::GenerateRequest& request,
               absl::Duration timeout, std::function<void(Clock::time_point)> on_done)
      : stub_(stub), request_(request), timeout_(timeout), on_done_(std::move(on_done)) {
    record_.prompt_tokens = request.token_ids().ids_size();
  }

  void Start() {
    context_.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    stub_->async()->Generate(&context_, &request_, this);
    StartRead(&response_);
    sent_ = Clock::now();
    StartCall();
  }

  // Safe from any thread while the call runs.
  void Cancel() { context_.TryCancel(); }

  // Valid once `on_done` was called.
  const RequestRecord& record() const { return record_; }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone follows
    const int n = response_.token_ids_size();
    if (n > 0) {
      const Clock::time_point now = Clock::now();
      if (record_.output_tokens == 0) {
        record_.ttft_s = SecondsBetween(sent_, now);
      } else {
        record_.itl_s.push_back(SecondsBetween(last_token_, now));
      }
      last_token_ = now;
      record_.output_tokens += n;
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    const Clock::time_point now = Clock::now();
    record_.e2e_s = SecondsBetween(sent_, now);
    if (!status.ok()) {
      record_.error_code =
          absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
      record_.error_message = status.error_message();
    } else if (record_.output_tokens == 0) {
      record_.error_code = "NO_TOKENS";
      record_.error_message = "the stream ended OK without a token";
    } else {
      record_.success = true;
    }
    // The owner may destroy this object as soon as it learns the call is done, so the callback
    // runs from a copy and is the last thing that happens here.
    std::function<void(Clock::time_point)> on_done = on_done_;
    on_done(now);
  }

 private:
  v1::InferenceService::Stub* const stub_;
  const v1::GenerateRequest request_;
  const absl::Duration timeout_;
  const std::function<void(Clock::time_point)> on_done_;
  grpc::ClientContext context_;
  v1::GenerateResponse response_;
  Clock::time_point sent_;
  Clock::time_point last_token_;
  RequestRecord record_;
};

// What the sender and the calls' callbacks share.
struct Progress {
  bool HasRoom() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return in_flight < limit; }
  bool AllDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return finished == total; }

  absl::Mutex mu;
  int limit = 0;
  int total = 0;
  int in_flight ABSL_GUARDED_BY(mu) = 0;
  int finished ABSL_GUARDED_BY(mu) = 0;
  Clock::time_point last_end ABSL_GUARDED_BY(mu);
};

}  // namespace

BenchClient::BenchClient(BenchClientOptions options) : options_(std::move(options)) {}

std::vector<RequestRecord> BenchClient::Run(const std::vector<v1::GenerateRequest>& requests,
                                            const std::vector<double>& arrivals_s,
                                            double* duration_s) {
  const int n = static_cast<int>(requests.size());
  Progress progress;
  progress.total = n;
  progress.limit = options_.max_concurrency > 0 ? std::min(options_.max_concurrency, n) : n;
  const int num_channels =
      std::clamp((progress.limit + kStreamsPerChannel - 1) / kStreamsPerChannel, 1, kMaxChannels);
  std::vector<std::unique_ptr<v1::InferenceService::Stub>> stubs;
  for (int i = 0; i < num_channels; ++i) {
    grpc::ChannelArguments args;
    // A subchannel pool per channel, so that each channel opens its own connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stubs.push_back(v1::InferenceService::NewStub(
        grpc::CreateCustomChannel(options_.server, grpc::InsecureChannelCredentials(), args)));
  }
  auto on_done = [&progress](Clock::time_point end) {
    absl::MutexLock lock(&progress.mu);
    --progress.in_flight;
    ++progress.finished;
    progress.last_end = std::max(progress.last_end, end);
  };

  std::vector<std::unique_ptr<GenerateCall>> calls;
  calls.reserve(n);
  const Clock::time_point start = Clock::now();
  {
    absl::MutexLock lock(&progress.mu);
    progress.last_end = start;
  }
  for (int i = 0; i < n; ++i) {
    const Clock::time_point due = start + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(arrivals_s[i]));
    const Clock::time_point now = Clock::now();
    if (due > now) absl::SleepFor(absl::FromChrono(due - now));
    {
      absl::MutexLock lock(&progress.mu);
      progress.mu.Await(absl::Condition(&progress, &Progress::HasRoom));
      ++progress.in_flight;
    }
    calls.push_back(std::make_unique<GenerateCall>(stubs[i % num_channels].get(), requests[i],
                                                   options_.request_timeout, on_done));
    calls.back()->Start();
  }

  // Each call ends by its deadline at the latest; the grace covers a server that ignores it.
  bool all_done = false;
  {
    absl::MutexLock lock(&progress.mu);
    all_done = progress.mu.AwaitWithTimeout(absl::Condition(&progress, &Progress::AllDone),
                                            options_.request_timeout + absl::Minutes(1));
  }
  if (!all_done) {
    // Without the lock: a cancelled call may finish (and take the lock) on this thread.
    for (const std::unique_ptr<GenerateCall>& call : calls) call->Cancel();
  }
  {
    absl::MutexLock lock(&progress.mu);
    progress.mu.Await(absl::Condition(&progress, &Progress::AllDone));
    *duration_s = SecondsBetween(start, progress.last_end);
  }
  std::vector<RequestRecord> records;
  records.reserve(n);
  for (const std::unique_ptr<GenerateCall>& call : calls) records.push_back(call->record());
  return records;
}

}  // namespace shardserve
