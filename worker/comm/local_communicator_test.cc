#include "worker/comm/local_communicator.h"

#include <functional>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace shardserve {
namespace {

// Runs fn(rank) on one thread per rank and returns each rank's status.
std::vector<absl::Status> RunRanks(std::vector<std::unique_ptr<LocalCommunicator>>& comms,
                                   const std::function<absl::Status(LocalCommunicator*)>& fn) {
  std::vector<absl::Status> status(comms.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < comms.size(); ++r) {
    threads.emplace_back([&, r] { status[r] = fn(comms[r].get()); });
  }
  for (auto& t : threads) t.join();
  return status;
}

void ExpectAllOk(const std::vector<absl::Status>& status) {
  for (size_t r = 0; r < status.size(); ++r) EXPECT_TRUE(status[r].ok()) << r << ": " << status[r];
}

TEST(LocalCommunicatorTest, AllReduceSumIsIdenticalOnEveryRank) {
  constexpr int kRanks = 3;
  auto comms = LocalCommunicator::CreateGroup(kRanks, absl::Seconds(10));
  std::vector<std::vector<float>> data(kRanks);
  ExpectAllOk(RunRanks(comms, [&](LocalCommunicator* c) -> absl::Status {
    std::vector<float>& d = data[c->rank()];
    for (int step = 0; step < 50; ++step) {
      d.assign(5, 0.0f);
      for (int i = 0; i < 5; ++i) d[i] = 0.1f * (c->rank() + 1) * (i + step);
      absl::Status s = c->AllReduceSum(TensorView::Cpu(d.data(), DType::kF32, {5}));
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }));
  for (int i = 0; i < 5; ++i) {
    const float expected = 0.1f * 1 * (i + 49) + 0.1f * 2 * (i + 49) + 0.1f * 3 * (i + 49);
    EXPECT_FLOAT_EQ(data[0][i], expected);
    EXPECT_EQ(data[1][i], data[0][i]);
    EXPECT_EQ(data[2][i], data[0][i]);
  }
}

TEST(LocalCommunicatorTest, AllGatherBroadcastAllToAll) {
  constexpr int kRanks = 3;
  auto comms = LocalCommunicator::CreateGroup(kRanks, absl::Seconds(10));
  std::vector<std::vector<int32_t>> gathered(kRanks), bcast(kRanks), a2a(kRanks);
  ExpectAllOk(RunRanks(comms, [&](LocalCommunicator* c) -> absl::Status {
    const int r = c->rank();
    std::vector<int32_t> send = {10 * r, 10 * r + 1};
    gathered[r].assign(2 * kRanks, -1);
    absl::Status s = c->AllGather(TensorView::Cpu(send.data(), DType::kI32, {2}),
                                  TensorView::Cpu(gathered[r].data(), DType::kI32, {kRanks, 2}));
    if (!s.ok()) return s;
    bcast[r] = {r, r};
    s = c->Broadcast(TensorView::Cpu(bcast[r].data(), DType::kI32, {2}), /*root=*/1);
    if (!s.ok()) return s;
    std::vector<int32_t> out(kRanks);
    for (int d = 0; d < kRanks; ++d) out[d] = 100 * r + d;  // block d goes to rank d
    a2a[r].assign(kRanks, -1);
    return c->AllToAll(TensorView::Cpu(out.data(), DType::kI32, {kRanks}),
                       TensorView::Cpu(a2a[r].data(), DType::kI32, {kRanks}));
  }));
  for (int r = 0; r < kRanks; ++r) {
    EXPECT_EQ(gathered[r], (std::vector<int32_t>{0, 1, 10, 11, 20, 21}));
    EXPECT_EQ(bcast[r], (std::vector<int32_t>{1, 1}));
    EXPECT_EQ(a2a[r], (std::vector<int32_t>{r, 100 + r, 200 + r}));
  }
}

TEST(LocalCommunicatorTest, SendRecvInOrderAndBarrier) {
  auto comms = LocalCommunicator::CreateGroup(2, absl::Seconds(10));
  std::vector<float> got;
  ExpectAllOk(RunRanks(comms, [&](LocalCommunicator* c) -> absl::Status {
    if (c->rank() == 0) {
      for (int i = 0; i < 4; ++i) {
        float v[2] = {static_cast<float>(i), static_cast<float>(-i)};
        absl::Status s = c->Send(TensorView::Cpu(v, DType::kF32, {2}), 1);
        if (!s.ok()) return s;
      }
    } else {
      for (int i = 0; i < 4; ++i) {
        float v[2];
        absl::Status s = c->Recv(TensorView::Cpu(v, DType::kF32, {2}), 0);
        if (!s.ok()) return s;
        got.push_back(v[0]);
        got.push_back(v[1]);
      }
    }
    return c->Barrier();
  }));
  EXPECT_EQ(got, (std::vector<float>{0, 0, 1, -1, 2, -2, 3, -3}));
}

TEST(LocalCommunicatorTest, RecvWakesAsSoonAsTheDataArrives) {
  auto comms = LocalCommunicator::CreateGroup(2, absl::Seconds(30));
  const absl::Time start = absl::Now();
  ExpectAllOk(RunRanks(comms, [&](LocalCommunicator* c) -> absl::Status {
    float v = 7;
    if (c->rank() == 1) return c->Recv(TensorView::Cpu(&v, DType::kF32, {1}), 0);
    absl::SleepFor(absl::Milliseconds(50));  // the receiver is already waiting
    return c->Send(TensorView::Cpu(&v, DType::kF32, {1}), 1);
  }));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST(LocalCommunicatorTest, MissingRankTimesOutAndBreaksTheGroup) {
  auto comms = LocalCommunicator::CreateGroup(2, absl::Milliseconds(100));
  float x[3] = {1, 2, 3};
  const TensorView v = TensorView::Cpu(x, DType::kF32, {3});
  // Rank 1 never joins.
  EXPECT_EQ(comms[0]->AllReduceSum(v).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(comms[0]->Barrier().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(comms[1]->AllReduceSum(v).code(), absl::StatusCode::kUnavailable);
}

TEST(LocalCommunicatorTest, RecvWithoutSendTimesOut) {
  auto comms = LocalCommunicator::CreateGroup(2, absl::Milliseconds(100));
  float x[1];
  EXPECT_EQ(comms[1]->Recv(TensorView::Cpu(x, DType::kF32, {1}), 0).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(LocalCommunicatorTest, MismatchedCollectivesFailOnEveryRank) {
  auto comms = LocalCommunicator::CreateGroup(2, absl::Seconds(10));
  auto status = RunRanks(comms, [&](LocalCommunicator* c) -> absl::Status {
    std::vector<float> d(c->rank() == 0 ? 2 : 3, 1.0f);
    return c->AllReduceSum(
        TensorView::Cpu(d.data(), DType::kF32, {static_cast<int64_t>(d.size())}));
  });
  EXPECT_FALSE(status[0].ok());
  EXPECT_FALSE(status[1].ok());
}

TEST(LocalCommunicatorTest, RejectsBadArguments) {
  auto comms = LocalCommunicator::CreateGroup(2, absl::Seconds(1));
  float x[4] = {};
  EXPECT_EQ(comms[0]->Send(TensorView::Cpu(x, DType::kF32, {4}), 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comms[0]->Broadcast(TensorView::Cpu(x, DType::kF32, {4}), 2).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      comms[0]
          ->AllGather(TensorView::Cpu(x, DType::kF32, {4}), TensorView::Cpu(x, DType::kF32, {4}))
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comms[0]->AllReduceSum(TensorView::Cpu(x, DType::kI32, {4})).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(comms[0]->backend(), "local");
  EXPECT_EQ(comms[1]->world_size(), 2);
}

}  // namespace
}  // namespace shardserve
