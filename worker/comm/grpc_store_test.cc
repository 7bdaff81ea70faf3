#include "worker/comm/grpc_store.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "coordinator/rendezvous_store.h"
#include "coordinator/store_service.h"
#include "gloo/allreduce_ring.h"
#include "gloo/common/error.h"
#include "gloo/rendezvous/context.h"
#include "gloo/transport/tcp/device.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

// A StoreService on a free loopback port, as the coordinator hosts it.
class StoreServer {
 public:
  explicit StoreServer(const RendezvousStore::Limits& limits = RendezvousStore::Limits())
      : store_(limits) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~StoreServer() {
    store_.Close();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  bool ok() const { return server_ != nullptr && port_ > 0; }
  std::shared_ptr<grpc::Channel> NewChannel() const {
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                               grpc::InsecureChannelCredentials());
  }
  RendezvousStore& store() { return store_; }

 private:
  RendezvousStore store_;
  StoreService service_{&store_};
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

GrpcStore::Options TestOptions(std::string prefix) {
  GrpcStore::Options options;
  options.prefix = std::move(prefix);
  options.rpc_timeout = absl::Seconds(5);
  options.default_wait = absl::Seconds(10);
  return options;
}

TEST(GrpcStoreTest, StatusApiUsesPrefix) {
  StoreServer server;
  ASSERT_TRUE(server.ok());
  GrpcStore a(server.NewChannel(), TestOptions("group/0/"));
  GrpcStore b(server.NewChannel(), TestOptions("group/1/"));
  ASSERT_TRUE(a.Set("id", "zero").ok());
  ASSERT_TRUE(b.Set("id", "one").ok());
  EXPECT_EQ(*a.Get("id", absl::ZeroDuration()), "zero");
  EXPECT_EQ(*b.Get("id", absl::ZeroDuration()), "one");
  EXPECT_EQ(*server.store().Get("group/1/id", absl::ZeroDuration()), "one");
  EXPECT_EQ(*a.Add("joined", 1), 1);
  EXPECT_EQ(*a.Add("joined", 1), 2);
  EXPECT_EQ(*b.Add("joined", 1), 1);
  EXPECT_TRUE(a.Wait({"id"}, absl::Milliseconds(10)).ok());
  EXPECT_EQ(a.Wait({"id", "other"}, absl::Milliseconds(50)).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(GrpcStoreTest, GlooVirtualsBlockAndThrow) {
  RendezvousStore::Limits limits;
  limits.max_value_bytes = 64;
  StoreServer server(limits);
  ASSERT_TRUE(server.ok());
  GrpcStore store(server.NewChannel(), TestOptions("g/"));
  std::vector<char> got;
  std::thread reader([&] { got = store.get("addr"); });  // waits for the later set
  absl::SleepFor(absl::Milliseconds(50));
  store.set("addr", {'a', '\0', 'b'});
  reader.join();
  EXPECT_EQ(got, (std::vector<char>{'a', '\0', 'b'}));

  EXPECT_THROW(store.wait({"missing"}, std::chrono::milliseconds(50)), gloo::IoException);
  EXPECT_THROW(store.set("big", std::vector<char>(65, 'x')), gloo::InvalidOperationException);
}

TEST(GrpcStoreTest, UnreachableStoreFailsWithinDeadline) {
  // Nothing listens on port 1 of loopback (a privileged port no test process binds).
  GrpcStore::Options options = TestOptions("");
  options.rpc_timeout = absl::Milliseconds(300);
  GrpcStore store(grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()), options);
  absl::Time start = absl::Now();
  EXPECT_EQ(store.Set("k", "v").code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THROW(store.set("k", {'v'}), gloo::IoException);
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

// Each rank forms a Gloo context through its own GrpcStore and the ranks all-reduce over TCP
// on loopback: the path a CPU engine group takes to connect in a cluster.
void RunAllReduce(int world_size) {
  StoreServer server;
  ASSERT_TRUE(server.ok());
  constexpr int kCount = 1000;
  std::vector<std::vector<float>> data(world_size, std::vector<float>(kCount));
  std::vector<std::string> errors(world_size);
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < world_size; ++rank) {
    ranks.emplace_back([&, rank] {
      try {
        GrpcStore store(server.NewChannel(), TestOptions("group/7/gloo/"));
        gloo::transport::tcp::attr attr;
        attr.hostname = "127.0.0.1";
        auto device = gloo::transport::tcp::CreateDevice(attr);
        auto context = std::make_shared<gloo::rendezvous::Context>(rank, world_size);
        context->setTimeout(std::chrono::seconds(20));
        context->connectFullMesh(store, device);
        std::vector<float>& mine = data[rank];
        for (int i = 0; i < kCount; ++i) mine[i] = static_cast<float>(rank * 1000 + i);
        std::vector<float*> ptrs = {mine.data()};
        gloo::AllreduceRing<float> allreduce(context, ptrs, kCount);
        allreduce.run();
      } catch (const std::exception& e) {
        errors[rank] = e.what();
      }
    });
  }
  for (std::thread& t : ranks) t.join();
  for (int rank = 0; rank < world_size; ++rank) {
    ASSERT_EQ(errors[rank], "") << "rank " << rank;
    for (int i = 0; i < kCount; ++i) {
      // sum over ranks r of (r * 1000 + i)
      float expected = 1000.0f * world_size * (world_size - 1) / 2 + world_size * i;
      ASSERT_EQ(data[rank][i], expected) << "rank " << rank << " element " << i;
    }
  }
  // Gloo published its addresses under the group's prefix only.
  const size_t num_keys = server.store().size();
  EXPECT_GT(num_keys, 0u);
  EXPECT_EQ(server.store().RemovePrefix("group/7/gloo/"), num_keys);
}

TEST(GrpcStoreTest, GlooAllReduceTwoRanks) { RunAllReduce(2); }

TEST(GrpcStoreTest, GlooAllReduceThreeRanks) { RunAllReduce(3); }

}  // namespace
}  // namespace shardserve
