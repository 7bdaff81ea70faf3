#include "common/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <system_error>

#include "absl/strings/str_cat.h"

namespace shardserve {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

// About 50-100 microseconds of spinning before a worker goes to sleep.
constexpr int kSpinIterations = 20000;

}  // namespace

int ThreadPool::MaxThreads() { return std::min(kMaxThreads, kMaxThreadsPerCpu * DefaultThreads()); }

absl::Status ThreadPool::ValidateNumThreads(int num_threads) {
  const int max_threads = MaxThreads();
  if (num_threads >= 0 && num_threads <= max_threads) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("must be 0 (one thread per available CPU: ", DefaultThreads(),
                   ") or between 1 and ", max_threads, " (", kMaxThreadsPerCpu,
                   " per available CPU, at most ", kMaxThreads, "), got ", num_threads));
}

absl::StatusOr<std::unique_ptr<ThreadPool>> ThreadPool::Create(int num_threads) {
  const absl::Status valid = ValidateNumThreads(num_threads);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("thread count ", valid.message()));
  }
  std::unique_ptr<ThreadPool> pool(new ThreadPool());
  const absl::Status started = pool->StartWorkers(num_threads > 0 ? num_threads : DefaultThreads());
  if (!started.ok()) return started;
  return pool;
}

ThreadPool::ThreadPool(int num_threads) {
  // A refused thread leaves the pool running every job on the calling thread (num_threads_ 1).
  (void)StartWorkers(std::clamp(num_threads, 1, kMaxThreads));
}

ThreadPool::~ThreadPool() { StopWorkers(); }

absl::Status ThreadPool::StartWorkers(int num_threads) {
  workers_.reserve(num_threads - 1);
  num_threads_ = num_threads;  // WorkerLoop reads it
  for (int i = 1; i < num_threads; ++i) {
    try {  // std::thread reports a refused thread (EAGAIN, out of memory) by throwing
      workers_.emplace_back([this, i] { WorkerLoop(i); });
    } catch (const std::system_error& e) {
      const int started = static_cast<int>(workers_.size()) + 1;
      StopWorkers();
      num_threads_ = 1;
      return absl::ResourceExhaustedError(
          absl::StrCat("could start only ", started, " of ", num_threads, " threads: ", e.what()));
    }
  }
  return absl::OkStatus();
}

void ThreadPool::StopWorkers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

int ThreadPool::DefaultThreads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

void ThreadPool::WorkerLoop(int thread_idx) {
  uint64_t seen = 0;
  while (true) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    int spins = 0;
    while (gen == seen && spins < kSpinIterations) {
      CpuRelax();
      ++spins;
      if ((spins & 1023) == 0) sched_yield();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1, std::memory_order_acq_rel);
      cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_acq_rel);
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    if (stop_.load(std::memory_order_acquire)) return;
    (*job_)(thread_idx, num_threads_);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::Run(const std::function<void(int, int)>& fn) {
  if (num_threads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  pending_.store(num_threads_ - 1, std::memory_order_release);
  {
    // Publishing under the mutex pairs with the sleeper's predicate check, so no wake-up is lost.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  if (sleepers_.load(std::memory_order_acquire) > 0) cv_.notify_all();
  fn(0, num_threads_);
  // Spin first (the usual wait is microseconds); yield the core once it gets long, so a worker
  // that the OS descheduled on an oversubscribed machine can run.
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kSpinIterations) {
      CpuRelax();
    } else {
      sched_yield();
    }
  }
  job_ = nullptr;
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t num_grains = (n + grain - 1) / grain;
  const int parts = static_cast<int>(std::min<int64_t>(num_threads_, num_grains));
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  Run([&](int idx, int) {
    if (idx >= parts) return;
    const int64_t g0 = num_grains * idx / parts;
    const int64_t g1 = num_grains * (idx + 1) / parts;
    const int64_t begin = g0 * grain;
    const int64_t end = std::min(n, g1 * grain);
    if (begin < end) fn(begin, end);
  });
}

}  // namespace shardserve
