#include "coordinator/test_generate_stream.h"

#include <chrono>
#include <memory>

namespace shardserve {

std::string GenerateStream::text() const {
  std::string t;
  for (const v1::GenerateResponse& r : responses) t += r.text();
  return t;
}

std::vector<int32_t> GenerateStream::tokens() const {
  std::vector<int32_t> ids;
  for (const v1::GenerateResponse& r : responses) {
    ids.insert(ids.end(), r.token_ids().begin(), r.token_ids().end());
  }
  return ids;
}

GenerateStream CollectGenerate(v1::InferenceService::Stub* stub, const v1::GenerateRequest& request,
                               grpc::ClientContext* context) {
  grpc::ClientContext own;
  if (context == nullptr) {
    context = &own;
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  }
  GenerateStream result;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub->Generate(context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) result.responses.push_back(response);
  result.status = reader->Finish();
  return result;
}

}  // namespace shardserve
