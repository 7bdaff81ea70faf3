#include "worker/comm/shm_communicator.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "worker/comm/collective_checks.h"
#include "worker/comm/rank_processes.h"

namespace shardserve {
namespace {

constexpr absl::Duration kSlack = absl::Seconds(3);
constexpr absl::Duration kTestDeadline = absl::Seconds(60);

// Unique per test and per run, so concurrent test runs on one host never share a segment.
std::string NewGroupId() {
  static int counter = 0;
  return absl::StrCat("test_", getpid(), "_", counter++);
}

bool SegmentExists(const std::string& group_id) {
  const std::string name = absl::StrCat("/shardserve_", group_id);
  int fd = shm_open(name.c_str(), O_RDONLY, 0);
  if (fd < 0) return false;
  close(fd);
  return true;
}

ShmOptions Options(absl::Duration timeout) {
  ShmOptions options;
  options.timeout = timeout;
  return options;
}

void ExpectAllOk(const std::vector<RankProcesses::Outcome>& outcomes) {
  for (const RankProcesses::Outcome& o : outcomes) EXPECT_TRUE(o.ok()) << o.ToString();
}

// (world size, slot bytes): small slots force every collective through many rounds.
class ShmCollectivesTest : public ::testing::TestWithParam<std::tuple<int, int64_t>> {};

TEST_P(ShmCollectivesTest, EveryCollectiveGivesTheExpectedValues) {
  const auto [world_size, slot_bytes] = GetParam();
  const std::string group = NewGroupId();
  ExpectAllOk(RankProcesses::Run(
      world_size,
      [&](int rank) -> absl::Status {
        ShmOptions options = Options(absl::Seconds(10));
        options.slot_bytes = slot_bytes;
        options.p2p_bytes = std::min<int64_t>(slot_bytes, 64 << 10);
        ASSIGN_OR_RETURN(std::unique_ptr<ShmCommunicator> comm,
                         ShmCommunicator::Create(group, rank, world_size, options));
        RETURN_IF_ERROR(ExpectEq(comm->backend(), std::string("shm"), "backend"));
        return RunCollectiveChecks(*comm);
      },
      kTestDeadline));
  EXPECT_FALSE(SegmentExists(group));
}

INSTANTIATE_TEST_SUITE_P(WorldSizesAndSlots, ShmCollectivesTest,
                         ::testing::Combine(::testing::Values(1, 2, 3, 4),
                                            ::testing::Values(int64_t{256 << 10}, int64_t{4096})));

// A killed rank is noticed by its pid long before the timeout.
TEST(ShmCommunicatorTest, KilledPeerIsDetectedQuickly) {
  const std::string group = NewGroupId();
  const absl::Duration timeout = absl::Seconds(20);
  const std::vector<RankProcesses::Outcome> outcomes = RankProcesses::Run(
      3,
      [&](int rank) -> absl::Status {
        ASSIGN_OR_RETURN(std::unique_ptr<ShmCommunicator> comm,
                         ShmCommunicator::Create(group, rank, 3, Options(timeout)));
        RETURN_IF_ERROR(comm->Barrier());
        if (rank == 2) raise(SIGKILL);
        const absl::Time start = absl::Now();
        RETURN_IF_ERROR(ExpectFailsWithinTimeout(*comm, absl::Seconds(2)));
        return ExpectTrue(absl::Now() - start < absl::Seconds(2), "detected within 2 s");
      },
      kTestDeadline);
  EXPECT_TRUE(outcomes[0].ok()) << outcomes[0].ToString();
  EXPECT_TRUE(outcomes[1].ok()) << outcomes[1].ToString();
  EXPECT_EQ(outcomes[2].signal, SIGKILL) << outcomes[2].ToString();
  EXPECT_FALSE(SegmentExists(group));
}

// A rank that is alive but stops participating makes the others time out.
TEST(ShmCommunicatorTest, StalledPeerMakesOthersTimeOut) {
  const std::string group = NewGroupId();
  const absl::Duration timeout = absl::Seconds(1);
  ExpectAllOk(RankProcesses::Run(
      2,
      [&](int rank) -> absl::Status {
        ASSIGN_OR_RETURN(std::unique_ptr<ShmCommunicator> comm,
                         ShmCommunicator::Create(group, rank, 2, Options(timeout)));
        RETURN_IF_ERROR(comm->Barrier());
        if (rank == 1) {
          absl::SleepFor(timeout + kSlack + absl::Seconds(1));
          return absl::OkStatus();
        }
        const absl::Time start = absl::Now();
        absl::Status s = ExpectFailsWithinTimeout(*comm, timeout + kSlack);
        RETURN_IF_ERROR(s);
        RETURN_IF_ERROR(ExpectTrue(absl::Now() - start >= timeout, "waited the full timeout"));
        std::vector<float> x(4);
        return ExpectTrue(absl::IsDeadlineExceeded(
                              comm->AllReduceSum(TensorView::Cpu(x.data(), DType::kF32, {4}))),
                          "a stalled peer gives DEADLINE_EXCEEDED");
      },
      kTestDeadline));
}

TEST(ShmCommunicatorTest, PeerThatNeverJoinsMakesCreateFailWithinTimeout) {
  const absl::Duration timeout = absl::Seconds(1);
  for (int rank : {0, 1}) {
    const std::string group = NewGroupId();
    ExpectAllOk(RankProcesses::Run(
        1,
        [&](int) -> absl::Status {
          const absl::Time start = absl::Now();
          absl::StatusOr<std::unique_ptr<ShmCommunicator>> comm =
              ShmCommunicator::Create(group, rank, 2, Options(timeout));
          const absl::Duration elapsed = absl::Now() - start;
          RETURN_IF_ERROR(
              ExpectTrue(absl::IsDeadlineExceeded(comm.status()),
                         absl::StrCat("DEADLINE_EXCEEDED, got ", comm.status().ToString())));
          return ExpectTrue(elapsed < timeout + kSlack,
                            absl::StrCat("Create took ", absl::FormatDuration(elapsed)));
        },
        kTestDeadline));
    EXPECT_FALSE(SegmentExists(group)) << "rank " << rank << " left the segment behind";
  }
}

// A segment left by a crashed run under the same name must not capture the new group.
TEST(ShmCommunicatorTest, LeftoverSegmentIsReplaced) {
  const std::string group = NewGroupId();
  const std::string name = absl::StrCat("/shardserve_", group);
  int fd = shm_open(name.c_str(), O_CREAT | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 1 << 20), 0);
  close(fd);
  ExpectAllOk(RankProcesses::Run(
      2,
      [&](int rank) -> absl::Status {
        // Rank 1 arrives first and must not settle on the leftover.
        if (rank == 0) absl::SleepFor(absl::Milliseconds(200));
        ASSIGN_OR_RETURN(std::unique_ptr<ShmCommunicator> comm,
                         ShmCommunicator::Create(group, rank, 2, Options(absl::Seconds(10))));
        return RunCollectiveChecks(*comm);
      },
      kTestDeadline));
  EXPECT_FALSE(SegmentExists(group));
}

TEST(ShmCommunicatorTest, RejectsBadArguments) {
  EXPECT_TRUE(absl::IsInvalidArgument(ShmCommunicator::Create("a/b", 0, 1, {}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ShmCommunicator::Create("", 0, 1, {}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ShmCommunicator::Create("g", 1, 1, {}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ShmCommunicator::Create("g", 0, 65, {}).status()));
  ShmOptions odd;
  odd.slot_bytes = 100;
  EXPECT_TRUE(absl::IsInvalidArgument(ShmCommunicator::Create("g", 0, 1, odd).status()));
}

}  // namespace
}  // namespace shardserve
