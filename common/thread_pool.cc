#include "common/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <limits>
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

constexpr uint64_t Pack(uint64_t front, uint64_t back) { return front | (back << 32); }
constexpr int64_t Front(uint64_t range) { return static_cast<int64_t>(range & 0xffffffffu); }
constexpr int64_t Back(uint64_t range) { return static_cast<int64_t>(range >> 32); }

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
  shares_.reset(new Share[num_threads]);
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
    // Announce first, then check that the job is still open (sequentially consistent on both
    // sides): either the owner sees this worker inside and waits for it, or the worker sees the
    // job closed and leaves it alone. A job this worker woke too late for has been finished
    // without it.
    inside_.fetch_add(1, std::memory_order_seq_cst);
    if (open_.load(std::memory_order_seq_cst) == gen) Work(thread_idx);
    inside_.fetch_sub(1, std::memory_order_release);
  }
}

void ThreadPool::RunGrains(int64_t first, int64_t last) const {
  const int64_t begin = first * job_grain_;
  const int64_t end = std::min(job_n_, last * job_grain_);
  if (begin < end) (*job_)(begin, end);
}

void ThreadPool::Work(int thread_idx) {
  const int shares = job_shares_;
  // Own share from the front, a quarter of what is left at a time: few claims, and the rest
  // stays available to threads that run out of work.
  if (thread_idx < shares) {
    std::atomic<uint64_t>& own = shares_[thread_idx].range;
    uint64_t r = own.load(std::memory_order_relaxed);
    while (Front(r) < Back(r)) {
      const int64_t take = std::max<int64_t>(1, (Back(r) - Front(r)) / 4);
      if (own.compare_exchange_weak(r, Pack(Front(r) + take, Back(r)), std::memory_order_relaxed)) {
        RunGrains(Front(r), Front(r) + take);
        r = own.load(std::memory_order_relaxed);
      }
    }
  }
  // Then the others' shares from the back, in small pieces so that their owners, if running,
  // keep most of their own.
  for (int k = 1; k < std::max(shares, num_threads_); ++k) {
    const int victim = (thread_idx + k) % std::max(shares, num_threads_);
    if (victim >= shares) continue;
    std::atomic<uint64_t>& other = shares_[victim].range;
    uint64_t r = other.load(std::memory_order_relaxed);
    while (Front(r) < Back(r)) {
      const int64_t take = std::max<int64_t>(1, (Back(r) - Front(r)) / 8);
      if (other.compare_exchange_weak(r, Pack(Front(r), Back(r) - take),
                                      std::memory_order_relaxed)) {
        RunGrains(Back(r) - take, Back(r));
        r = other.load(std::memory_order_relaxed);
      }
    }
  }
}

void ThreadPool::RunJob() {
  const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;
  // Opening the job publishes its fields (and everything the caller wrote before) to the
  // workers that join it.
  open_.store(gen, std::memory_order_seq_cst);
  {
    // Publishing under the mutex pairs with the sleeper's predicate check, so no wake-up is lost.
    std::lock_guard<std::mutex> lock(mu_);
    generation_.store(gen, std::memory_order_release);
  }
  if (sleepers_.load(std::memory_order_acquire) > 0) cv_.notify_all();
  Work(0);
  // Every piece is claimed; close the job and wait for the workers still running pieces (or
  // just looking). Spin first (the usual wait is microseconds); yield the core once it gets
  // long, so that a worker the OS descheduled can run.
  open_.store(0, std::memory_order_seq_cst);
  for (int spins = 0; inside_.load(std::memory_order_seq_cst) != 0; ++spins) {
    if (spins < kSpinIterations) {
      CpuRelax();
    } else {
      sched_yield();
    }
  }
  job_ = nullptr;
}

void ThreadPool::Run(const std::function<void(int, int)>& fn) {
  if (num_threads_ == 1) {
    fn(0, 1);
    return;
  }
  const int n = num_threads_;
  ParallelFor(n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(static_cast<int>(i), n);
  });
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t num_grains = (n + grain - 1) / grain;
  // Shares count grains in 32 bits; coarser grains (still multiples of the asked one) keep
  // them there.
  while (num_grains > std::numeric_limits<int32_t>::max()) {
    grain *= 2;
    num_grains = (n + grain - 1) / grain;
  }
  const int shares = static_cast<int>(std::min<int64_t>(num_threads_, num_grains));
  if (shares <= 1) {
    fn(0, n);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  job_grain_ = grain;
  job_shares_ = shares;
  for (int s = 0; s < shares; ++s) {
    shares_[s].range.store(Pack(num_grains * s / shares, num_grains * (s + 1) / shares),
                           std::memory_order_relaxed);
  }
  RunJob();
}

}  // namespace shardserve
