// RequestDispatcher over a plan of in-process leaders (FakeLeader) that only answer GetLoad: the
// dispatcher never calls Generate, so these tests see its decisions, slots and reservations alone.
#include "coordinator/request_dispatcher.h"

#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/testing/test_env.h"
#include "coordinator/disagg_router.h"
#include "coordinator/fake_leader.h"
#include "coordinator/load_monitor.h"
#include "coordinator/request_router.h"
#include "coordinator/test_plan.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"

namespace shardserve {
namespace {

using ::testing::HasSubstr;

constexpr int kMaxInflight = 4;
constexpr int32_t kBlockSize = 16;

// `num_blocks` full blocks of token ids starting at `first`.
std::vector<int32_t> Prompt(int num_blocks, int32_t first) {
  std::vector<int32_t> ids(num_blocks * kBlockSize);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = first + static_cast<int32_t>(i);
  return ids;
}

class RequestDispatcherTest : public ::testing::Test {
 protected:
  // A group led by a new FakeLeader reporting `free_blocks` of 1000 (nullopt: a leader that
  // never answers GetLoad, so the group has no report).
  int32_t AddGroup(v1::PoolRole role, std::optional<int32_t> free_blocks, bool ready = true) {
    leaders_.push_back(std::make_unique<FakeLeader>());
    FakeLeader& leader = *leaders_.back();
    if (free_blocks.has_value()) {
      v1::GetLoadReply load;
      load.set_num_kv_blocks(1000);
      load.set_free_kv_blocks(*free_blocks);
      leader.SetLoad(load);
    } else {
      leader.SetGetLoadHangs(true);
    }
    return plan_.AddGroup(role, ready, leader.Start());
  }
  // Starts routing; polls loads every `poll_interval` (the first poll at once).
  void Start(absl::Duration poll_interval = absl::Milliseconds(5)) {
    RequestRouter::Options router_options;
    router_options.max_inflight_per_group = kMaxInflight;
    router_ = std::make_unique<RequestRouter>(plan_.Source(), router_options);
    LoadMonitor::Options monitor_options;
    monitor_options.poll_interval = poll_interval;
    monitor_ = std::make_unique<LoadMonitor>(router_.get(), monitor_options);
    DisaggRouter::Options disagg_options;
    disagg_options.max_inflight_per_group = kMaxInflight;
    disagg_ = std::make_unique<DisaggRouter>(registry_, disagg_options);
    RequestDispatcher::Options options;
    options.block_size = kBlockSize;
    dispatcher_ =
        std::make_unique<RequestDispatcher>(router_.get(), disagg_.get(), monitor_.get(), options);
  }
  void WaitForReport(int32_t group_id, uint64_t newer_than = 0) {
    ASSERT_TRUE(TestWaitUntil([&] {
      std::optional<LoadMonitor::Report> r = monitor_->Latest(group_id);
      return r.has_value() && r->sequence > newer_than;
    })) << "group "
        << group_id;
  }
  absl::StatusOr<RequestDispatcher::Assignment> Pick(const std::vector<int32_t>& prompt,
                                                     int32_t max_tokens = 16,
                                                     RequestDispatcher::Avoid avoid = {}) {
    return dispatcher_->Pick({prompt, max_tokens}, avoid);
  }

  prometheus::Registry registry_;
  TestPlan plan_;
  std::vector<std::unique_ptr<FakeLeader>> leaders_;
  std::unique_ptr<RequestRouter> router_;
  std::unique_ptr<LoadMonitor> monitor_;
  std::unique_ptr<DisaggRouter> disagg_;
  std::unique_ptr<RequestDispatcher> dispatcher_;
};

TEST_F(RequestDispatcherTest, DisaggregatedPickHoldsBothSlotsAndNamesThePrefillLeader) {
  const int32_t prefill = AddGroup(v1::POOL_ROLE_PREFILL, 1000);
  AddGroup(v1::POOL_ROLE_PREFILL, 1000);
  const int32_t decode = AddGroup(v1::POOL_ROLE_DECODE, 1000);
  Start();
  WaitForReport(decode);

  absl::StatusOr<RequestDispatcher::Assignment> a = Pick(Prompt(2, 100));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->disaggregated());
  EXPECT_EQ(a->route().group_id(), decode);
  EXPECT_EQ(a->route().pool(), "decode");
  EXPECT_EQ(a->prefill_group_id(), prefill) << "idle prefill groups tie; the lower id wins";
  EXPECT_EQ(a->decision().decode_blocks_needed, 3);  // (32 + 16) / 16

  v1::GenerateOnGroupRequest request;
  a->PrepareRequest(&request);
  EXPECT_EQ(request.remote_prefill().group_id(), prefill);
  EXPECT_EQ(request.remote_prefill().leader_address(),
            RequestRouter::LeaderAddress(plan_.Get(), plan_.Get().plan().groups(prefill)));

  EXPECT_EQ(router_->Inflight(prefill), 1);
  EXPECT_EQ(router_->Inflight(decode), 1);
  a->ReleasePrefill();
  a->ReleasePrefill();  // idempotent
  EXPECT_FALSE(a->holds_prefill_slot());
  EXPECT_EQ(a->prefill_group_id(), prefill) << "kept for labels and errors";
  EXPECT_EQ(router_->Inflight(prefill), 0);
  EXPECT_EQ(router_->Inflight(decode), 1);
  a = absl::UnavailableError("drop the assignment");
  EXPECT_EQ(router_->Inflight(decode), 0);
}

TEST_F(RequestDispatcherTest, ReservationsHoldBlocksUntilTheRequestEnds) {
  AddGroup(v1::POOL_ROLE_PREFILL, 1000);
  const int32_t decode = AddGroup(v1::POOL_ROLE_DECODE, 50);
  AddGroup(v1::POOL_ROLE_DECODE, 40);
  Start(/*poll_interval=*/absl::Hours(1));  // one report each, never a newer one
  WaitForReport(decode);
  WaitForReport(decode + 1);

  // Each request needs 30 blocks: (16 + 464) / 16.
  absl::StatusOr<RequestDispatcher::Assignment> first = Pick(Prompt(1, 0), 464);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->route().group_id(), decode);
  // The report still says 50 free, but 30 are held back for the first request: 20 < 40.
  absl::StatusOr<RequestDispatcher::Assignment> second = Pick(Prompt(1, 1000), 464);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->route().group_id(), decode + 1);
  // Neither has room now (20 and 10 available): the request queues where most are available.
  absl::StatusOr<RequestDispatcher::Assignment> third = Pick(Prompt(1, 2000), 464);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->route().group_id(), decode);
  third = absl::CancelledError("the third request ended");
  first = absl::CancelledError("the first request ended");
  // Both of decode's reservations are gone: 50 available again.
  third = Pick(Prompt(1, 3000), 464);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->route().group_id(), decode);
}

TEST_F(RequestDispatcherTest, ANewerLoadReportReleasesTheReservation) {
  AddGroup(v1::POOL_ROLE_PREFILL, 1000);
  const int32_t decode = AddGroup(v1::POOL_ROLE_DECODE, 50);
  Start();
  WaitForReport(decode);

  absl::StatusOr<RequestDispatcher::Assignment> first = Pick(Prompt(1, 0), 464);
  ASSERT_TRUE(first.ok()) << first.status();
  const uint64_t mark = monitor_->last_issued_sequence();
  // The fake leader never counts the request, so a report issued after the decision shows 50
  // free again and the reservation goes, while the first request still runs.
  WaitForReport(decode, mark);
  absl::StatusOr<RequestDispatcher::Assignment> second = Pick(Prompt(1, 1000), 464);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(router_->Inflight(decode), 2);
}

TEST_F(RequestDispatcherTest, GroupsWithoutALoadReportAreAdmittedAndSpreadByInFlight) {
  AddGroup(v1::POOL_ROLE_PREFILL, std::nullopt);
  const int32_t d1 = AddGroup(v1::POOL_ROLE_DECODE, std::nullopt);
  const int32_t d2 = AddGroup(v1::POOL_ROLE_DECODE, std::nullopt);
  Start();
  ASSERT_TRUE(leaders_[d2]->WaitForLoadCalls(1));  // polled, never answered
  absl::StatusOr<RequestDispatcher::Assignment> a = Pick(Prompt(4, 0), 4000);
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<RequestDispatcher::Assignment> b = Pick(Prompt(4, 0), 4000);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->route().group_id(), d1);
  EXPECT_EQ(b->route().group_id(), d2);
  EXPECT_FALSE(monitor_->Latest(d1).has_value());
}

TEST_F(RequestDispatcherTest, AvoidingAGroupKeepsItsPrefixIndex) {
  const int32_t p0 = AddGroup(v1::POOL_ROLE_PREFILL, 1000);
  const int32_t p1 = AddGroup(v1::POOL_ROLE_PREFILL, 1000);
  const int32_t decode = AddGroup(v1::POOL_ROLE_DECODE, 1000);
  Start();
  WaitForReport(decode);
  const std::vector<int32_t> prompt = Prompt(3, 7);
  {
    absl::StatusOr<RequestDispatcher::Assignment> a = Pick(prompt);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(a->prefill_group_id(), p0);
  }
  RequestDispatcher::Avoid avoid;
  avoid.prefill_group_id = p0;
  absl::StatusOr<RequestDispatcher::Assignment> retry = Pick(prompt, 16, avoid);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->prefill_group_id(), p1);
  EXPECT_EQ(retry->route().group_id(), decode);
  EXPECT_EQ(disagg_->IndexSize(p0), 3) << "an avoided group is not a failed one";
  EXPECT_EQ(router_->Inflight(p0), 0);

  // With the only other prefill group gone, avoiding p1 leaves nothing.
  plan_.SetReady(p0, false);
  avoid.prefill_group_id = p1;
  absl::StatusOr<RequestDispatcher::Assignment> none = Pick(prompt, 16, avoid);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(none.status().message(), HasSubstr("no ready prefill group other than group 1"));
  avoid = {};
  avoid.decode_group_id = decode;
  none = Pick(prompt, 16, avoid);
  EXPECT_THAT(none.status().message(), HasSubstr("no ready decode group other than group 2"));
}

TEST_F(RequestDispatcherTest, ANewPlanEpochForgetsThePrefixIndexes) {
  const int32_t p0 = AddGroup(v1::POOL_ROLE_PREFILL, 1000);
  AddGroup(v1::POOL_ROLE_DECODE, 1000);
  Start();
  ASSERT_TRUE(Pick(Prompt(3, 0)).ok());
  EXPECT_EQ(disagg_->IndexSize(p0), 3);
  ASSERT_TRUE(Pick(Prompt(2, 500)).ok());
  EXPECT_EQ(disagg_->IndexSize(p0), 5);
  plan_.SetEpoch(2);
  ASSERT_TRUE(Pick(Prompt(2, 900)).ok());
  EXPECT_EQ(disagg_->IndexSize(p0), 2) << "only the prompt routed under the new plan";
}

TEST_F(RequestDispatcherTest, APoolWithoutAReadyGroupIsUnavailableSayingWhy) {
  AddGroup(v1::POOL_ROLE_PREFILL, 1000);
  AddGroup(v1::POOL_ROLE_DECODE, 1000, /*ready=*/false);
  AddGroup(v1::POOL_ROLE_DECODE, 1000, /*ready=*/false);
  Start();
  absl::StatusOr<RequestDispatcher::Assignment> a = Pick(Prompt(1, 0));
  EXPECT_EQ(a.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(a.status().message(),
              HasSubstr("no ready group in the decode pool (0 of 2 groups ready: group 1: not "
                        "ready yet; group 2: not ready yet)"));
  EXPECT_EQ(router_->Inflight(0), 0);
}

TEST_F(RequestDispatcherTest, OtherModesRouteWholeRequests) {
  AddGroup(v1::POOL_ROLE_PREFILL, 1000);
  const int32_t both = AddGroup(v1::POOL_ROLE_BOTH, 1000);
  AddGroup(v1::POOL_ROLE_DECODE, 1000);
  Start();
  absl::StatusOr<RequestDispatcher::Assignment> a = Pick(Prompt(1, 0));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE(a->disaggregated());
  EXPECT_EQ(a->route().group_id(), both);
  EXPECT_EQ(a->prefill_group_id(), -1);
  v1::GenerateOnGroupRequest request;
  request.mutable_remote_prefill()->set_group_id(9);
  a->PrepareRequest(&request);
  EXPECT_FALSE(request.has_remote_prefill());
}

}  // namespace
}  // namespace shardserve
