// A whole Generate stream read by a test client: every response and the final status.
//
//   GenerateStream s = CollectGenerate(stub.get(), request);
//   EXPECT_TRUE(s.status.ok());
//   EXPECT_EQ(s.text(), "...");
#ifndef SHARDSERVE_COORDINATOR_TEST_GENERATE_STREAM_H_
#define SHARDSERVE_COORDINATOR_TEST_GENERATE_STREAM_H_

#include <cstdint>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "proto/shardserve/v1/inference.grpc.pb.h"

namespace shardserve {

struct GenerateStream {
  std::vector<v1::GenerateResponse> responses;
  grpc::Status status;

  // The text deltas and token ids of every response, in order.
  std::string text() const;
  std::vector<int32_t> tokens() const;
  // REQUIRES: !responses.empty().
  const v1::GenerateResponse& last() const { return responses.back(); }
};

// Calls Generate on `stub` and reads the stream to its end. `context` may be null: then the call
// gets its own context with a 10 s deadline. Blocks the calling thread.
GenerateStream CollectGenerate(v1::InferenceService::Stub* stub, const v1::GenerateRequest& request,
                               grpc::ClientContext* context = nullptr);

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_TEST_GENERATE_STREAM_H_
