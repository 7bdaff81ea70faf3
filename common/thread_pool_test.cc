#include "common/thread_pool.h"

#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

TEST(ThreadPoolTest, ValidateNumThreadsAcceptsZeroAndOneToTheCap) {
  const int cap = ThreadPool::MaxThreads();
  EXPECT_EQ(cap, std::min(ThreadPool::kMaxThreads,
                          ThreadPool::kMaxThreadsPerCpu * ThreadPool::DefaultThreads()));
  for (int n : {0, 1, cap}) EXPECT_TRUE(ThreadPool::ValidateNumThreads(n).ok()) << n;
  for (int n : {-3, -1, cap + 1, 100000}) {
    const absl::Status s = ThreadPool::ValidateNumThreads(n);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << n;
    EXPECT_TRUE(absl::StrContains(s.message(), absl::StrCat("between 1 and ", cap))) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), absl::StrCat("got ", n))) << s;
  }
}

TEST(ThreadPoolTest, CreateRefusesBadCountsAndStartsGoodOnes) {
  for (int n : {-3, ThreadPool::MaxThreads() + 1, 100000}) {
    EXPECT_EQ(ThreadPool::Create(n).status().code(), absl::StatusCode::kInvalidArgument) << n;
  }
  absl::StatusOr<std::unique_ptr<ThreadPool>> automatic = ThreadPool::Create(0);
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_EQ((*automatic)->num_threads(), ThreadPool::DefaultThreads());

  absl::StatusOr<std::unique_ptr<ThreadPool>> three = ThreadPool::Create(3);
  ASSERT_TRUE(three.ok()) << three.status();
  ASSERT_EQ((*three)->num_threads(), 3);
  std::vector<std::atomic<int>> seen(3);
  (*three)->Run([&](int idx, int) { seen[idx].fetch_add(1); });
  for (int i = 0; i < 3; ++i) EXPECT_EQ(seen[i].load(), 1);
}

TEST(ThreadPoolTest, ConstructorClampsInsteadOfThrowing) {
  ThreadPool none(-5);
  EXPECT_EQ(none.num_threads(), 1);
  int calls = 0;
  none.Run([&](int idx, int n) {
    EXPECT_EQ(idx, 0);
    EXPECT_EQ(n, 1);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
}

// Caps the address space a little above what the process maps now, so that a thread's stack
// (8 MiB reserved by default) cannot be mapped. Call only in a death test's child.
void LeaveNoRoomForThreadStacks() {
  long pages = 0;
  FILE* statm = std::fopen("/proc/self/statm", "r");
  ASSERT_NE(statm, nullptr);
  ASSERT_EQ(std::fscanf(statm, "%ld", &pages), 1);
  std::fclose(statm);
  const rlim_t bytes = static_cast<rlim_t>(pages) * sysconf(_SC_PAGESIZE) + (2 << 20);
  const rlimit limit = {bytes, bytes};
  ASSERT_EQ(setrlimit(RLIMIT_AS, &limit), 0);
}

TEST(ThreadPoolDeathTest, RefusedThreadsAreAStatusNotAnException) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer needs more address space than the cap leaves";
#endif
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        LeaveNoRoomForThreadStacks();
        absl::StatusOr<std::unique_ptr<ThreadPool>> pool = ThreadPool::Create(2);
        std::fprintf(stderr, "status: %s\n", pool.status().ToString().c_str());
        ThreadPool fallback(2);
        std::fprintf(stderr, "fallback threads: %d\n", fallback.num_threads());
        std::exit(pool.status().code() == absl::StatusCode::kResourceExhausted &&
                          fallback.num_threads() == 1
                      ? 0
                      : 1);
      },
      ::testing::ExitedWithCode(0), "RESOURCE_EXHAUSTED: could start only 1 of 2 threads");
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
