// Times PagedAttention for SmolLM2-135M-shaped heads (9 query heads, 3 kv heads, head_dim 64):
// decode (one query row) at two context lengths, and a 512-token prefill.
//
//   bazel run //kernels/cpu:paged_attention_bench -- [num_threads]
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

// Median microseconds per PagedAttention call for one sequence of qo_len queries over kv_len.
double TimeOne(int qo_len, int kv_len, ThreadPool* pool) {
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
  std::vector<double> us;
  for (int r = 0; r < reps + 2; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    PagedAttention(q.data(), cache, params, out.data(), pool);
    const auto t1 = std::chrono::steady_clock::now();
    if (r >= 2) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::nth_element(us.begin(), us.begin() + us.size() / 2, us.end());
  return us[us.size() / 2];
}

void Report(const char* name, int qo_len, int kv_len, ThreadPool* pool) {
  const double us = TimeOne(qo_len, kv_len, pool);
  // Causal prefill does about half the dense work.
  const double pairs = qo_len == kv_len ? 0.5 * qo_len * (kv_len + 1.0) : 1.0 * qo_len * kv_len;
  const double gflops = 4.0 * pairs * kNumHeads * kHeadDim / (us * 1e3);
  std::printf("%-8s qo_len %4d kv_len %5d threads %2d: %9.1f us  %6.2f GFLOP/s\n", name, qo_len,
              kv_len, pool->num_threads(), us, gflops);
}

}  // namespace
}  // namespace shardserve::cpu

int main(int argc, char** argv) {
  using namespace shardserve;
  using namespace shardserve::cpu;
  const int max_threads = argc > 1 ? std::atoi(argv[1]) : ThreadPool::DefaultThreads();
  std::printf("isa %s, heads %d/%d, head_dim %d, block_size %d\n", IsaName(ActiveIsa()),
              kNumHeads, kNumKvHeads, kHeadDim, kBlockSize);
  for (int threads : {1, max_threads}) {
    ThreadPool pool(threads);
    Report("decode", 1, 512, &pool);
    Report("decode", 1, 4096, &pool);
    Report("prefill", 512, 512, &pool);
    if (threads == max_threads) break;
  }
  return 0;
}
