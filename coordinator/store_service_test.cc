#include "coordinator/store_service.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

class StoreServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::StoreService::NewStub(channel_);
  }

  void TearDown() override {
    store_.Close();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  // Every RPC carries a deadline so that a broken server fails the test instead of hanging it.
  static void SetDeadline(grpc::ClientContext* context, int ms = 5000) {
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
  }

  RendezvousStore store_;
  StoreService service_{&store_};
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::StoreService::Stub> stub_;
};

TEST_F(StoreServiceTest, SetGetRoundTripsBytes) {
  grpc::ClientContext set_ctx;
  SetDeadline(&set_ctx);
  v1::SetRequest set;
  set.set_key("group/0/rank_0");
  set.set_value(std::string("\x00\xff\x01", 3));
  v1::SetReply set_reply;
  ASSERT_TRUE(stub_->Set(&set_ctx, set, &set_reply).ok());

  grpc::ClientContext get_ctx;
  SetDeadline(&get_ctx);
  v1::GetRequest get;
  get.set_key("group/0/rank_0");
  v1::GetReply get_reply;
  grpc::Status s = stub_->Get(&get_ctx, get, &get_reply);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(get_reply.value(), std::string("\x00\xff\x01", 3));
}

TEST_F(StoreServiceTest, BlockingGetReleasedBySetFromAnotherClient) {
  grpc::Status get_status;
  v1::GetReply get_reply;
  std::thread reader([&] {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, 20000);
    v1::GetRequest get;
    get.set_key("late");
    get.set_timeout_ms(15000);
    get_status = stub_->Get(&ctx, get, &get_reply);
  });
  absl::SleepFor(absl::Milliseconds(100));
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::SetRequest set;
  set.set_key("late");
  set.set_value("here");
  v1::SetReply set_reply;
  ASSERT_TRUE(stub_->Set(&ctx, set, &set_reply).ok());
  reader.join();
  ASSERT_TRUE(get_status.ok()) << get_status.error_message();
  EXPECT_EQ(get_reply.value(), "here");
}

TEST_F(StoreServiceTest, WaitTimesOutWithStoreMessage) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::WaitRequest wait;
  wait.add_keys("missing");
  wait.set_timeout_ms(100);
  v1::WaitReply reply;
  grpc::Status s = stub_->Wait(&ctx, wait, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_NE(s.error_message().find("missing"), std::string::npos) << s.error_message();
}

TEST_F(StoreServiceTest, WaitEndsBeforeRpcDeadline) {
  // The request asks for a minute but the RPC allows 300 ms: the server answers in time, with its
  // own explanation rather than gRPC's bare deadline.
  grpc::ClientContext ctx;
  SetDeadline(&ctx, 300);
  v1::GetRequest get;
  get.set_key("never");
  get.set_timeout_ms(60000);
  v1::GetReply reply;
  absl::Time start = absl::Now();
  grpc::Status s = stub_->Get(&ctx, get, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(StoreServiceTest, AddAndErrors) {
  for (int expected : {5, 3}) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::AddRequest add;
    add.set_key("counter");
    add.set_delta(expected == 5 ? 5 : -2);
    v1::AddReply reply;
    ASSERT_TRUE(stub_->Add(&ctx, add, &reply).ok());
    EXPECT_EQ(reply.value(), expected);
  }
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::SetRequest set;  // empty key
  v1::SetReply reply;
  EXPECT_EQ(stub_->Set(&ctx, set, &reply).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext get_ctx;
  SetDeadline(&get_ctx);
  v1::GetRequest get;
  get.set_key("absent");
  v1::GetReply get_reply;
  EXPECT_EQ(stub_->Get(&get_ctx, get, &get_reply).error_code(), grpc::StatusCode::NOT_FOUND);
}

}  // namespace
}  // namespace shardserve
