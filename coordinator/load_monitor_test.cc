// LoadMonitor against in-process leaders (FakeLeader) that report set loads or hang. Waits poll
// with deadlines; nothing assumes how fast a poll is.
#include "coordinator/load_monitor.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/testing/test_env.h"
#include "coordinator/fake_leader.h"
#include "coordinator/request_router.h"
#include "coordinator/test_plan.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

using ::testing::HasSubstr;

v1::GetLoadReply Load(int32_t free_blocks, int32_t running = 0) {
  v1::GetLoadReply load;
  load.set_num_kv_blocks(1000);
  load.set_free_kv_blocks(free_blocks);
  load.set_running_requests(running);
  return load;
}

// A plan whose group i is led by leaders_[i] (a started FakeLeader).
class LoadMonitorTest : public ::testing::Test {
 protected:
  void AddGroup(v1::PoolRole role, bool ready) {
    leaders_.push_back(std::make_unique<FakeLeader>());
    const int port = leaders_.back()->Start();
    ASSERT_NE(port, 0);
    plan_.AddGroup(role, ready, port);
  }
  void StartMonitor(LoadMonitor::Options options) {
    router_ = std::make_unique<RequestRouter>(plan_.Source(), RequestRouter::Options());
    monitor_ = std::make_unique<LoadMonitor>(router_.get(), options);
  }
  uint64_t Sequence(int id) {
    std::optional<LoadMonitor::Report> r = monitor_->Latest(id);
    return r.has_value() ? r->sequence : 0;
  }

  TestPlan plan_;
  std::vector<std::unique_ptr<FakeLeader>> leaders_;
  std::unique_ptr<RequestRouter> router_;
  std::unique_ptr<LoadMonitor> monitor_;  // destroyed before the router
};

LoadMonitor::Options Fast(absl::Duration call_timeout = absl::Seconds(5)) {
  LoadMonitor::Options options;
  options.poll_interval = absl::Milliseconds(5);
  options.call_timeout = call_timeout;
  return options;
}

TEST_F(LoadMonitorTest, KeepsTheLatestLoadOfEveryReadyLeader) {
  AddGroup(v1::POOL_ROLE_PREFILL, true);
  AddGroup(v1::POOL_ROLE_DECODE, true);
  AddGroup(v1::POOL_ROLE_DECODE, false);
  leaders_[0]->SetLoad(Load(900, 1));
  leaders_[1]->SetLoad(Load(400, 3));
  leaders_[2]->SetLoad(Load(1));
  StartMonitor(Fast());

  ASSERT_TRUE(TestWaitUntil([&] { return Sequence(0) > 0 && Sequence(1) > 0; }));
  const LoadMonitor::Report prefill = *monitor_->Latest(0);
  EXPECT_EQ(prefill.load.free_kv_blocks(), 900);
  EXPECT_EQ(prefill.load.running_requests(), 1);
  EXPECT_EQ(prefill.leader_address,
            RequestRouter::LeaderAddress(plan_.Get(), plan_.Get().plan().groups(0)));
  EXPECT_EQ(monitor_->Latest(1)->load.free_kv_blocks(), 400);
  EXPECT_LE(prefill.sequence, monitor_->last_issued_sequence());
  EXPECT_FALSE(monitor_->Latest(2).has_value()) << "a group that is not ready is not polled";
  EXPECT_EQ(leaders_[2]->num_load_calls(), 0);

  // A new load shows in a later report, from a later call.
  const LoadMonitor::Report before = *monitor_->Latest(1);
  leaders_[1]->SetLoad(Load(250, 5));
  ASSERT_TRUE(TestWaitUntil([&] { return monitor_->Latest(1)->load.free_kv_blocks() == 250; }));
  EXPECT_GT(monitor_->Latest(1)->sequence, before.sequence);
  EXPECT_GE(monitor_->Latest(1)->received, before.received);

  // A group that stops being ready loses its report; one that becomes ready gets one.
  plan_.SetReady(1, false);
  plan_.SetReady(2, true);
  EXPECT_TRUE(TestWaitUntil([&] { return !monitor_->Latest(1).has_value(); }));
  EXPECT_TRUE(TestWaitUntil([&] { return Sequence(2) > 0; }));
  EXPECT_EQ(monitor_->Latest(2)->load.free_kv_blocks(), 1);
}

TEST_F(LoadMonitorTest, AHungLeaderHoldsOneCallAndDelaysNoOtherGroup) {
  AddGroup(v1::POOL_ROLE_PREFILL, true);
  AddGroup(v1::POOL_ROLE_DECODE, true);
  leaders_[0]->SetGetLoadHangs(true);
  leaders_[1]->SetLoad(Load(300));
  StartMonitor(Fast(/*call_timeout=*/absl::Seconds(60)));  // the hung call stays out all along

  ASSERT_TRUE(leaders_[0]->WaitForLoadCalls(1));
  const uint64_t first = Sequence(1);
  // Group 1 keeps being polled while group 0's call hangs.
  for (int round = 0; round < 3; ++round) {
    const uint64_t seen = Sequence(1);
    ASSERT_TRUE(TestWaitUntil([&] { return Sequence(1) > seen; })) << "round " << round;
  }
  EXPECT_GT(Sequence(1), first);
  EXPECT_EQ(leaders_[0]->num_load_calls(), 1) << "no second call while the first is out";
  EXPECT_FALSE(monitor_->Latest(0).has_value());

  // Destroying the monitor cancels the hung call instead of waiting for its deadline.
  const absl::Time start = absl::Now();
  monitor_.reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

TEST_F(LoadMonitorTest, TheCallDeadlineBoundsAHungLeader) {
  AddGroup(v1::POOL_ROLE_DECODE, true);
  leaders_[0]->SetGetLoadHangs(true);
  StartMonitor(Fast(/*call_timeout=*/absl::Milliseconds(50)));

  ASSERT_TRUE(TestWaitUntil([&] { return !monitor_->LastError(0).empty(); }));
  EXPECT_THAT(monitor_->LastError(0), HasSubstr("DEADLINE_EXCEEDED"));
  EXPECT_FALSE(monitor_->Latest(0).has_value());
  // After the deadline the group is polled again, and a leader that answers clears the error.
  ASSERT_TRUE(leaders_[0]->WaitForLoadCalls(2));
  leaders_[0]->SetLoad(Load(77));
  leaders_[0]->SetGetLoadHangs(false);
  ASSERT_TRUE(TestWaitUntil([&] { return Sequence(0) > 0; }));
  EXPECT_EQ(monitor_->Latest(0)->load.free_kv_blocks(), 77);
  EXPECT_TRUE(TestWaitUntil([&] { return monitor_->LastError(0).empty(); }));
}

}  // namespace
}  // namespace shardserve
