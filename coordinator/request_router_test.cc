#include "coordinator/request_router.h"

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

using ::testing::HasSubstr;

// A plan of groups, each led by "leader-<id>" at 10.0.0.<id>:<9000 + id>; no network is used.
class PlanFixture {
 public:
  void AddGroup(int32_t id, v1::PoolRole role, bool ready, std::string error = "") {
    absl::MutexLock lock(&mu_);
    v1::EngineGroup* group = reply_.mutable_plan()->add_groups();
    group->set_id(id);
    group->set_role(role);
    group->set_ready(ready);
    group->set_error(std::move(error));
    const std::string leader = "leader-" + std::to_string(id);
    group->add_worker_ids(leader);
    v1::WorkerInfo* worker = reply_.add_workers();
    worker->set_worker_id(leader);
    worker->set_host("10.0.0." + std::to_string(id));
    worker->set_port(9000 + id);
  }
  void SetReady(int32_t id, bool ready) {
    absl::MutexLock lock(&mu_);
    for (v1::EngineGroup& g : *reply_.mutable_plan()->mutable_groups()) {
      if (g.id() == id) g.set_ready(ready);
    }
  }
  void AddProblem(const std::string& problem) {
    absl::MutexLock lock(&mu_);
    reply_.add_problems(problem);
  }
  RequestRouter::PlanSource Source() {
    return [this] {
      absl::MutexLock lock(&mu_);
      return reply_;
    };
  }

 private:
  absl::Mutex mu_;
  v1::GetPlanReply reply_ ABSL_GUARDED_BY(mu_);
};

RequestRouter::Options MaxInflight(int n) {
  RequestRouter::Options options;
  options.max_inflight_per_group = n;
  return options;
}

TEST(RequestRouterTest, PicksTheLeastLoadedReadyBothGroup) {
  PlanFixture plan;
  plan.AddGroup(0, v1::POOL_ROLE_PREFILL, true);
  plan.AddGroup(1, v1::POOL_ROLE_BOTH, true);
  plan.AddGroup(2, v1::POOL_ROLE_BOTH, true);
  plan.AddGroup(3, v1::POOL_ROLE_BOTH, false);
  plan.AddGroup(4, v1::POOL_ROLE_DECODE, true);
  RequestRouter router(plan.Source(), MaxInflight(8));

  // Per step: the groups that hold requests afterwards.
  std::vector<RequestRouter::Route> routes;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<RequestRouter::Route> route = router.Pick();
    ASSERT_TRUE(route.ok()) << route.status();
    EXPECT_TRUE(route->group_id() == 1 || route->group_id() == 2) << route->group_id();
    EXPECT_EQ(route->pool(), "both");
    routes.push_back(*std::move(route));
    // The load stays balanced: the two groups never differ by more than one.
    EXPECT_LE(std::abs(router.Inflight(1) - router.Inflight(2)), 1) << "after " << i + 1;
  }
  EXPECT_EQ(router.Inflight(1), 2);
  EXPECT_EQ(router.Inflight(2), 2);
  EXPECT_EQ(router.Inflight(0), 0);
  EXPECT_EQ(router.Inflight(4), 0);

  // Finishing two requests on group 1 makes it the choice for the next two.
  int released = 0;
  for (auto it = routes.begin(); it != routes.end() && released < 2;) {
    if (it->group_id() == 1) {
      it = routes.erase(it);
      ++released;
    } else {
      ++it;
    }
  }
  EXPECT_EQ(router.Inflight(1), 0);
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<RequestRouter::Route> route = router.Pick();
    ASSERT_TRUE(route.ok()) << route.status();
    EXPECT_EQ(route->group_id(), 1);
    routes.push_back(*std::move(route));
  }
  EXPECT_EQ(router.Inflight(1), 2);
}

TEST(RequestRouterTest, LeaderAddressComesFromTheRegistrationOfRankZero) {
  PlanFixture plan;
  plan.AddGroup(3, v1::POOL_ROLE_BOTH, true);
  RequestRouter router(plan.Source(), MaxInflight(1));
  absl::StatusOr<RequestRouter::Route> route = router.Pick();
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->leader_address(), "10.0.0.3:9003");
  EXPECT_NE(route->stub(), nullptr);
  // One stub per address, cached.
  EXPECT_EQ(router.StubFor("10.0.0.3:9003").get(), route->stub());
}

TEST(RequestRouterTest, SequentialRequestsRotateOverIdleGroups) {
  PlanFixture plan;
  plan.AddGroup(0, v1::POOL_ROLE_BOTH, true);
  plan.AddGroup(1, v1::POOL_ROLE_BOTH, true);
  RequestRouter router(plan.Source(), MaxInflight(4));
  std::vector<int32_t> chosen;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<RequestRouter::Route> route = router.Pick();
    ASSERT_TRUE(route.ok()) << route.status();
    chosen.push_back(route->group_id());
  }  // each route is released before the next pick
  EXPECT_THAT(chosen, ::testing::UnorderedElementsAre(0, 0, 1, 1));
}

TEST(RequestRouterTest, AdmissionRefusesAtOnceWhenEveryGroupIsFull) {
  PlanFixture plan;
  plan.AddGroup(0, v1::POOL_ROLE_BOTH, true);
  plan.AddGroup(1, v1::POOL_ROLE_BOTH, true);
  RequestRouter router(plan.Source(), MaxInflight(2));
  std::vector<RequestRouter::Route> routes;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<RequestRouter::Route> route = router.Pick();
    ASSERT_TRUE(route.ok()) << i << ": " << route.status();
    routes.push_back(*std::move(route));
  }
  absl::StatusOr<RequestRouter::Route> refused = router.Pick();
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("max_inflight_per_group=2"));
  // Counts are unchanged by a refusal, and one finished request makes room again.
  EXPECT_EQ(router.Inflight(0), 2);
  EXPECT_EQ(router.Inflight(1), 2);
  const int32_t freed = routes.front().group_id();
  routes.erase(routes.begin());
  absl::StatusOr<RequestRouter::Route> admitted = router.Pick();
  ASSERT_TRUE(admitted.ok()) << admitted.status();
  EXPECT_EQ(admitted->group_id(), freed);
}

TEST(RequestRouterTest, MovedRouteReleasesItsSlotOnce) {
  PlanFixture plan;
  plan.AddGroup(0, v1::POOL_ROLE_BOTH, true);
  RequestRouter router(plan.Source(), MaxInflight(2));
  {
    absl::StatusOr<RequestRouter::Route> route = router.Pick();
    ASSERT_TRUE(route.ok());
    RequestRouter::Route moved(*std::move(route));
    EXPECT_EQ(router.Inflight(0), 1);
  }
  EXPECT_EQ(router.Inflight(0), 0);
}

TEST(RequestRouterTest, UnavailableWhenNoGroupIsReadySaysWhy) {
  PlanFixture plan;
  plan.AddGroup(0, v1::POOL_ROLE_BOTH, false, "worker-2 (rank 1) missed heartbeats for 5s");
  plan.AddGroup(1, v1::POOL_ROLE_BOTH, false);
  plan.AddGroup(2, v1::POOL_ROLE_PREFILL, true);  // never runs whole requests
  RequestRouter router(plan.Source(), MaxInflight(2));
  EXPECT_FALSE(router.HasReadyGroup());
  absl::StatusOr<RequestRouter::Route> route = router.Pick();
  EXPECT_EQ(route.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(route.status().message(), HasSubstr("no engine group is ready; 0 of 2 groups ready"));
  EXPECT_THAT(route.status().message(), HasSubstr("missed heartbeats"));

  plan.SetReady(1, true);
  EXPECT_TRUE(router.HasReadyGroup());
  route = router.Pick();
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->group_id(), 1);
}

TEST(RequestRouterTest, UnavailableWithoutAPlanNamesThePlannersProblem) {
  PlanFixture plan;
  plan.AddProblem("need 2 workers for 1 both group of tp=2 x pp=1, have 1");
  RequestRouter router(plan.Source(), MaxInflight(2));
  absl::StatusOr<RequestRouter::Route> route = router.Pick();
  EXPECT_EQ(route.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(route.status().message(), HasSubstr("0 of 0 groups ready"));
  EXPECT_THAT(route.status().message(), HasSubstr("need 2 workers"));
}

TEST(RequestRouterTest, ThePoolsOfThePlanDecideTheMode) {
  using Mode = RequestRouter::Mode;
  struct Case {
    std::vector<v1::PoolRole> roles;
    Mode mode;
  };
  const v1::PoolRole P = v1::POOL_ROLE_PREFILL, D = v1::POOL_ROLE_DECODE, B = v1::POOL_ROLE_BOTH;
  const std::vector<Case> cases = {
      {{}, Mode::kNoGroups},
      {{B}, Mode::kColocated},
      {{P, D, B}, Mode::kColocated},
      {{P, D}, Mode::kDisaggregated},
      {{P, P, D}, Mode::kDisaggregated},
      {{D, D}, Mode::kDecodeOnly},
      {{P}, Mode::kPrefillOnly},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    PlanFixture plan;
    for (size_t g = 0; g < cases[i].roles.size(); ++g) plan.AddGroup(g, cases[i].roles[g], true);
    EXPECT_EQ(RequestRouter::ModeOf(plan.Source()()), cases[i].mode) << "case " << i;
  }
}

TEST(RequestRouterTest, DecodeGroupsServeWholeRequestsOnlyWithoutPrefillOrBothGroups) {
  PlanFixture decode_only;
  decode_only.AddGroup(0, v1::POOL_ROLE_DECODE, true);
  RequestRouter router(decode_only.Source(), MaxInflight(2));
  absl::StatusOr<RequestRouter::Route> route = router.Pick();
  ASSERT_TRUE(route.ok()) << route.status();
  EXPECT_EQ(route->group_id(), 0);
  EXPECT_EQ(route->pool(), "decode");

  // With prefill groups beside them, decode groups only decode: RequestDispatcher routes.
  PlanFixture disaggregated;
  disaggregated.AddGroup(0, v1::POOL_ROLE_PREFILL, true);
  disaggregated.AddGroup(1, v1::POOL_ROLE_DECODE, true);
  RequestRouter disaggregated_router(disaggregated.Source(), MaxInflight(2));
  EXPECT_TRUE(RequestRouter::Candidates(disaggregated.Source()()).empty());
  EXPECT_EQ(disaggregated_router.Pick().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(disaggregated_router.HasReadyGroup());
  disaggregated.SetReady(0, false);
  EXPECT_FALSE(disaggregated_router.HasReadyGroup()) << "no ready prefill group";

  PlanFixture mixed;
  mixed.AddGroup(0, v1::POOL_ROLE_DECODE, true);
  mixed.AddGroup(1, v1::POOL_ROLE_BOTH, false);
  RequestRouter mixed_router(mixed.Source(), MaxInflight(2));
  EXPECT_EQ(mixed_router.Pick().status().code(), absl::StatusCode::kUnavailable);
}

TEST(RequestRouterTest, PrefillGroupsAloneAreUnavailableSayingWhy) {
  PlanFixture plan;
  plan.AddGroup(0, v1::POOL_ROLE_PREFILL, true);
  plan.AddGroup(1, v1::POOL_ROLE_PREFILL, true);
  RequestRouter router(plan.Source(), MaxInflight(2));
  EXPECT_FALSE(router.HasReadyGroup());
  absl::StatusOr<RequestRouter::Route> route = router.Pick();
  EXPECT_EQ(route.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(route.status().message(), HasSubstr("2 prefill groups and no decode or both group"));
}

TEST(RequestRouterTest, HoldTakesASlotOnTheNamedGroupUpToTheBound) {
  PlanFixture plan;
  plan.AddGroup(0, v1::POOL_ROLE_PREFILL, true);
  plan.AddGroup(1, v1::POOL_ROLE_DECODE, false);
  RequestRouter router(plan.Source(), MaxInflight(2));
  const std::vector<RequestRouter::Candidate> prefill =
      RequestRouter::PoolGroups(plan.Source()(), v1::POOL_ROLE_PREFILL);
  ASSERT_EQ(prefill.size(), 1u);
  std::vector<RequestRouter::Route> held;
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<RequestRouter::Route> route = router.Hold(prefill[0]);
    ASSERT_TRUE(route.ok()) << route.status();
    EXPECT_EQ(route->pool(), "prefill");
    EXPECT_EQ(route->leader_address(), "10.0.0.0:9000");
    held.push_back(*std::move(route));
  }
  EXPECT_EQ(router.Hold(prefill[0]).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(router.Inflight(0), 2);
  held.pop_back();
  EXPECT_EQ(router.Inflight(0), 1);

  const std::vector<RequestRouter::Candidate> decode =
      RequestRouter::PoolGroups(plan.Source()(), v1::POOL_ROLE_DECODE);
  ASSERT_EQ(decode.size(), 1u);
  EXPECT_EQ(router.Hold(decode[0]).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(router.Inflight(1), 0);
}

TEST(RequestRouterTest, ReadyGroupWithoutServicePortIsNotACandidate) {
  PlanFixture plan;
  plan.AddGroup(0, v1::POOL_ROLE_BOTH, true);
  v1::GetPlanReply reply = plan.Source()();
  reply.mutable_workers(0)->set_port(0);
  const std::vector<RequestRouter::Candidate> candidates = RequestRouter::Candidates(reply);
  ASSERT_EQ(candidates.size(), 1u);
  EXPECT_FALSE(candidates[0].ready);
  EXPECT_THAT(candidates[0].error, HasSubstr("no WorkerService port"));
}

}  // namespace
}  // namespace shardserve
