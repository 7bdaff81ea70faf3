// InferenceService with disaggregated plans, in process: every group's leader is a FakeLeader
// (a real gRPC server) that reports a load and, on decode groups, streams scripted tokens or
// fails as a decode leader does. The coordinator side is the real one: RequestRouter,
// LoadMonitor, DisaggRouter, RequestDispatcher, GenerateRelay, RequestMetrics. Waits poll with
// deadlines; nothing assumes how fast a call is.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/testing/test_env.h"
#include "coordinator/disagg_router.h"
#include "coordinator/fake_leader.h"
#include "coordinator/inference_service.h"
#include "coordinator/load_monitor.h"
#include "coordinator/model_frontend.h"
#include "coordinator/request_dispatcher.h"
#include "coordinator/request_metrics.h"
#include "coordinator/request_router.h"
#include "coordinator/test_generate_stream.h"
#include "coordinator/test_model_frontend.h"
#include "coordinator/test_plan.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "proto/shardserve/v1/inference.grpc.pb.h"
#include "proto/shardserve/v1/worker.grpc.pb.h"

namespace shardserve {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Script = FakeLeader::Script;

constexpr int kMaxModelLen = 8192;
constexpr int kMaxInflight = 2;

// `n` prompt token ids from `first` (plain ids the tokenizer knows).
v1::GenerateRequest IdsRequest(int n, int32_t first, int max_tokens = 8) {
  v1::GenerateRequest request;
  for (int i = 0; i < n; ++i) request.mutable_token_ids()->add_ids(first + i);
  request.mutable_params()->set_max_tokens(max_tokens);
  return request;
}

Script Blocking(std::vector<int32_t> tokens = {}) {
  Script script{std::move(tokens)};
  script.block = true;
  return script;
}

Script Failing(const std::string& message, bool names_prefill_group,
               std::vector<int32_t> tokens = {}) {
  Script script{std::move(tokens)};
  script.error = grpc::Status(grpc::StatusCode::UNAVAILABLE, message);
  script.error_names_prefill_group = names_prefill_group;
  return script;
}

class DisaggServingTest : public ::testing::Test {
 protected:
  // Adds a group led by a new FakeLeader that reports `free_blocks` of 1000.
  int32_t AddGroup(v1::PoolRole role, int32_t free_blocks = 1000) {
    leaders_.push_back(std::make_unique<FakeLeader>());
    v1::GetLoadReply load;
    load.set_num_kv_blocks(1000);
    load.set_free_kv_blocks(free_blocks);
    leaders_.back()->SetLoad(load);
    const int port = leaders_.back()->Start();
    EXPECT_NE(port, 0);
    return plan_.AddGroup(role, /*ready=*/true, port);
  }
  FakeLeader& leader(int32_t group_id) { return *leaders_[group_id]; }

  // Starts the coordinator side and waits until every leader's load was reported.
  void Start() {
    model_ = LoadSmolLm2Frontend(kMaxModelLen);
    RequestRouter::Options router_options;
    router_options.max_inflight_per_group = kMaxInflight;
    router_ = std::make_unique<RequestRouter>(plan_.Source(), router_options);
    LoadMonitor::Options monitor_options;
    monitor_options.poll_interval = absl::Milliseconds(5);
    monitor_ = std::make_unique<LoadMonitor>(router_.get(), monitor_options);
    DisaggRouter::Options disagg_options;
    disagg_options.max_inflight_per_group = kMaxInflight;
    disagg_ = std::make_unique<DisaggRouter>(*registry_, disagg_options);
    dispatcher_ = std::make_unique<RequestDispatcher>(router_.get(), disagg_.get(), monitor_.get(),
                                                      RequestDispatcher::Options());
    metrics_ = std::make_unique<RequestMetrics>(registry_.get(), kMaxModelLen);
    service_ = std::make_unique<InferenceService>(model_.get(), "smollm2", dispatcher_.get(),
                                                  metrics_.get(), InferenceService::Options());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::InferenceService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    for (size_t id = 0; id < leaders_.size(); ++id) {
      ASSERT_TRUE(TestWaitUntil([&] { return monitor_->Latest(id).has_value(); }))
          << "group " << id;
    }
  }

  void TearDown() override {
    // The leaders' calls end first, so no relay can keep the coordinator's shutdown waiting.
    for (auto& l : leaders_) l->Shutdown();
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
  }

  std::vector<int32_t> Encode(const std::string& text) const {
    return model_->tokenizer().Encode(text, /*add_special_tokens=*/false);
  }

  GenerateStream Run(const v1::GenerateRequest& request, grpc::ClientContext* context = nullptr) {
    return CollectGenerate(stub_.get(), request, context);
  }
  std::thread RunAsync(v1::GenerateRequest request, GenerateStream* result,
                       grpc::ClientContext* context) {
    return std::thread(
        [this, request = std::move(request), result, context] { *result = Run(request, context); });
  }

  // The remote_prefill group of each Generate call `decode_group`'s leader received, in order.
  std::vector<int32_t> PrefillGroupsSeenBy(int32_t decode_group) {
    std::vector<int32_t> ids;
    for (const v1::GenerateOnGroupRequest& r : leader(decode_group).requests()) {
      ids.push_back(r.has_remote_prefill() ? r.remote_prefill().group_id() : -1);
    }
    return ids;
  }
  std::string LeaderAddress(int32_t group_id) {
    const v1::GetPlanReply plan = plan_.Get();
    return RequestRouter::LeaderAddress(plan, plan.plan().groups(group_id));
  }
  bool AllSlotsFree() {
    for (size_t id = 0; id < leaders_.size(); ++id) {
      if (router_->Inflight(id) != 0) return false;
    }
    return true;
  }
  std::string MetricsText() const {
    return prometheus::TextSerializer().Serialize(registry_->Collect());
  }

  TestPlan plan_;
  std::vector<std::unique_ptr<FakeLeader>> leaders_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::unique_ptr<ModelFrontend> model_;
  std::unique_ptr<RequestRouter> router_;
  std::unique_ptr<LoadMonitor> monitor_;
  std::unique_ptr<DisaggRouter> disagg_;
  std::unique_ptr<RequestDispatcher> dispatcher_;
  std::unique_ptr<RequestMetrics> metrics_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
};

TEST_F(DisaggServingTest, GenerateGoesToTheDecodeLeaderNamingThePrefillLeader) {
  const int32_t p0 = AddGroup(v1::POOL_ROLE_PREFILL);
  AddGroup(v1::POOL_ROLE_PREFILL);
  const int32_t decode = AddGroup(v1::POOL_ROLE_DECODE);
  Start();
  const std::vector<int32_t> tokens = Encode(" one two three");
  leader(decode).SetScript({tokens, "length"});

  GenerateStream result = Run(IdsRequest(40, 1000, static_cast<int>(tokens.size())));
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.text(), " one two three");
  ASSERT_EQ(leader(decode).num_calls(), 1);
  const v1::GenerateOnGroupRequest sent = leader(decode).last_request();
  EXPECT_EQ(sent.prompt_token_ids_size(), 40);
  EXPECT_EQ(sent.prompt_token_ids(0), 1000);
  EXPECT_EQ(sent.remote_prefill().group_id(), p0);
  EXPECT_EQ(sent.remote_prefill().leader_address(), LeaderAddress(p0));
  EXPECT_EQ(leader(p0).num_calls(), 0) << "the coordinator never calls a prefill leader";
  EXPECT_TRUE(TestWaitUntil([&] { return AllSlotsFree(); }));

  // TTFT per prefill group, the rest per decode group.
  const std::string text = MetricsText();
  EXPECT_THAT(text, HasSubstr("shardserve_time_to_first_token_seconds_count{group=\"0\",pool="
                              "\"prefill\"} 1"));
  EXPECT_THAT(text, HasSubstr("shardserve_inter_token_latency_seconds_count{group=\"2\",pool="
                              "\"decode\"} 2"));
  EXPECT_THAT(text, HasSubstr("shardserve_e2e_request_latency_seconds_count{group=\"2\",pool="
                              "\"decode\"} 1"));
  EXPECT_THAT(text, HasSubstr("shardserve_generation_tokens_total{group=\"2\",pool=\"decode\"} 3"));
  EXPECT_THAT(text, HasSubstr("shardserve_request_success_total{finished_reason=\"length\",group="
                              "\"2\",pool=\"decode\"} 1"));
  EXPECT_THAT(text, Not(HasSubstr("shardserve_time_to_first_token_seconds_count{group=\"2\"")));
  EXPECT_THAT(text, HasSubstr("shardserve_router_decisions_total{group=\"0\",pool=\"prefill\","
                              "reason=\"least_loaded\"} 1"));
}

TEST_F(DisaggServingTest, TheDecodeGroupWithMoreFreeBlocksWins) {
  AddGroup(v1::POOL_ROLE_PREFILL);
  const int32_t small = AddGroup(v1::POOL_ROLE_DECODE, 300);
  const int32_t large = AddGroup(v1::POOL_ROLE_DECODE, 900);
  Start();
  leader(small).SetScript({Encode(" a"), "length"});
  leader(large).SetScript({Encode(" a"), "length"});
  ASSERT_TRUE(Run(IdsRequest(20, 500)).status.ok());
  EXPECT_EQ(leader(small).num_calls(), 0);
  EXPECT_EQ(leader(large).num_calls(), 1);
}

TEST_F(DisaggServingTest, TheSamePromptGoesBackToItsPrefillGroup) {
  const int32_t p0 = AddGroup(v1::POOL_ROLE_PREFILL);
  const int32_t p1 = AddGroup(v1::POOL_ROLE_PREFILL);
  const int32_t decode = AddGroup(v1::POOL_ROLE_DECODE);
  Start();
  leader(decode).SetScript({Encode(" ok"), "length"});

  // A request held on p0 (no token yet) makes p1 the least loaded for prompt A.
  leader(decode).PushScript(Blocking());
  grpc::ClientContext held;
  GenerateStream held_result;
  std::thread holder = RunAsync(IdsRequest(40, 9000), &held_result, &held);
  ASSERT_TRUE(leader(decode).WaitForCalls(1));
  ASSERT_TRUE(Run(IdsRequest(40, 100)).status.ok());  // prompt A
  held.TryCancel();
  holder.join();
  ASSERT_TRUE(TestWaitUntil([&] { return AllSlotsFree(); }));

  // Both prefill groups are idle now; least-loaded would take p0 (the lower id), affinity takes
  // p1, where A's blocks are cached. An unrelated prompt goes by load.
  ASSERT_TRUE(Run(IdsRequest(40, 100)).status.ok());   // prompt A again
  ASSERT_TRUE(Run(IdsRequest(40, 5000)).status.ok());  // prompt B
  EXPECT_EQ(PrefillGroupsSeenBy(decode), (std::vector<int32_t>{p0, p1, p1, p0}));
  EXPECT_THAT(MetricsText(), HasSubstr("shardserve_router_decisions_total{group=\"1\",pool="
                                       "\"prefill\",reason=\"prefix_affinity\"} 1"));
}

TEST_F(DisaggServingTest, AFailedPrefillIsRetriedOnAnotherPrefillGroup) {
  const int32_t p0 = AddGroup(v1::POOL_ROLE_PREFILL);
  const int32_t p1 = AddGroup(v1::POOL_ROLE_PREFILL);
  const int32_t decode = AddGroup(v1::POOL_ROLE_DECODE);
  Start();
  leader(decode).SetScript({Encode(" fine"), "length"});
  leader(decode).PushScript(Failing("rank 0 is unreachable", /*names_prefill_group=*/true));

  GenerateStream result = Run(IdsRequest(40, 100));
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.text(), " fine");
  EXPECT_EQ(PrefillGroupsSeenBy(decode), (std::vector<int32_t>{p0, p1}));
  EXPECT_TRUE(TestWaitUntil([&] { return AllSlotsFree(); }));
  const std::string text = MetricsText();
  EXPECT_THAT(text, HasSubstr("shardserve_request_retries_total{group=\"0\",pool=\"prefill\"} 1"));
  EXPECT_THAT(text, HasSubstr("shardserve_time_to_first_token_seconds_count{group=\"1\",pool="
                              "\"prefill\"} 1"));
  EXPECT_THAT(text, HasSubstr("shardserve_request_queue_time_seconds_count{group=\"2\",pool="
                              "\"decode\"} 1"));
  EXPECT_THAT(text, Not(HasSubstr("finished_reason=\"error\"")));
}

TEST_F(DisaggServingTest, AFailedDecodeGroupIsRetriedOnAnotherDecodeGroup) {
  const int32_t prefill = AddGroup(v1::POOL_ROLE_PREFILL);
  const int32_t d1 = AddGroup(v1::POOL_ROLE_DECODE);
  const int32_t d2 = AddGroup(v1::POOL_ROLE_DECODE);
  Start();
  leader(d1).SetScript(Failing("rank 1 of the group died", /*names_prefill_group=*/false));
  leader(d2).SetScript({Encode(" fine"), "length"});

  GenerateStream result = Run(IdsRequest(40, 100));
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(PrefillGroupsSeenBy(d1), (std::vector<int32_t>{prefill}));
  EXPECT_EQ(PrefillGroupsSeenBy(d2), (std::vector<int32_t>{prefill}));
  EXPECT_THAT(MetricsText(),
              HasSubstr("shardserve_request_retries_total{group=\"1\",pool=\"decode\"} 1"));
}

TEST_F(DisaggServingTest, NothingIsRetriedAfterAToken) {
  AddGroup(v1::POOL_ROLE_PREFILL);
  AddGroup(v1::POOL_ROLE_PREFILL);
  const int32_t decode = AddGroup(v1::POOL_ROLE_DECODE);
  Start();
  leader(decode).SetScript({Encode(" late"), "length"});
  leader(decode).PushScript(Failing("rank 1 died", false, Encode(" one")));

  GenerateStream result = Run(IdsRequest(40, 100));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(result.status.error_message(), HasSubstr("engine group 2 (decode pool"));
  EXPECT_THAT(result.status.error_message(), HasSubstr("rank 1 died"));
  EXPECT_EQ(result.text(), " one");
  EXPECT_EQ(leader(decode).num_calls(), 1);
  EXPECT_TRUE(TestWaitUntil([&] { return AllSlotsFree(); }));
}

TEST_F(DisaggServingTest, ARetryNeedsAnotherGroupAndHappensOnce) {
  AddGroup(v1::POOL_ROLE_PREFILL);
  const int32_t decode = AddGroup(v1::POOL_ROLE_DECODE);
  Start();
  leader(decode).SetScript(Failing("cannot connect", /*names_prefill_group=*/true));
  // One prefill group: nowhere else to prefill.
  GenerateStream result = Run(IdsRequest(40, 100));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(result.status.error_message(), HasSubstr("prefill group 0: cannot connect"));
  EXPECT_THAT(result.status.error_message(), HasSubstr("not retried"));
  EXPECT_EQ(leader(decode).num_calls(), 1);

  // Two prefill groups that both fail: one retry, then the second error.
  const int32_t p1 = AddGroup(v1::POOL_ROLE_PREFILL);
  ASSERT_TRUE(TestWaitUntil([&] { return monitor_->Latest(p1).has_value(); }));
  result = Run(IdsRequest(40, 100));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(result.status.error_message(), HasSubstr("prefill group 2: cannot connect"));
  EXPECT_EQ(leader(decode).num_calls(), 3);
  EXPECT_TRUE(TestWaitUntil([&] { return AllSlotsFree(); }));
}

TEST_F(DisaggServingTest, ThePrefillSlotIsHeldUntilTheFirstToken) {
  const int32_t prefill = AddGroup(v1::POOL_ROLE_PREFILL);
  const int32_t decode = AddGroup(v1::POOL_ROLE_DECODE);
  Start();

  leader(decode).SetScript(Blocking());  // prefilling: no token yet
  grpc::ClientContext waiting;
  GenerateStream waiting_result;
  std::thread client = RunAsync(IdsRequest(40, 100), &waiting_result, &waiting);
  ASSERT_TRUE(leader(decode).WaitForCalls(1));
  EXPECT_EQ(router_->Inflight(prefill), 1);
  EXPECT_EQ(router_->Inflight(decode), 1);
  waiting.TryCancel();
  client.join();
  EXPECT_EQ(waiting_result.status.error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(TestWaitUntil([&] { return AllSlotsFree(); }));

  leader(decode).SetScript(Blocking(Encode(" first")));  // decoding after the first token
  grpc::ClientContext decoding;
  GenerateStream decoding_result;
  client = RunAsync(IdsRequest(40, 100), &decoding_result, &decoding);
  ASSERT_TRUE(leader(decode).WaitForCalls(2));
  EXPECT_TRUE(TestWaitUntil([&] { return router_->Inflight(prefill) == 0; }));
  EXPECT_EQ(router_->Inflight(decode), 1);
  decoding.TryCancel();
  client.join();
  EXPECT_TRUE(TestWaitUntil([&] { return AllSlotsFree(); }));
}

TEST_F(DisaggServingTest, AFullPrefillGroupIsResourceExhausted) {
  AddGroup(v1::POOL_ROLE_PREFILL);
  const int32_t d1 = AddGroup(v1::POOL_ROLE_DECODE);
  const int32_t d2 = AddGroup(v1::POOL_ROLE_DECODE);
  Start();
  leader(d1).SetScript(Blocking());
  leader(d2).SetScript(Blocking());
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<GenerateStream> results(kMaxInflight);
  std::vector<std::thread> clients;
  for (int i = 0; i < kMaxInflight; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    clients.push_back(RunAsync(IdsRequest(40, 100 * i), &results[i], contexts.back().get()));
    // One at a time, so each sees the slots the previous one holds.
    ASSERT_TRUE(TestWaitUntil([&] { return leader(d1).num_calls() + leader(d2).num_calls() > i; }));
  }
  GenerateStream refused = Run(IdsRequest(40, 7000));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("prefill pool"));
  for (auto& c : contexts) c->TryCancel();
  for (auto& t : clients) t.join();
}

TEST_F(DisaggServingTest, PrefillGroupsAloneCannotServe) {
  AddGroup(v1::POOL_ROLE_PREFILL);
  AddGroup(v1::POOL_ROLE_PREFILL);
  Start();
  GenerateStream result = Run(IdsRequest(40, 100));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(result.status.error_message(), HasSubstr("no decode or both group"));
  grpc::ClientContext context;
  v1::GetClusterStatusResponse status;
  ASSERT_TRUE(stub_->GetClusterStatus(&context, {}, &status).ok());
  EXPECT_FALSE(status.ready());
}

TEST_F(DisaggServingTest, DecodeGroupsAloneRunWholeRequests) {
  const int32_t decode = AddGroup(v1::POOL_ROLE_DECODE);
  Start();
  leader(decode).SetScript({Encode(" whole"), "length"});
  ASSERT_TRUE(Run(IdsRequest(40, 100)).status.ok());
  EXPECT_FALSE(leader(decode).last_request().has_remote_prefill());
  EXPECT_THAT(MetricsText(), HasSubstr("shardserve_time_to_first_token_seconds_count{group=\"0\","
                                       "pool=\"decode\"} 1"));
}

TEST_F(DisaggServingTest, ClusterStatusShowsPrefillGroupsWithTheirLoads) {
  const int32_t prefill = AddGroup(v1::POOL_ROLE_PREFILL, 700);
  const int32_t decode = AddGroup(v1::POOL_ROLE_DECODE, 600);
  Start();
  leader(decode).SetScript(Blocking());
  grpc::ClientContext held;
  GenerateStream held_result;
  std::thread client = RunAsync(IdsRequest(40, 100), &held_result, &held);
  ASSERT_TRUE(leader(decode).WaitForCalls(1));

  grpc::ClientContext context;
  v1::GetClusterStatusResponse status;
  ASSERT_TRUE(stub_->GetClusterStatus(&context, {}, &status).ok());
  EXPECT_TRUE(status.ready());
  ASSERT_EQ(status.groups_size(), 2);
  EXPECT_EQ(status.groups(prefill).pool(), "prefill");
  EXPECT_EQ(status.groups(prefill).leader_address(), LeaderAddress(prefill));
  EXPECT_EQ(status.groups(prefill).load().free_kv_blocks(), 700);
  EXPECT_EQ(status.groups(prefill).load().inflight_requests(), 1);
  EXPECT_EQ(status.groups(decode).pool(), "decode");
  EXPECT_EQ(status.groups(decode).load().free_kv_blocks(), 600);
  EXPECT_EQ(status.groups(decode).load().inflight_requests(), 1);
  held.TryCancel();
  client.join();
}

}  // namespace
}  // namespace shardserve
