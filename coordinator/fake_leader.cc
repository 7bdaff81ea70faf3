#include "coordinator/fake_leader.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace shardserve {
namespace {

constexpr absl::Duration kGiveUp = absl::Seconds(30);

}  // namespace

FakeLeader::~FakeLeader() { Shutdown(); }

int FakeLeader::Start() {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  return server_ == nullptr ? 0 : port;
}

void FakeLeader::Shutdown() {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

void FakeLeader::SetScript(Script script) {
  absl::MutexLock lock(&mu_);
  script_ = std::move(script);
}

void FakeLeader::PushScript(Script script) {
  absl::MutexLock lock(&mu_);
  pushed_.push_back(std::move(script));
}

void FakeLeader::SetLoad(v1::GetLoadReply load) {
  absl::MutexLock lock(&mu_);
  load_ = std::move(load);
}

void FakeLeader::SetGetLoadHangs(bool hangs) {
  absl::MutexLock lock(&mu_);
  load_hangs_ = hangs;
}

grpc::Status FakeLeader::Generate(grpc::ServerContext* context,
                                  const v1::GenerateOnGroupRequest* request,
                                  grpc::ServerWriter<v1::GenerateOnGroupResponse>* writer) {
  Script script;
  {
    absl::MutexLock lock(&mu_);
    if (pushed_.empty()) {
      script = script_;
    } else {
      script = std::move(pushed_.front());
      pushed_.pop_front();
    }
    requests_.push_back(*request);
  }
  bool write_failed = false;
  for (size_t i = 0; i < script.tokens.size() && !write_failed; ++i) {
    v1::GenerateOnGroupResponse response;
    response.set_token_id(script.tokens[i]);
    if (i == 0) {
      response.set_prompt_tokens(request->prompt_token_ids_size());
      response.set_cached_tokens(script.cached_tokens);
    }
    if (request->has_logprobs()) {
      response.set_logprob(-0.25f * (i + 1));
      for (int k = 0; k < request->logprobs(); ++k) {
        v1::WorkerTopLogprob* top = response.add_top_logprobs();
        top->set_token_id(script.tokens[i] + k);
        top->set_logprob(-0.25f * (i + 1) - k);
      }
    }
    if (i + 1 == script.tokens.size() && !script.block && script.error.ok()) {
      response.set_finish_reason(script.finish_reason);
    }
    write_failed = !writer->Write(response);
  }
  if (!script.error.ok()) {
    if (!script.error_names_prefill_group) return script.error;
    return grpc::Status(script.error.error_code(),
                        absl::StrCat("prefill group ", request->remote_prefill().group_id(), ": ",
                                     script.error.error_message()));
  }
  if (script.block) {
    const absl::Time give_up = absl::Now() + kGiveUp;
    while (!context->IsCancelled() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(2));
  }
  if (context->IsCancelled() || write_failed) {
    absl::MutexLock lock(&mu_);
    cancel_times_.push_back(absl::Now());
    return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  }
  return grpc::Status::OK;
}

grpc::Status FakeLeader::GetLoad(grpc::ServerContext* context, const v1::GetLoadRequest* request,
                                 v1::GetLoadReply* reply) {
  absl::MutexLock lock(&mu_);
  ++num_load_calls_;
  const absl::Time give_up = absl::Now() + kGiveUp;
  while (load_hangs_ && !context->IsCancelled() && absl::Now() < give_up) {
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](bool* hangs) { return !*hangs; }, &load_hangs_),
                         absl::Milliseconds(5));
  }
  if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  *reply = load_;
  return grpc::Status::OK;
}

bool FakeLeader::WaitForCalls(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto arrived = [&] { return static_cast<int>(requests_.size()) >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout);
}

bool FakeLeader::WaitForCancellations(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto seen = [&] { return static_cast<int>(cancel_times_.size()) >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&seen), timeout);
}

bool FakeLeader::WaitForLoadCalls(int n, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto arrived = [&] { return num_load_calls_ >= n; };
  return mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout);
}

std::vector<absl::Time> FakeLeader::cancel_times() {
  absl::MutexLock lock(&mu_);
  return cancel_times_;
}

int FakeLeader::num_calls() {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(requests_.size());
}

int FakeLeader::num_load_calls() {
  absl::MutexLock lock(&mu_);
  return num_load_calls_;
}

std::vector<v1::GenerateOnGroupRequest> FakeLeader::requests() {
  absl::MutexLock lock(&mu_);
  return requests_;
}

v1::GenerateOnGroupRequest FakeLeader::last_request() {
  absl::MutexLock lock(&mu_);
  return requests_.empty() ? v1::GenerateOnGroupRequest() : requests_.back();
}

}  // namespace shardserve
