#include "tools/generate_command.h"

#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "proto/shardserve/v1/inference.grpc.pb.h"
#include "tools/cli_flags.h"

ABSL_FLAG(std::vector<std::string>, token_ids, {},
          "generate: prompt token ids separated by ',', sent as they are instead of --prompt");
ABSL_FLAG(std::string, request_id, "",
          "generate: names the request (for Abort and the server's logs); empty lets the server "
          "pick one");

namespace shardserve {
namespace {

constexpr absl::Duration kDefaultTimeout = absl::Minutes(10);

using Clock = std::chrono::steady_clock;

double MillisBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

void ToProto(const SamplingParams& p, v1::SamplingParams* out) {
  out->set_temperature(p.temperature);
  out->set_top_k(p.top_k);
  out->set_top_p(p.top_p);
  out->set_min_p(p.min_p);
  out->set_repetition_penalty(p.repetition_penalty);
  out->set_presence_penalty(p.presence_penalty);
  out->set_frequency_penalty(p.frequency_penalty);
  if (p.seed.has_value()) out->set_seed(*p.seed);
  out->set_max_tokens(p.max_tokens);
  out->set_min_tokens(p.min_tokens);
  out->set_ignore_eos(p.ignore_eos);
  for (const std::string& s : p.stop) out->add_stop(s);
  for (int32_t id : p.stop_token_ids) out->add_stop_token_ids(id);
  out->set_include_stop_str_in_output(p.include_stop_str_in_output);
  if (p.logprobs >= 0) out->set_logprobs(p.logprobs);
}

std::string CodeName(const grpc::Status& status) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
}

nlohmann::json LogprobsJson(const std::vector<v1::TokenLogprob>& logprobs) {
  nlohmann::json out = nlohmann::json::array();
  for (const v1::TokenLogprob& lp : logprobs) {
    nlohmann::json top = nlohmann::json::array();
    for (const v1::TopLogprob& t : lp.top()) {
      top.push_back({{"token_id", t.token_id()}, {"logprob", t.logprob()}, {"token", t.token()}});
    }
    out.push_back({{"token_id", lp.token_id()}, {"logprob", lp.logprob()}, {"top_logprobs", top}});
  }
  return out;
}

}  // namespace

absl::StatusOr<v1::GenerateRequest> GenerateRequestFromFlags() {
  v1::GenerateRequest request;
  request.set_request_id(absl::GetFlag(FLAGS_request_id));
  const std::vector<std::string> ids = absl::GetFlag(FLAGS_token_ids);
  const std::string prompt = absl::GetFlag(FLAGS_prompt);
  const std::string system = absl::GetFlag(FLAGS_system);
  const bool chat = absl::GetFlag(FLAGS_chat);
  if (!ids.empty()) {
    if (!prompt.empty() || chat) {
      return absl::InvalidArgumentError("--token_ids replaces --prompt and --chat; give one");
    }
    for (const std::string& id : ids) {
      int32_t value = 0;
      if (!absl::SimpleAtoi(id, &value)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--token_ids: '", id, "' is not a token id"));
      }
      request.mutable_token_ids()->add_ids(value);
    }
  } else if (prompt.empty()) {
    return absl::InvalidArgumentError("--prompt (or --token_ids) is required");
  } else if (chat) {
    v1::ChatInput* input = request.mutable_chat();
    if (!system.empty()) {
      v1::ChatMessage* m = input->add_messages();
      m->set_role("system");
      m->set_content(system);
    }
    v1::ChatMessage* m = input->add_messages();
    m->set_role("user");
    m->set_content(prompt);
  } else {
    request.set_text(prompt);
  }
  if (!system.empty() && !chat) return absl::InvalidArgumentError("--system needs --chat");
  ASSIGN_OR_RETURN(SamplingParams params, SamplingParamsFromFlags());
  ToProto(params, request.mutable_params());
  return request;
}

int StreamGenerate(const std::string& server, const v1::GenerateRequest& request, bool json,
                   absl::Duration timeout, grpc::ClientContext* context) {
  auto stub = v1::InferenceService::NewStub(
      grpc::CreateChannel(server, grpc::InsecureChannelCredentials()));
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));

  const Clock::time_point sent = Clock::now();
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub->Generate(context, request);
  double ttft_ms = -1;
  std::vector<int32_t> token_ids;
  std::vector<v1::TokenLogprob> logprobs;
  std::string text;
  std::string request_id;
  v1::GenerateResponse last;  // the one carrying finish_reason and usage
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (ttft_ms < 0 && response.token_ids_size() > 0) ttft_ms = MillisBetween(sent, Clock::now());
    token_ids.insert(token_ids.end(), response.token_ids().begin(), response.token_ids().end());
    logprobs.insert(logprobs.end(), response.logprobs().begin(), response.logprobs().end());
    text += response.text();
    if (!json && !response.text().empty()) {
      std::fwrite(response.text().data(), 1, response.text().size(), stdout);
      std::fflush(stdout);
    }
    if (!response.request_id().empty()) request_id = response.request_id();
    if (!response.finish_reason().empty() || response.has_usage()) last = response;
  }
  const grpc::Status status = reader->Finish();
  const double e2e_ms = MillisBetween(sent, Clock::now());
  if (!json && (status.ok() || !text.empty())) {
    std::fputs("\n", stdout);
    std::fflush(stdout);
  }
  if (!status.ok()) {
    std::fprintf(stderr, "shardserve generate: %s from %s: %s\n", CodeName(status).c_str(),
                 server.c_str(), status.error_message().c_str());
    return 1;
  }
  if (json) {
    nlohmann::json out;
    out["request_id"] = request_id;
    out["token_ids"] = token_ids;
    out["text"] = text;
    out["finish_reason"] = last.finish_reason();
    out["stop_reason"] = last.stop_reason();
    out["ttft_ms"] = ttft_ms < 0 ? nlohmann::json(nullptr) : nlohmann::json(ttft_ms);
    out["e2e_ms"] = e2e_ms;
    out["prompt_tokens"] = last.usage().prompt_tokens();
    out["completion_tokens"] = last.usage().completion_tokens();
    out["cached_tokens"] = last.usage().cached_tokens();
    if (request.params().has_logprobs()) out["logprobs"] = LogprobsJson(logprobs);
    std::printf("%s\n", out.dump(/*indent=*/-1, ' ', /*ensure_ascii=*/false,
                                 nlohmann::json::error_handler_t::replace)
                            .c_str());
    std::fflush(stdout);
  }
  return 0;
}

int GenerateCommand() {
  absl::StatusOr<v1::GenerateRequest> request = GenerateRequestFromFlags();
  if (!request.ok()) {
    std::fprintf(stderr, "shardserve generate: %s\n",
                 std::string(request.status().message()).c_str());
    return 2;
  }
  grpc::ClientContext context;
  return StreamGenerate(absl::GetFlag(FLAGS_server), *request, absl::GetFlag(FLAGS_json),
                        TimeoutOr(kDefaultTimeout), &context);
}

}  // namespace shardserve
