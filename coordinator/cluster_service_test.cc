#include "coordinator/cluster_service.h"

#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "coordinator/worker_registry.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

constexpr char kFingerprint[] = "aaaabbbbccccdddd";

ModelConfig TinyDense() {
  ModelConfig c;
  c.arch_name = "llama";
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  return c;
}

std::unique_ptr<WorkerRegistry> MakeRegistry(int tp, absl::Duration heartbeat_timeout) {
  ClusterLayout layout;
  layout.both.num_groups = 1;
  layout.both.layout.tp_size = tp;
  absl::StatusOr<PlacementPlanner> planner = PlacementPlanner::Create(TinyDense(), layout);
  EXPECT_TRUE(planner.ok()) << planner.status();
  WorkerRegistry::Options options;
  options.model_path = "/models/tiny.gguf";
  options.model_fingerprint = kFingerprint;
  options.heartbeat_timeout = heartbeat_timeout;
  options.wait_for_workers = absl::ZeroDuration();
  return std::make_unique<WorkerRegistry>(*std::move(planner), options);
}

v1::WorkerInfo Worker(const std::string& fingerprint = kFingerprint) {
  v1::WorkerInfo w;
  w.set_host("127.0.0.1");
  w.set_role(v1::POOL_ROLE_BOTH);
  w.set_device("cpu");
  w.set_model_path("/models/tiny.gguf");
  w.set_model_fingerprint(fingerprint);
  return w;
}

// A real server on an in-process channel, so the status conversion is exercised too.
class ClusterServiceTest : public ::testing::Test {
 protected:
  void Start(int tp, absl::Duration heartbeat_timeout) {
    registry_ = MakeRegistry(tp, heartbeat_timeout);
    service_ = std::make_unique<ClusterService>(registry_.get());
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    stub_ = v1::ClusterService::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
  }
  void TearDown() override {
    if (registry_ != nullptr) registry_->Close();
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
  }

  std::string Register(const v1::WorkerInfo& info, grpc::Status* status = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::RegisterRequest request;
    *request.mutable_worker() = info;
    v1::RegisterReply reply;
    grpc::Status s = stub_->Register(&context, request, &reply);
    if (status != nullptr) *status = s;
    return reply.worker_id();
  }
  grpc::Status GetAssignment(const std::string& id, int64_t wait_ms,
                             v1::GetAssignmentReply* reply) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetAssignmentRequest request;
    request.set_worker_id(id);
    request.set_wait_timeout_ms(wait_ms);
    return stub_->GetAssignment(&context, request, reply);
  }
  v1::GetPlanReply GetPlan() {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::GetPlanReply reply;
    EXPECT_TRUE(stub_->GetPlan(&context, v1::GetPlanRequest(), &reply).ok());
    return reply;
  }
  grpc::Status ReportReady(const std::string& id, int64_t epoch, const std::string& error = "") {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ReportReadyRequest request;
    request.set_worker_id(id);
    request.set_plan_epoch(epoch);
    request.set_error(error);
    request.set_resident_bytes(1000);
    v1::ReportReadyReply reply;
    return stub_->ReportReady(&context, request, &reply);
  }

  std::unique_ptr<WorkerRegistry> registry_;
  std::unique_ptr<ClusterService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::ClusterService::Stub> stub_;
};

TEST_F(ClusterServiceTest, GroupBecomesReadyWhenEveryRankReports) {
  Start(/*tp=*/2, absl::Seconds(30));
  const std::string a = Register(Worker());
  EXPECT_EQ(a, "worker-1");
  // A long poll started before the plan exists is answered once the second worker registers.
  v1::GetAssignmentReply reply_a;
  grpc::Status status_a;
  std::thread poll([&] { status_a = GetAssignment(a, 4000, &reply_a); });
  absl::SleepFor(absl::Milliseconds(100));
  const std::string b = Register(Worker());
  poll.join();
  ASSERT_TRUE(status_a.ok()) << status_a.error_message();
  EXPECT_EQ(reply_a.assignment().group_rank(), 0);
  EXPECT_EQ(reply_a.peers_size(), 2);
  EXPECT_EQ(reply_a.plan_epoch(), 1);
  EXPECT_FALSE(reply_a.group().rendezvous_prefix().empty());
  v1::GetAssignmentReply reply_b;
  ASSERT_TRUE(GetAssignment(b, 1000, &reply_b).ok());
  EXPECT_EQ(reply_b.assignment().tp_rank(), 1);

  ASSERT_TRUE(ReportReady(a, 1).ok());
  EXPECT_FALSE(GetPlan().plan().groups(0).ready());
  EXPECT_EQ(ReportReady(b, 7).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_TRUE(ReportReady(b, 1).ok());
  v1::GetPlanReply plan = GetPlan();
  EXPECT_TRUE(plan.plan().groups(0).ready());
  EXPECT_TRUE(plan.problems().empty());
  EXPECT_EQ(plan.workers(0).resident_bytes(), 1000);
  EXPECT_EQ(plan.model_fingerprint(), kFingerprint);
}

TEST_F(ClusterServiceTest, TooFewWorkersIsExplained) {
  Start(/*tp=*/2, absl::Seconds(30));
  const std::string a = Register(Worker());
  v1::GetAssignmentReply reply;
  EXPECT_EQ(GetAssignment(a, 50, &reply).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  v1::GetPlanReply plan = GetPlan();
  EXPECT_FALSE(plan.has_plan());
  ASSERT_EQ(plan.problems_size(), 1);
  EXPECT_TRUE(absl::StrContains(plan.problems(0), "need 2 workers")) << plan.problems(0);
}

TEST_F(ClusterServiceTest, DifferentModelIsRefused) {
  Start(/*tp=*/1, absl::Seconds(30));
  grpc::Status status;
  Register(Worker("0123456789abcdef"), &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "fingerprint mismatch"));
  v1::GetPlanReply plan = GetPlan();
  EXPECT_EQ(plan.workers_size(), 0);
  bool listed = false;
  for (const std::string& p : plan.problems()) listed |= absl::StrContains(p, "fingerprint");
  EXPECT_TRUE(listed);
}

TEST_F(ClusterServiceTest, SilentWorkerFailsItsGroup) {
  Start(/*tp=*/1, absl::Milliseconds(200));
  const std::string a = Register(Worker());
  ASSERT_TRUE(ReportReady(a, 1).ok());
  EXPECT_TRUE(GetPlan().plan().groups(0).ready());
  absl::SleepFor(absl::Milliseconds(300));
  registry_->Sweep();
  v1::GetPlanReply plan = GetPlan();
  EXPECT_FALSE(plan.plan().groups(0).ready());
  EXPECT_TRUE(absl::StrContains(plan.plan().groups(0).error(), "missed heartbeats"))
      << plan.plan().groups(0).error();
  EXPECT_FALSE(plan.worker_status(0).alive());
  grpc::ClientContext context;
  v1::HeartbeatRequest beat;
  beat.set_worker_id(a);
  v1::HeartbeatReply beat_reply;
  EXPECT_EQ(stub_->Heartbeat(&context, beat, &beat_reply).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ClusterServiceTest, LateWorkersAreSpares) {
  Start(/*tp=*/1, absl::Seconds(30));
  Register(Worker());
  const std::string spare = Register(Worker());
  v1::GetPlanReply plan = GetPlan();
  ASSERT_EQ(plan.plan().spare_worker_ids_size(), 1);
  EXPECT_EQ(plan.plan().spare_worker_ids(0), spare);
  v1::GetAssignmentReply reply;
  EXPECT_EQ(GetAssignment(spare, 50, &reply).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

}  // namespace
}  // namespace shardserve
