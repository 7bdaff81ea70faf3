#include "worker/comm/gloo_communicator.h"

#include <unistd.h>

#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "gloo/rendezvous/file_store.h"
#include "gloo/rendezvous/hash_store.h"
#include "gtest/gtest.h"
#include "worker/comm/collective_checks.h"
#include "worker/comm/rank_processes.h"

namespace shardserve {
namespace {

constexpr absl::Duration kTimeout = absl::Seconds(2);
// Scheduling noise on a loaded 2-core machine; failures must still come well before a hang.
constexpr absl::Duration kSlack = absl::Seconds(3);
constexpr absl::Duration kTestDeadline = absl::Seconds(60);

absl::StatusOr<std::unique_ptr<GlooCommunicator>> Join(const std::string& dir, int rank,
                                                       int world_size) {
  gloo::rendezvous::FileStore store(dir);
  GlooOptions options;
  options.timeout = kTimeout;
  return GlooCommunicator::Create(store, rank, world_size, options);
}

void ExpectAllOk(const std::vector<RankProcesses::Outcome>& outcomes) {
  for (const RankProcesses::Outcome& o : outcomes) EXPECT_TRUE(o.ok()) << o.ToString();
}

class GlooCollectivesTest : public ::testing::TestWithParam<int> {};

TEST_P(GlooCollectivesTest, EveryCollectiveGivesTheExpectedValues) {
  const int world_size = GetParam();
  const std::string dir = RankProcesses::MakeTempDir();
  ASSERT_FALSE(dir.empty());
  ExpectAllOk(RankProcesses::Run(
      world_size,
      [&](int rank) -> absl::Status {
        ASSIGN_OR_RETURN(std::unique_ptr<GlooCommunicator> comm, Join(dir, rank, world_size));
        RETURN_IF_ERROR(ExpectEq(comm->backend(), std::string("gloo"), "backend"));
        return RunCollectiveChecks(*comm);
      },
      kTestDeadline));
}

INSTANTIATE_TEST_SUITE_P(WorldSizes, GlooCollectivesTest, ::testing::Values(1, 2, 3));

// Rank 1 leaves without a word after the first barrier; rank 0's next all-reduce must fail within
// the timeout, and every later call must fail at once with the same error.
TEST(GlooCommunicatorTest, PeerThatExitsMakesOthersFailWithinTimeout) {
  const std::string dir = RankProcesses::MakeTempDir();
  ExpectAllOk(RankProcesses::Run(
      2,
      [&](int rank) -> absl::Status {
        ASSIGN_OR_RETURN(std::unique_ptr<GlooCommunicator> comm, Join(dir, rank, 2));
        RETURN_IF_ERROR(comm->Barrier());
        if (rank == 1) _exit(0);
        return ExpectFailsWithinTimeout(*comm, kTimeout + kSlack);
      },
      kTestDeadline));
}

// Rank 1 stays alive but stops participating: the wait itself must time out.
TEST(GlooCommunicatorTest, PeerThatHangsMakesOthersTimeOut) {
  const std::string dir = RankProcesses::MakeTempDir();
  ExpectAllOk(RankProcesses::Run(
      2,
      [&](int rank) -> absl::Status {
        ASSIGN_OR_RETURN(std::unique_ptr<GlooCommunicator> comm, Join(dir, rank, 2));
        RETURN_IF_ERROR(comm->Barrier());
        if (rank == 1) {
          absl::SleepFor(kTimeout + kSlack + absl::Seconds(1));
          return absl::OkStatus();
        }
        const absl::Time start = absl::Now();
        RETURN_IF_ERROR(ExpectFailsWithinTimeout(*comm, kTimeout + kSlack));
        return ExpectTrue(absl::Now() - start >= kTimeout - absl::Milliseconds(100),
                          "failed before the timeout although the peer is alive");
      },
      kTestDeadline));
}

TEST(GlooCommunicatorTest, PeerThatNeverJoinsMakesCreateFailWithinTimeout) {
  const std::string dir = RankProcesses::MakeTempDir();
  ExpectAllOk(RankProcesses::Run(
      1,
      [&](int) -> absl::Status {
        const absl::Time start = absl::Now();
        absl::StatusOr<std::unique_ptr<GlooCommunicator>> comm = Join(dir, 0, 2);
        const absl::Duration elapsed = absl::Now() - start;
        RETURN_IF_ERROR(ExpectTrue(!comm.ok(), "Create succeeded without a peer"));
        RETURN_IF_ERROR(ExpectTrue(
            absl::IsDeadlineExceeded(comm.status()) || absl::IsUnavailable(comm.status()),
            comm.status().ToString()));
        return ExpectTrue(elapsed < kTimeout + kSlack,
                          absl::StrCat("Create took ", absl::FormatDuration(elapsed)));
      },
      kTestDeadline));
}

TEST(GlooCommunicatorTest, RejectsBadArguments) {
  const std::string dir = RankProcesses::MakeTempDir();
  gloo::rendezvous::FileStore store(dir);
  EXPECT_TRUE(absl::IsInvalidArgument(GlooCommunicator::Create(store, 2, 2, {}).status()));
  GlooOptions zero;
  zero.timeout = absl::ZeroDuration();
  EXPECT_TRUE(absl::IsInvalidArgument(GlooCommunicator::Create(store, 0, 1, zero).status()));
}

// The ranks of a group may also be threads of one process sharing an in-memory store.
TEST(GlooCommunicatorTest, ThreadsSharingAHashStore) {
  constexpr int kWorldSize = 2;
  gloo::rendezvous::HashStore store;
  std::vector<absl::Status> results(kWorldSize);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < kWorldSize; ++rank) {
    threads.emplace_back([&, rank] {
      GlooOptions options;
      options.timeout = absl::Seconds(10);
      absl::StatusOr<std::unique_ptr<GlooCommunicator>> comm =
          GlooCommunicator::Create(store, rank, kWorldSize, options);
      results[rank] = comm.ok() ? RunCollectiveChecks(**comm) : comm.status();
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : results) EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace shardserve
