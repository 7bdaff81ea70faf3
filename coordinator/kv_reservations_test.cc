#include "coordinator/kv_reservations.h"

#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace shardserve {
namespace {

TEST(KvReservationsTest, ReservationsCountUntilANewerReportOrTheirEnd) {
  KvReservations reservations;
  // Per step: an action, then the blocks reserved on group 2 as a report numbered `seen` shows.
  struct Step {
    const char* what;
    uint64_t seen;
    int32_t expected;
  };
  std::vector<KvReservations::Handle> handles;
  handles.push_back(reservations.Reserve(2, 10, /*mark=*/5));  // decided after call 5 was issued
  handles.push_back(reservations.Reserve(2, 7, /*mark=*/6));
  handles.push_back(reservations.Reserve(3, 100, /*mark=*/6));  // another group
  const std::vector<Step> steps = {
      {"no report yet: everything counts", 0, 17},
      {"report of call 4 predates both decisions", 4, 17},
      {"report of call 5 was issued before the first decision too", 5, 17},
      {"report of call 6 came after the first decision", 6, 7},
      {"report of call 7 came after both", 7, 0},
      {"an older report again cannot bring dropped ones back", 4, 0},
  };
  for (const Step& step : steps) {
    EXPECT_EQ(reservations.Reserved(2, step.seen), step.expected) << step.what;
  }
  EXPECT_EQ(reservations.NumReservations(2), 0);
  EXPECT_EQ(reservations.Reserved(3, 6), 100) << "group 3 has its own reports";
  handles.clear();  // releasing dropped reservations is harmless
  EXPECT_EQ(reservations.Reserved(3, 0), 0);
}

TEST(KvReservationsTest, HandlesReleaseOnceWhenDestroyedOrMoved) {
  KvReservations reservations;
  {
    KvReservations::Handle a = reservations.Reserve(1, 4, 0);
    KvReservations::Handle b = reservations.Reserve(1, 6, 0);
    EXPECT_EQ(reservations.Reserved(1, 0), 10);
    KvReservations::Handle moved(std::move(a));
    EXPECT_EQ(moved.group_id(), 1);
    EXPECT_EQ(reservations.Reserved(1, 0), 10);
    moved = std::move(b);  // releases a's 4 blocks
    EXPECT_EQ(reservations.Reserved(1, 0), 6);
    KvReservations::Handle empty;
  }
  EXPECT_EQ(reservations.Reserved(1, 0), 0);
  EXPECT_EQ(reservations.NumReservations(1), 0);
}

}  // namespace
}  // namespace shardserve
