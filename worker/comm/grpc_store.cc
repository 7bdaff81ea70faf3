#include "worker/comm/grpc_store.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gloo/common/error.h"
#include "grpcpp/client_context.h"

namespace shardserve {

namespace {

// The one place where this client's grpc::Status becomes an absl::Status.
absl::Status FromGrpc(const grpc::Status& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("rendezvous store ", what, ": ", status.error_message()));
}

// Gloo's side of the boundary: it expects exceptions, not statuses.
[[noreturn]] void Throw(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kInvalidArgument ||
      status.code() == absl::StatusCode::kResourceExhausted) {
    throw gloo::InvalidOperationException(status.ToString());
  }
  throw gloo::IoException(status.ToString());
}

int64_t ToMillis(absl::Duration d) {
  return absl::ToInt64Milliseconds(std::max(d, absl::ZeroDuration()));
}

}  // namespace

GrpcStore::GrpcStore(std::shared_ptr<grpc::Channel> channel, Options options)
    : stub_(v1::StoreService::NewStub(std::move(channel))), options_(std::move(options)) {}

std::unique_ptr<grpc::ClientContext> GrpcStore::MakeContext(absl::Duration wait) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + std::max(wait, absl::ZeroDuration()) +
                                           options_.rpc_timeout));
  // Rendezvous happens while peers are still starting: ride out a coordinator that is not yet
  // listening instead of failing the first RPC.
  context->set_wait_for_ready(true);
  return context;
}

absl::Status GrpcStore::Set(absl::string_view key, absl::string_view value) {
  v1::SetRequest request;
  request.set_key(absl::StrCat(options_.prefix, key));
  request.set_value(std::string(value));
  v1::SetReply reply;
  auto context = MakeContext(absl::ZeroDuration());
  return FromGrpc(stub_->Set(context.get(), request, &reply), absl::StrCat("set '", key, "'"));
}

absl::StatusOr<std::string> GrpcStore::Get(absl::string_view key, absl::Duration wait) {
  v1::GetRequest request;
  request.set_key(absl::StrCat(options_.prefix, key));
  request.set_timeout_ms(ToMillis(wait));
  v1::GetReply reply;
  auto context = MakeContext(wait);
  absl::Status status =
      FromGrpc(stub_->Get(context.get(), request, &reply), absl::StrCat("get '", key, "'"));
  if (!status.ok()) return status;
  return std::move(*reply.mutable_value());
}

absl::Status GrpcStore::Wait(const std::vector<std::string>& keys, absl::Duration wait) {
  v1::WaitRequest request;
  for (const std::string& key : keys) request.add_keys(absl::StrCat(options_.prefix, key));
  request.set_timeout_ms(ToMillis(wait));
  v1::WaitReply reply;
  auto context = MakeContext(wait);
  return FromGrpc(stub_->Wait(context.get(), request, &reply),
                  absl::StrCat("wait for ", keys.size(), " keys"));
}

absl::StatusOr<int64_t> GrpcStore::Add(absl::string_view key, int64_t delta) {
  v1::AddRequest request;
  request.set_key(absl::StrCat(options_.prefix, key));
  request.set_delta(delta);
  v1::AddReply reply;
  auto context = MakeContext(absl::ZeroDuration());
  absl::Status status =
      FromGrpc(stub_->Add(context.get(), request, &reply), absl::StrCat("add '", key, "'"));
  if (!status.ok()) return status;
  return reply.value();
}

void GrpcStore::set(const std::string& key, const std::vector<char>& data) {
  absl::Status status = Set(key, absl::string_view(data.data(), data.size()));
  if (!status.ok()) Throw(status);
}

std::vector<char> GrpcStore::get(const std::string& key) {
  absl::StatusOr<std::string> value = Get(key, options_.default_wait);
  if (!value.ok()) Throw(value.status());
  return std::vector<char>(value->begin(), value->end());
}

void GrpcStore::wait(const std::vector<std::string>& keys) {
  absl::Status status = Wait(keys, options_.default_wait);
  if (!status.ok()) Throw(status);
}

void GrpcStore::wait(const std::vector<std::string>& keys,
                     const std::chrono::milliseconds& timeout) {
  // Gloo passes kNoTimeout (zero) to mean "no limit": use our default rather than spin once.
  absl::Duration wait =
      timeout == gloo::kNoTimeout ? options_.default_wait : absl::FromChrono(timeout);
  absl::Status status = Wait(keys, wait);
  if (!status.ok()) Throw(status);
}

}  // namespace shardserve
