// Drives a benchmark's requests against a cluster's InferenceService.Generate: each request is
// sent at its arrival time (or later, while `max_concurrency` are in flight), its stream read
// asynchronously (gRPC's callback API, so thousands of concurrent streams need no thread each),
// and what it measured (tools/bench_stats.h: TTFT, ITLs, e2e, tokens, status) recorded.
//
//   BenchClientOptions options;
//   options.server = "127.0.0.1:7000";
//   options.max_concurrency = 64;
//   BenchClient client(options);
//   double duration_s = 0;
//   std::vector<RequestRecord> records = client.Run(requests, arrivals_s, &duration_s);
//
// Every call has a deadline (`request_timeout`), so Run always returns; as a last resort, calls
// still running a minute past their deadline are cancelled.
#ifndef SHARDSERVE_TOOLS_BENCH_CLIENT_H_
#define SHARDSERVE_TOOLS_BENCH_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "proto/shardserve/v1/inference.grpc.pb.h"
#include "tools/bench_stats.h"

namespace shardserve {

struct BenchClientOptions {
  // HOST:PORT of the coordinator.
  std::string server;
  // Requests in flight at most; 0 means unlimited.
  int max_concurrency = 0;
  // Deadline of each call, from when it is sent.
  absl::Duration request_timeout = absl::Minutes(10);
};

class BenchClient {
 public:
  explicit BenchClient(BenchClientOptions options);

  BenchClient(const BenchClient&) = delete;
  BenchClient& operator=(const BenchClient&) = delete;

  // Sends requests[i] `arrivals_s[i]` seconds after the call starts (arrivals_s is
  // non-decreasing), waits for every one to finish, and returns one record each, in order.
  // `*duration_s`: from the start to the last request's end. RequestRecord::prompt_tokens is the
  // number of token ids the request carries. Blocks the calling thread.
  // REQUIRES: requests.size() == arrivals_s.size().
  std::vector<RequestRecord> Run(const std::vector<v1::GenerateRequest>& requests,
                                 const std::vector<double>& arrivals_s, double* duration_s);

 private:
  const BenchClientOptions options_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_TOOLS_BENCH_CLIENT_H_
