// InferenceService in process, against an in-process WorkerService (FakeLeader) that streams
// scripted token ids, can block until its call is cancelled, and records what it was sent and
// when it was cancelled. The plan that routes to it is plain data (colocated: a "both" group);
// the model is SmolLM2's real tokenizer and chat template (no weights). Disaggregated serving is
// tested in disagg_serving_test.cc.
#include "coordinator/inference_service.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "coordinator/disagg_router.h"
#include "coordinator/fake_leader.h"
#include "coordinator/health_reporter.h"
#include "coordinator/load_monitor.h"
#include "coordinator/model_frontend.h"
#include "coordinator/request_dispatcher.h"
#include "coordinator/request_metrics.h"
#include "coordinator/request_router.h"
#include "coordinator/test_generate_stream.h"
#include "coordinator/test_model_frontend.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"
#include "model/tokenizer.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "proto/shardserve/v1/inference.grpc.pb.h"
#include "proto/shardserve/v1/worker.grpc.pb.h"

namespace shardserve {
namespace {

using ::testing::HasSubstr;

constexpr int kMaxModelLen = 8192;
constexpr int kMaxInflight = 2;
constexpr char kServedName[] = "smollm2";

using Script = FakeLeader::Script;
using TestWorker = FakeLeader;

// The plan: group 0 ("both", ready) led by the test worker; a prefill group that must never be
// used; one spare worker.
class PlanFixture {
 public:
  explicit PlanFixture(int worker_port) {
    v1::EngineGroup* prefill = reply_.mutable_plan()->add_groups();
    prefill->set_id(0);
    prefill->set_role(v1::POOL_ROLE_PREFILL);
    prefill->set_ready(true);
    prefill->add_worker_ids("worker-2");
    v1::EngineGroup* both = reply_.mutable_plan()->add_groups();
    both->set_id(1);
    both->set_role(v1::POOL_ROLE_BOTH);
    both->set_ready(true);
    both->add_worker_ids("worker-1");
    both->mutable_layout()->set_tp_size(1);
    both->mutable_layout()->set_pp_size(1);
    both->mutable_layout()->set_ep_size(1);
    reply_.mutable_plan()->set_epoch(1);
    reply_.mutable_plan()->add_spare_worker_ids("worker-3");
    for (int i = 1; i <= 3; ++i) {
      v1::WorkerInfo* w = reply_.add_workers();
      w->set_worker_id(absl::StrCat("worker-", i));
      w->set_host("127.0.0.1");
      w->set_port(i == 1 ? worker_port : 1);  // nothing listens on port 1
      w->set_role(v1::POOL_ROLE_BOTH);
      w->set_resident_bytes(1000 * i);
      reply_.add_worker_status()->set_alive(true);
    }
  }
  void SetReady(bool ready) {
    absl::MutexLock lock(&mu_);
    reply_.mutable_plan()->mutable_groups(1)->set_ready(ready);
  }
  void SetLeaderPort(int port) {
    absl::MutexLock lock(&mu_);
    reply_.mutable_workers(0)->set_port(port);
  }
  v1::GetPlanReply Get() {
    absl::MutexLock lock(&mu_);
    return reply_;
  }

 private:
  absl::Mutex mu_;
  v1::GetPlanReply reply_ ABSL_GUARDED_BY(mu_);
};

class InferenceServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder worker_builder;
    int worker_port = 0;
    worker_builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &worker_port);
    worker_builder.RegisterService(&worker_);
    worker_server_ = worker_builder.BuildAndStart();
    ASSERT_NE(worker_server_, nullptr);
    ASSERT_NE(worker_port, 0);

    plan_ = std::make_unique<PlanFixture>(worker_port);
    model_ = LoadSmolLm2Frontend(kMaxModelLen);
    RequestRouter::Options router_options;
    router_options.max_inflight_per_group = kMaxInflight;
    router_ = std::make_unique<RequestRouter>([this] { return plan_->Get(); }, router_options);
    metrics_registry_ = std::make_shared<prometheus::Registry>();
    metrics_ = std::make_unique<RequestMetrics>(metrics_registry_.get(), kMaxModelLen);
    load_monitor_ = std::make_unique<LoadMonitor>(router_.get(), LoadMonitor::Options());
    DisaggRouter::Options disagg_options;
    disagg_options.max_inflight_per_group = kMaxInflight;
    disagg_router_ = std::make_unique<DisaggRouter>(*metrics_registry_, disagg_options);
    dispatcher_ = std::make_unique<RequestDispatcher>(
        router_.get(), disagg_router_.get(), load_monitor_.get(), RequestDispatcher::Options());
    service_ = std::make_unique<InferenceService>(model_.get(), kServedName, dispatcher_.get(),
                                                  metrics_.get(), InferenceService::Options());

    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
    stub_ = v1::InferenceService::NewStub(channel_);
  }

  void TearDown() override {
    health_.reset();
    // The group's calls end first, so no relay can keep the coordinator's shutdown waiting.
    if (worker_server_ != nullptr) worker_server_->Shutdown(std::chrono::system_clock::now());
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
    service_.reset();
  }

  const Tokenizer& tokenizer() const { return model_->tokenizer(); }
  std::vector<int32_t> Encode(const std::string& text) const {
    return tokenizer().Encode(text, /*add_special_tokens=*/false);
  }
  std::string Decode(const std::vector<int32_t>& ids) const {
    absl::StatusOr<std::string> text = tokenizer().Decode(ids, /*skip_special_tokens=*/true);
    EXPECT_TRUE(text.ok()) << text.status();
    return text.ok() ? *text : "";
  }

  static v1::GenerateRequest TextRequest(const std::string& text, int max_tokens = 0) {
    v1::GenerateRequest request;
    request.set_text(text);
    request.mutable_params()->set_max_tokens(max_tokens);
    return request;
  }

  // Runs Generate to the end (10 s deadline unless `context` sets another).
  GenerateStream Run(const v1::GenerateRequest& request, grpc::ClientContext* context = nullptr) {
    return CollectGenerate(stub_.get(), request, context);
  }

  // Starts Generate on another thread; the result is ready once the thread is joined.
  std::thread RunAsync(v1::GenerateRequest request, GenerateStream* result,
                       grpc::ClientContext* context = nullptr) {
    return std::thread(
        [this, request = std::move(request), result, context] { *result = Run(request, context); });
  }

  // grpc.health.v1.Health/Check for `service`: 1 SERVING, 2 NOT_SERVING, -1 on error.
  int HealthCheck(const std::string& service) {
    std::string request;
    if (!service.empty()) {
      request.push_back('\x0a');
      request.push_back(static_cast<char>(service.size()));
      request += service;
    }
    grpc::Slice slice(request);
    grpc::ByteBuffer request_buffer(&slice, 1);
    grpc::ByteBuffer response_buffer;
    grpc::GenericStub generic(channel_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::CompletionQueue cq;
    std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
        generic.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check", request_buffer, &cq);
    call->StartCall();
    grpc::Status status;
    call->Finish(&response_buffer, &status, reinterpret_cast<void*>(1));
    void* tag = nullptr;
    bool ok = false;
    cq.Next(&tag, &ok);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    if (!status.ok()) return -1;
    std::vector<grpc::Slice> slices;
    if (!response_buffer.Dump(&slices).ok()) return -1;
    std::string bytes;
    for (const grpc::Slice& s : slices)
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    // HealthCheckResponse { ServingStatus status = 1; }: absent means UNKNOWN (0).
    if (bytes.size() == 2 && bytes[0] == '\x08') return bytes[1];
    return bytes.empty() ? 0 : -1;
  }

  // The metric families as Prometheus text.
  std::string MetricsText() const {
    prometheus::TextSerializer serializer;
    return serializer.Serialize(metrics_registry_->Collect());
  }

  TestWorker worker_;
  std::unique_ptr<grpc::Server> worker_server_;
  std::unique_ptr<PlanFixture> plan_;
  std::unique_ptr<ModelFrontend> model_;
  std::unique_ptr<RequestRouter> router_;
  std::shared_ptr<prometheus::Registry> metrics_registry_;
  std::unique_ptr<RequestMetrics> metrics_;
  std::unique_ptr<LoadMonitor> load_monitor_;
  std::unique_ptr<DisaggRouter> disagg_router_;
  std::unique_ptr<RequestDispatcher> dispatcher_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
  std::unique_ptr<HealthReporter> health_;
};

TEST_F(InferenceServiceTest, StreamedTextIsTheDetokenizedTokens) {
  // Multi-byte characters that byte-level tokens split, and a special token that is skipped.
  const std::vector<int32_t> tokens = Encode(" héllo wörld, 你好 🙂 done<|im_start|> end");
  worker_.SetScript({tokens, "length"});
  GenerateStream result = Run(TextRequest("Say hi", static_cast<int>(tokens.size())));
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.tokens(), tokens);
  EXPECT_EQ(result.text(), Decode(tokens));
  EXPECT_GT(result.responses.size(), 1u) << "tokens must stream, not arrive at the end";
  for (size_t i = 0; i + 1 < result.responses.size(); ++i) {
    EXPECT_TRUE(result.responses[i].finish_reason().empty()) << i;
  }
  const v1::GenerateResponse& last = result.last();
  EXPECT_EQ(last.finish_reason(), "length");
  EXPECT_FALSE(last.request_id().empty());
  for (const auto& r : result.responses) EXPECT_EQ(r.request_id(), last.request_id());

  // The group got the tokenized prompt and the defaults of unset parameters.
  const v1::GenerateOnGroupRequest sent = worker_.last_request();
  const std::vector<int32_t> prompt = tokenizer().Encode("Say hi", /*add_special_tokens=*/true);
  EXPECT_EQ(std::vector<int32_t>(sent.prompt_token_ids().begin(), sent.prompt_token_ids().end()),
            prompt);
  EXPECT_EQ(sent.max_tokens(), static_cast<int>(tokens.size()));
  EXPECT_EQ(sent.top_p(), 1.0f);
  EXPECT_EQ(sent.repetition_penalty(), 1.0f);
  EXPECT_EQ(sent.temperature(), 0.0f);
  EXPECT_FALSE(sent.has_logprobs());
  EXPECT_EQ(sent.request_id(), last.request_id());
  EXPECT_EQ(last.usage().prompt_tokens(), static_cast<int>(prompt.size()));
  EXPECT_EQ(last.usage().completion_tokens(), static_cast<int>(tokens.size()));
}

TEST_F(InferenceServiceTest, UsageAndLogprobsWithTokenStrings) {
  const std::vector<int32_t> tokens = Encode(" a b c");
  Script script{tokens, "stop"};
  script.cached_tokens = 5;
  worker_.SetScript(script);
  v1::GenerateRequest request = TextRequest("Hello there", 16);
  request.set_request_id("lp-1");
  request.mutable_params()->set_logprobs(2);
  GenerateStream result = Run(request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(worker_.last_request().logprobs(), 2);
  int n = 0;
  for (const v1::GenerateResponse& r : result.responses) {
    EXPECT_EQ(r.request_id(), "lp-1");
    ASSERT_EQ(r.logprobs_size(), r.token_ids_size());
    for (int i = 0; i < r.logprobs_size(); ++i, ++n) {
      const v1::TokenLogprob& lp = r.logprobs(i);
      EXPECT_EQ(lp.token_id(), tokens[n]);
      EXPECT_FLOAT_EQ(lp.logprob(), -0.25f * (n + 1));
      ASSERT_EQ(lp.top_size(), 2);
      EXPECT_EQ(lp.top(1).token_id(), tokens[n] + 1);
      EXPECT_EQ(lp.top(0).token(), Decode({tokens[n]}));
    }
  }
  EXPECT_EQ(n, static_cast<int>(tokens.size()));
  EXPECT_EQ(result.last().finish_reason(), "stop");
  EXPECT_EQ(result.last().usage().cached_tokens(), 5);
  EXPECT_EQ(result.last().usage().completion_tokens(), 3);
}

TEST_F(InferenceServiceTest, StopStringCancelsTheGroupAndCutsTheText) {
  const std::vector<int32_t> tokens = Encode(" one two three four five six");
  Script script{tokens};
  script.block = true;  // the group would go on generating
  worker_.SetScript(script);
  v1::GenerateRequest request = TextRequest("Count", 100);
  request.mutable_params()->add_stop("four");
  GenerateStream result = Run(request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.text(), " one two three ");
  EXPECT_EQ(result.last().finish_reason(), "stop");
  EXPECT_EQ(result.last().stop_reason(), "four");
  EXPECT_TRUE(worker_.WaitForCancellations(1, absl::Seconds(5)))
      << "the group call was not cancelled after the stop string";
  // No text before the stop string leaked out in pieces: "f", "fo", ... never appear.
  for (const auto& r : result.responses) EXPECT_THAT(r.text(), ::testing::Not(HasSubstr("f")));
}

TEST_F(InferenceServiceTest, EosFinishesWithoutItsText) {
  std::vector<int32_t> tokens = Encode(" Hi!");
  tokens.push_back(tokenizer().TokenId("<|im_end|>"));
  worker_.SetScript({tokens, "stop"});
  GenerateStream result = Run(TextRequest("Greet", 16));
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.text(), " Hi!");
  EXPECT_EQ(result.last().finish_reason(), "stop");
  EXPECT_EQ(result.tokens(), tokens);
  EXPECT_EQ(worker_.cancel_times().size(), 0u);
}

TEST_F(InferenceServiceTest, ChatInputIsRenderedWithTheTemplate) {
  worker_.SetScript({Encode(" ok"), "length"});
  v1::GenerateRequest request;
  v1::ChatMessage* m = request.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("What is 2+2?");
  GenerateStream result = Run(request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  const std::string prompt =
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
      "Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
  const v1::GenerateOnGroupRequest sent = worker_.last_request();
  EXPECT_EQ(std::vector<int32_t>(sent.prompt_token_ids().begin(), sent.prompt_token_ids().end()),
            tokenizer().Encode(prompt, /*add_special_tokens=*/false));
}

TEST_F(InferenceServiceTest, ClientCancellationReachesAQueuedRequestOnTheGroup) {
  Script script;
  script.block = true;  // queued: no token ever comes
  worker_.SetScript(script);
  grpc::ClientContext context;
  GenerateStream result;
  std::thread client = RunAsync(TextRequest("wait"), &result, &context);
  ASSERT_TRUE(worker_.WaitForCalls(1));
  const absl::Time cancelled = absl::Now();
  context.TryCancel();
  client.join();
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(worker_.WaitForCancellations(1, absl::Seconds(5)));
  EXPECT_LT(worker_.cancel_times()[0] - cancelled, absl::Seconds(1));
  // The request leaves the table and its slot on the group.
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while ((service_->num_active_requests() > 0 || router_->Inflight(1) > 0) &&
         absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(service_->num_active_requests(), 0);
  EXPECT_EQ(router_->Inflight(1), 0);
}

TEST_F(InferenceServiceTest, AbortEndsTheStreamWithFinishReasonAbort) {
  const std::vector<int32_t> tokens = Encode(" partial output");
  Script script{tokens};
  script.block = true;
  worker_.SetScript(script);
  v1::GenerateRequest request = TextRequest("go", 64);
  request.set_request_id("to-abort");
  GenerateStream result;
  std::thread client = RunAsync(request, &result);
  ASSERT_TRUE(worker_.WaitForCalls(1));
  // Abort only once the relay is registered and streaming.
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  bool found = false;
  while (!found && absl::Now() < give_up) {
    grpc::ClientContext context;
    v1::AbortRequest abort;
    abort.set_request_id("to-abort");
    v1::AbortResponse reply;
    ASSERT_TRUE(stub_->Abort(&context, abort, &reply).ok());
    found = reply.found();
  }
  EXPECT_TRUE(found);
  client.join();
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.last().finish_reason(), "abort");
  EXPECT_EQ(result.last().request_id(), "to-abort");
  EXPECT_TRUE(worker_.WaitForCancellations(1, absl::Seconds(5)));

  grpc::ClientContext context;
  v1::AbortRequest unknown;
  unknown.set_request_id("never-ran");
  v1::AbortResponse reply;
  ASSERT_TRUE(stub_->Abort(&context, unknown, &reply).ok());
  EXPECT_FALSE(reply.found());
}

TEST_F(InferenceServiceTest, DuplicateRunningRequestIdIsRefused) {
  Script script;
  script.block = true;
  worker_.SetScript(script);
  v1::GenerateRequest request = TextRequest("one");
  request.set_request_id("same");
  grpc::ClientContext first_context;
  GenerateStream first;
  std::thread client = RunAsync(request, &first, &first_context);
  ASSERT_TRUE(worker_.WaitForCalls(1));
  GenerateStream second = Run(request);
  EXPECT_EQ(second.status.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_THAT(second.status.error_message(), HasSubstr("same"));
  first_context.TryCancel();
  client.join();
}

TEST_F(InferenceServiceTest, OversizedPromptIsRefusedWithBothNumbers) {
  v1::GenerateRequest request;
  request.mutable_token_ids()->mutable_ids()->Resize(9000, 100);
  GenerateStream result = Run(request);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(result.status.error_message(),
            "prompt of 9000 tokens plus max_tokens 16 exceeds the context window of 8192 tokens");

  v1::GenerateRequest fits_only_without_output = TextRequest("Hello", kMaxModelLen);
  result = Run(fits_only_without_output);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(result.status.error_message(), HasSubstr("max_tokens 8192"));
  EXPECT_EQ(worker_.num_calls(), 0);
}

TEST_F(InferenceServiceTest, BadParametersAndInputsAreInvalidArgument) {
  struct Case {
    std::string name;
    v1::GenerateRequest request;
    std::string message;
  };
  std::vector<Case> cases;
  auto add = [&](std::string name, std::string message, auto mutate) {
    v1::GenerateRequest r = TextRequest("Hello");
    mutate(&r);
    cases.push_back({std::move(name), std::move(r), std::move(message)});
  };
  add("top_p", "top_p", [](v1::GenerateRequest* r) { r->mutable_params()->set_top_p(1.5f); });
  add("temperature", "temperature",
      [](v1::GenerateRequest* r) { r->mutable_params()->set_temperature(-1); });
  add("logprobs", "logprobs",
      [](v1::GenerateRequest* r) { r->mutable_params()->set_logprobs(21); });
  add("max_tokens", "max_tokens",
      [](v1::GenerateRequest* r) { r->mutable_params()->set_max_tokens(-3); });
  add("min_tokens", "min_tokens", [](v1::GenerateRequest* r) {
    r->mutable_params()->set_max_tokens(4);
    r->mutable_params()->set_min_tokens(5);
  });
  add("stop", "stop", [](v1::GenerateRequest* r) {
    for (int i = 0; i < 17; ++i) r->mutable_params()->add_stop("x");
  });
  add("no input", "no input", [](v1::GenerateRequest* r) { r->clear_input(); });
  add("empty text", "empty", [](v1::GenerateRequest* r) { r->set_text(""); });
  add("empty ids", "empty", [](v1::GenerateRequest* r) { r->mutable_token_ids(); });
  add("id outside vocabulary", "outside the vocabulary", [](v1::GenerateRequest* r) {
    r->mutable_token_ids()->add_ids(5);
    r->mutable_token_ids()->add_ids(49152);
  });
  add("negative id", "outside the vocabulary",
      [](v1::GenerateRequest* r) { r->mutable_token_ids()->add_ids(-1); });
  add("empty chat", "no messages", [](v1::GenerateRequest* r) { r->mutable_chat(); });
  for (const Case& c : cases) {
    GenerateStream result = Run(c.request);
    EXPECT_EQ(result.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.name;
    EXPECT_THAT(result.status.error_message(), HasSubstr(c.message)) << c.name;
  }
  EXPECT_EQ(worker_.num_calls(), 0);
}

TEST_F(InferenceServiceTest, UnknownModelIsNotFoundNamingTheServedModel) {
  v1::GenerateRequest request = TextRequest("Hello");
  request.set_model("llama-70b");
  GenerateStream result = Run(request);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(result.status.error_message(), HasSubstr("llama-70b"));
  EXPECT_THAT(result.status.error_message(), HasSubstr(kServedName));

  worker_.SetScript({Encode(" ok"), "length"});
  request.set_model(kServedName);
  EXPECT_TRUE(Run(request).status.ok());
}

TEST_F(InferenceServiceTest, AllGroupsFullIsResourceExhaustedAtOnce) {
  Script script;
  script.block = true;
  worker_.SetScript(script);
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<GenerateStream> results(kMaxInflight);
  std::vector<std::thread> clients;
  for (int i = 0; i < kMaxInflight; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    clients.push_back(RunAsync(TextRequest("hold"), &results[i], contexts.back().get()));
  }
  ASSERT_TRUE(worker_.WaitForCalls(kMaxInflight));
  const absl::Time start = absl::Now();
  GenerateStream refused = Run(TextRequest("one more"));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  for (auto& c : contexts) c->TryCancel();
  for (auto& t : clients) t.join();
}

TEST_F(InferenceServiceTest, NoReadyGroupIsUnavailable) {
  plan_->SetReady(false);
  GenerateStream result = Run(TextRequest("Hello"));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(result.status.error_message(), HasSubstr("no engine group is ready; 0 of 1"));
  EXPECT_EQ(worker_.num_calls(), 0);
}

TEST_F(InferenceServiceTest, UnreachableLeaderIsUnavailable) {
  plan_->SetLeaderPort(1);
  GenerateStream result = Run(TextRequest("Hello"));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(result.status.error_message(), HasSubstr("engine group 1"));
}

TEST_F(InferenceServiceTest, DeadlineIsDeadlineExceededAndReachesTheGroup) {
  Script script;
  script.block = true;
  worker_.SetScript(script);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
  const absl::Time start = absl::Now();
  GenerateStream result = Run(TextRequest("slow"), &context);
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  // The group's call carried the deadline (or was cancelled by the watcher): it ends too.
  EXPECT_TRUE(worker_.WaitForCancellations(1, absl::Seconds(5)));
}

TEST_F(InferenceServiceTest, GroupErrorsKeepTheirCode) {
  const std::vector<std::pair<grpc::StatusCode, std::string>> errors = {
      {grpc::StatusCode::INVALID_ARGUMENT, "the KV cache holds 512 tokens, fewer than 1024"},
      {grpc::StatusCode::RESOURCE_EXHAUSTED, "waiting queue is full"},
      {grpc::StatusCode::UNAVAILABLE, "rank 1 died"},
      {grpc::StatusCode::DEADLINE_EXCEEDED, "rank 1 hung"},
  };
  for (const auto& [code, message] : errors) {
    Script script{Encode(" a")};
    script.error = grpc::Status(code, message);
    worker_.SetScript(script);
    GenerateStream result = Run(TextRequest("Hello"));
    EXPECT_EQ(result.status.error_code(), code) << message;
    EXPECT_THAT(result.status.error_message(), HasSubstr(message));
  }
}

TEST_F(InferenceServiceTest, TokenizeAndDetokenizeRoundTrip) {
  const std::string text = "The quick brown fox, 你好 🙂!";
  grpc::ClientContext tokenize_context;
  v1::TokenizeRequest tokenize;
  tokenize.set_text(text);
  v1::TokenizeResponse tokens;
  ASSERT_TRUE(stub_->Tokenize(&tokenize_context, tokenize, &tokens).ok());
  const std::vector<int32_t> expected = tokenizer().Encode(text, /*add_special_tokens=*/true);
  EXPECT_EQ(std::vector<int32_t>(tokens.token_ids().begin(), tokens.token_ids().end()), expected);
  EXPECT_EQ(tokens.max_model_len(), kMaxModelLen);

  grpc::ClientContext detokenize_context;
  v1::DetokenizeRequest detokenize;
  detokenize.mutable_token_ids()->CopyFrom(tokens.token_ids());
  v1::DetokenizeResponse detokenized;
  ASSERT_TRUE(stub_->Detokenize(&detokenize_context, detokenize, &detokenized).ok());
  EXPECT_EQ(detokenized.text(), tokenizer().Decode(expected, false).value());
  EXPECT_EQ(detokenized.text(), text);

  grpc::ClientContext chat_context;
  v1::TokenizeRequest chat;
  v1::ChatMessage* m = chat.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("Hi");
  v1::TokenizeResponse chat_tokens;
  ASSERT_TRUE(stub_->Tokenize(&chat_context, chat, &chat_tokens).ok());
  EXPECT_THAT(chat_tokens.prompt(),
              HasSubstr("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
  EXPECT_EQ(std::vector<int32_t>(chat_tokens.token_ids().begin(), chat_tokens.token_ids().end()),
            tokenizer().Encode(chat_tokens.prompt(), /*add_special_tokens=*/false));

  grpc::ClientContext bad_context;
  v1::DetokenizeRequest bad;
  bad.add_token_ids(1 << 30);
  EXPECT_EQ(stub_->Detokenize(&bad_context, bad, &detokenized).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(InferenceServiceTest, ListModelsAndClusterStatus) {
  grpc::ClientContext models_context;
  v1::ListModelsResponse models;
  ASSERT_TRUE(stub_->ListModels(&models_context, v1::ListModelsRequest(), &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).name(), kServedName);
  EXPECT_EQ(models.models(0).max_model_len(), kMaxModelLen);
  EXPECT_EQ(models.models(0).vocab_size(), tokenizer().vocab_size());
  EXPECT_EQ(models.models(0).fingerprint(), "0123abcd");

  v1::GetLoadReply load;
  load.set_running_requests(3);
  load.set_num_kv_blocks(100);
  load.set_free_kv_blocks(40);
  load.set_kv_usage(0.6);
  worker_.SetLoad(load);
  grpc::ClientContext status_context;
  v1::GetClusterStatusResponse status;
  ASSERT_TRUE(
      stub_->GetClusterStatus(&status_context, v1::GetClusterStatusRequest(), &status).ok());
  EXPECT_EQ(status.model(), kServedName);
  EXPECT_TRUE(status.ready());
  ASSERT_EQ(status.groups_size(), 2);
  const v1::GroupStatus& both = status.groups(1);
  EXPECT_EQ(both.pool(), "both");
  EXPECT_TRUE(both.ready());
  EXPECT_EQ(both.load().running_requests(), 3);
  EXPECT_EQ(both.load().free_kv_blocks(), 40);
  EXPECT_DOUBLE_EQ(both.load().kv_usage(), 0.6);
  EXPECT_EQ(both.load().inflight_requests(), 0);
  EXPECT_TRUE(both.error().empty()) << both.error();
  EXPECT_EQ(status.groups(0).pool(), "prefill");
  // The prefill group's leader (port 1) does not answer: its status comes back all the same.
  ASSERT_EQ(status.workers_size(), 3);
  EXPECT_EQ(status.workers(0).group_id(), 1);
  EXPECT_EQ(status.workers(0).group_rank(), 0);
  EXPECT_EQ(status.workers(2).group_id(), -1);  // the spare
  EXPECT_THAT(status.placement_text(), HasSubstr("epoch: 1"));
}

TEST_F(InferenceServiceTest, HealthFollowsGroupReadiness) {
  health_ = std::make_unique<HealthReporter>(
      server_->GetHealthCheckService(),
      std::vector<std::string>{"", v1::InferenceService::service_full_name()},
      [this] { return router_->HasReadyGroup(); }, absl::Milliseconds(20));
  EXPECT_EQ(HealthCheck(""), 1);
  EXPECT_EQ(HealthCheck("shardserve.v1.InferenceService"), 1);
  plan_->SetReady(false);
  auto wait_for = [&](int wanted) {
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    while (HealthCheck("shardserve.v1.InferenceService") != wanted && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    return HealthCheck("shardserve.v1.InferenceService") == wanted && HealthCheck("") == wanted;
  };
  EXPECT_TRUE(wait_for(2)) << "still SERVING with no ready group";
  plan_->SetReady(true);
  EXPECT_TRUE(wait_for(1)) << "NOT_SERVING although the group is ready";
}

TEST_F(InferenceServiceTest, MetricsCountTheRequestByPoolAndGroup) {
  const std::vector<int32_t> tokens = Encode(" one two three");
  worker_.SetScript({tokens, "length"});
  ASSERT_TRUE(Run(TextRequest("Hello", static_cast<int>(tokens.size()))).status.ok());
  const std::string text = MetricsText();
  EXPECT_THAT(
      text, HasSubstr("shardserve_time_to_first_token_seconds_count{group=\"1\",pool=\"both\"} 1"));
  EXPECT_THAT(
      text, HasSubstr("shardserve_inter_token_latency_seconds_count{group=\"1\",pool=\"both\"} 2"));
  EXPECT_THAT(
      text, HasSubstr("shardserve_e2e_request_latency_seconds_count{group=\"1\",pool=\"both\"} 1"));
  EXPECT_THAT(
      text, HasSubstr("shardserve_request_queue_time_seconds_count{group=\"1\",pool=\"both\"} 1"));
  EXPECT_THAT(text, HasSubstr("shardserve_generation_tokens_total{group=\"1\",pool=\"both\"} 3"));
  EXPECT_THAT(text, HasSubstr("shardserve_request_success_total{finished_reason=\"length\",group="
                              "\"1\",pool=\"both\"} 1"));
  EXPECT_THAT(text, HasSubstr("shardserve_num_requests_running{group=\"1\",pool=\"both\"} 0"));
  EXPECT_THAT(text, HasSubstr("shardserve_time_to_first_token_seconds_bucket{group=\"1\",pool="
                              "\"both\",le=\"2560\"} 1"));
}

}  // namespace
}  // namespace shardserve
