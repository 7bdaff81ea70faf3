#include "common/thread_pool.h"

#include <atomic>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace shardserve {
namespace {

TEST(ThreadPoolTest, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 5, 16, 17, 1000, 1023}) {
      for (int64_t grain : {1, 4, 16, 64}) {
        std::vector<std::atomic<int>> hits(n);
        pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
          ASSERT_LE(0, b);
          ASSERT_LT(b, e);
          ASSERT_LE(e, n);
          if (e != n) {
            EXPECT_EQ(0, (e - b) % grain);
          }
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(1, hits[i].load()) << "i=" << i;
      }
    }
  }
}

TEST(ThreadPoolTest, RunCallsEveryThreadIndex) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 1000; ++rep) {
    std::vector<std::atomic<int>> seen(3);
    pool.Run([&](int idx, int n) {
      EXPECT_EQ(3, n);
      seen[idx].fetch_add(1);
    });
    for (int i = 0; i < 3; ++i) ASSERT_EQ(1, seen[i].load());
  }
}

TEST(ThreadPoolTest, SurvivesSleepingWorkers) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 5; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // let workers fall asleep
    pool.ParallelFor(100, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
    });
  }
  EXPECT_EQ(5 * 4950, sum.load());
}

}  // namespace
}  // namespace shardserve
