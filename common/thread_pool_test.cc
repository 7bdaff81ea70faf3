#include "common/thread_pool.h"

#include <atomic>
#include <chrono>
#include <numeric>
#include <random>
#include <thread>
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

// Back-to-back jobs of every small shape: each index runs once, inside its own job (a worker
// that wakes late must never run a piece of a job that has returned, whose captures are gone).
TEST(ThreadPoolTest, ManyShortJobsRunEachPieceOnceInsideTheirJob) {
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    std::mt19937 rng(threads);
    std::atomic<int64_t> current_job{-1};
    std::atomic<int64_t> stray_calls{0};
    for (int64_t job = 0; job < 20000; ++job) {
      const int64_t n = std::uniform_int_distribution<int64_t>(1, 40)(rng);
      const int64_t grain = std::uniform_int_distribution<int64_t>(1, 5)(rng);
      std::vector<std::atomic<int>> hits(n);
      current_job.store(job);
      pool.ParallelFor(n, grain, [&, job](int64_t b, int64_t e) {
        if (current_job.load() != job) stray_calls.fetch_add(1);
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      current_job.store(-1);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(1, hits[i].load()) << "job " << job << " i=" << i;
    }
    EXPECT_EQ(0, stray_calls.load());
  }
}

// A piece that takes long on one thread does not hold back the rest of that thread's share: the
// other threads take it over (as they would from a worker the OS descheduled).
TEST(ThreadPoolTest, IdleThreadsTakeOverAnotherThreadsShare) {
  ThreadPool pool(2);
  const int64_t n = 64;
  std::vector<std::atomic<int>> hits(n);
  std::atomic<int> worker_pieces{0};
  std::atomic<int64_t> done_by_caller{0};
  const auto caller = std::this_thread::get_id();
  pool.ParallelFor(n, 1, [&](int64_t b, int64_t e) {
    if (std::this_thread::get_id() == caller) {
      done_by_caller.fetch_add(e - b);
    } else if (worker_pieces.fetch_add(1) == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the worker stalls
    }
    for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(1, hits[i].load()) << i;
  // The caller's own share is half; it also did what the stalled worker had not begun.
  EXPECT_GT(done_by_caller.load(), n / 2);
}

}  // namespace
}  // namespace shardserve
