// Times PagedAttention for SmolLM2-135M-shaped heads (9 query heads, 3 kv heads, head_dim 64):
// decode (one query row) at two context lengths, and a 512-token prefill. Prints the median
// wall time per call and, for one thread, the median CPU time of the calling thread, which is
// the steadier number on a machine shared with other jobs.
//
//   bazel run //kernels/cpu:paged_attention_bench -- [num_threads]
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "common/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/paged_attention.h"

namespace shardserve::cpu {
namespace {

constexpr int kNumHeads = 9;
constexpr int kNumKvHeads = 3;
constexpr int kHeadDim = 64;
constexpr int kBlockSize = 16;

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

double Median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

struct Timing {
  double wall_us;
  double cpu_us;
};

// Median times per PagedAttention call for one sequence of qo_len queries over kv_len.
Timing TimeOne(int qo_len, int kv_len, ThreadPool* pool) {
  const int num_blocks = (kv_len + kBlockSize - 1) / kBlockSize;
  const int64_t row = kNumKvHeads * kHeadDim;
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> k(static_cast<int64_t>(num_blocks) * kBlockSize * row);
  std::vector<float> v(k.size());
  std::vector<float> q(static_cast<int64_t>(qo_len) * kNumHeads * kHeadDim);
  for (float& x : k) x = dist(gen);
  for (float& x : v) x = dist(gen);
  for (float& x : q) x = dist(gen);
  std::vector<float> out(q.size());
  // Blocks in reverse order, as a fragmented cache would hand them out.
  std::vector<int32_t> indices(num_blocks);
  for (int b = 0; b < num_blocks; ++b) indices[b] = num_blocks - 1 - b;
  const int32_t qo_indptr[2] = {0, qo_len};
  const int32_t kv_indptr[2] = {0, num_blocks};
  const int32_t kv_lens[1] = {kv_len};

  PagedKvCache cache{k.data(), v.data(), num_blocks, kBlockSize, kNumKvHeads, kHeadDim};
  PagedAttentionParams params;
  params.num_seqs = 1;
  params.qo_indptr = qo_indptr;
  params.kv_indptr = kv_indptr;
  params.kv_indices = indices.data();
  params.kv_lens = kv_lens;
  params.num_heads = kNumHeads;
  params.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));

  const double work = static_cast<double>(qo_len) * kv_len;
  const int reps = static_cast<int>(std::clamp(2e7 / work, 5.0, 2000.0));
  std::vector<double> wall_us, cpu_us;
  for (int r = 0; r < reps + 2; ++r) {
    const double c0 = ThreadCpuSeconds();
    const auto t0 = std::chrono::steady_clock::now();
    PagedAttention(q.data(), cache, params, out.data(), pool);
    const auto t1 = std::chrono::steady_clock::now();
    const double c1 = ThreadCpuSeconds();
    if (r < 2) continue;  // warm-up
    wall_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    cpu_us.push_back((c1 - c0) * 1e6);
  }
  return {Median(wall_us), Median(cpu_us)};
}

void Report(const char* name, int qo_len, int kv_len, ThreadPool* pool) {
  const Timing t = TimeOne(qo_len, kv_len, pool);
  // Causal prefill does about half the dense work.
  const double pairs = qo_len == kv_len ? 0.5 * qo_len * (kv_len + 1.0) : 1.0 * qo_len * kv_len;
  const double flop = 4.0 * pairs * kNumHeads * kHeadDim;
  std::printf("%-8s qo_len %4d kv_len %5d threads %2d: wall %9.1f us (%6.2f GFLOP/s)", name, qo_len,
              kv_len, pool->num_threads(), t.wall_us, flop / (t.wall_us * 1e3));
  if (pool->num_threads() == 1) {
    std::printf("  cpu %9.1f us (%6.2f GFLOP/s)", t.cpu_us, flop / (t.cpu_us * 1e3));
  }
  std::printf("\n");
}

}  // namespace
}  // namespace shardserve::cpu

int main(int argc, char** argv) {
  using namespace shardserve;
  using namespace shardserve::cpu;
  const int max_threads = argc > 1 ? std::atoi(argv[1]) : ThreadPool::DefaultThreads();
  std::printf("isa %s, heads %d/%d, head_dim %d, block_size %d\n", IsaName(ActiveIsa()), kNumHeads,
              kNumKvHeads, kHeadDim, kBlockSize);
  for (int threads : {1, max_threads}) {
    ThreadPool pool(threads);
    Report("decode", 1, 512, &pool);
    Report("decode", 1, 4096, &pool);
    Report("prefill", 512, 512, &pool);
    if (threads == max_threads) break;
  }
  return 0;
}
