// A fixed pool of worker threads for data-parallel kernels.
//
// The calling thread takes part in every job, so ThreadPool(1) runs everything inline and
// ThreadPool(n) starts n - 1 workers. Workers spin briefly between jobs (a decode step issues
// hundreds of small jobs, and waking a sleeping thread costs tens of microseconds), then sleep.
//
//   ThreadPool pool(2);
//   pool.ParallelFor(rows, /*grain=*/16, [&](int64_t begin, int64_t end) { ... });
//
// Work is never bound to a thread: each thread starts on its own share of a job and, once that is
// done, takes what is left of the others' shares. So a job never waits for a worker that has not
// started (still waking, or descheduled on a machine busy with other processes); the caller does
// that worker's share itself, and a late worker finds nothing left. A job waits only for pieces
// another thread has already begun.
//
// Thread counts that come from a user (a --threads flag, EngineOptions) go through
// ValidateNumThreads and Create, which report a bad count or a refused thread as a status.
//
// Thread safety: Run/ParallelFor must be called from one thread at a time (the owner); jobs
// must not call back into the same pool.
#ifndef SHARDSERVE_COMMON_THREAD_POOL_H_
#define SHARDSERVE_COMMON_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace shardserve {

class ThreadPool {
 public:
  // The most threads a pool may have: 4 per CPU available to the process (oversubscribing more
  // only adds spinning), and never more than kMaxThreads.
  static constexpr int kMaxThreads = 1024;
  static constexpr int kMaxThreadsPerCpu = 4;
  static int MaxThreads();

  // OK when `num_threads` is 0 (DefaultThreads()) or in [1, MaxThreads()]; else
  // InvalidArgument saying what is allowed. Callers prefix the flag or option name.
  static absl::Status ValidateNumThreads(int num_threads);

  // A pool of `num_threads` threads, 0 meaning DefaultThreads(). InvalidArgument for a count
  // ValidateNumThreads refuses; ResourceExhausted when the system refuses to start a thread.
  static absl::StatusOr<std::unique_ptr<ThreadPool>> Create(int num_threads);

  // For counts the code chooses itself (tests, benchmarks, inline pools). num_threads is clamped
  // to [1, kMaxThreads]; if the system refuses a thread, the pool runs every job on the calling
  // thread (num_threads() is 1). Never throws.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();

  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(i, num_threads) once for every i in [0, num_threads) and returns when all calls
  // have returned. Call i usually runs on thread i (the caller is 0), but any thread may run any
  // of them, one after another: fn must not wait for another call of the same job.
  void Run(const std::function<void(int thread_idx, int num_threads)>& fn);

  // Calls fn(begin, end) over disjoint ranges that together cover [0, n) exactly once, each
  // range's size a multiple of `grain` except a range ending at n. Ranges may run on any thread
  // and in any order; there may be more of them than threads.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // The default thread count: the number of CPUs this process may run on.
  static int DefaultThreads();

 private:
  // One thread's share of the current job: grains [front, back), front in the low 32 bits. The
  // owner takes pieces from the front, other threads from the back, each with one CAS.
  struct alignas(64) Share {
    std::atomic<uint64_t> range{0};
  };

  ThreadPool() = default;

  // Starts workers 1..num_threads-1 and sets num_threads_. On failure stops the ones started
  // (the pool is then finished: no restart), sets num_threads_ to 1, returns ResourceExhausted.
  // Called once, before any job.
  absl::Status StartWorkers(int num_threads);
  void StopWorkers();
  void WorkerLoop(int thread_idx);
  // Publishes the job set up in the fields below, works on it, and returns once it is done.
  void RunJob();
  // Runs pieces of the current job until none is left unclaimed.
  void Work(int thread_idx);
  void RunGrains(int64_t first, int64_t last) const;

  int num_threads_ = 1;  // set once, before any job runs
  std::vector<std::thread> workers_;
  std::unique_ptr<Share[]> shares_;  // [num_threads_]

  // The current job, written by the owner before it opens the job.
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_grain_ = 1;
  int job_shares_ = 0;

  // Bumped for every job; workers wait for it to change.
  alignas(64) std::atomic<uint64_t> generation_{0};
  // The generation of the job that workers may still join; 0 once the owner closed it.
  alignas(64) std::atomic<uint64_t> open_{0};
  // Workers that may be touching the current job. The owner returns only when it is 0 after
  // closing the job.
  alignas(64) std::atomic<int> inside_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
};

}  // namespace shardserve

#endif  // SHARDSERVE_COMMON_THREAD_POOL_H_
