// Times PagedAttention for SmolLM2-135M-shaped heads (9 query heads, 3 kv heads, head_dim 64):
// decode (one query row) at two context lengths, and a 512-token prefill (F32 cache). Prints the
// median wall time per call and, for one thread, the median CPU time of the calling thread, which
// is the steadier number on a machine shared with other jobs. Then a whole decode step's attention
// for 1 and 16 sequences with F32 and F16 caches: one call per layer over 30 layers' caches,
// which together exceed the last-level cache as a serving step's do.
//
//   bazel run //kernels/cpu:paged_attention_bench -- [num_threads] [steps]
// ("steps": only the whole-step timings).
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/fp16.h"
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

// Median wall time of one decode step's attention: num_seqs sequences of kv_len cached tokens,
// one query row each, over kNumLayers layers with separate caches. Blocks are interleaved over the
// sequences, as sequences that grow in lockstep are handed them.
double TimeDecodeStep(int num_seqs, int kv_len, KvCacheType type, ThreadPool* pool) {
  constexpr int kNumLayers = 30;
  const int blocks_per_seq = (kv_len + kBlockSize - 1) / kBlockSize;
  const int num_blocks = blocks_per_seq * num_seqs;
  const int64_t row = kNumKvHeads * kHeadDim;
  const int64_t cache_elems = static_cast<int64_t>(num_blocks) * kBlockSize * row;
  const bool f16 = type == KvCacheType::kF16;
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  // Page-aligned, as the engine's KV cache is (worker/kv_cache.h).
  const size_t bytes = (cache_elems * (f16 ? 2 : 4) + 4095) / 4096 * 4096;
  std::unique_ptr<char, decltype(&std::free)> region(
      static_cast<char*>(std::aligned_alloc(4096, bytes * 2 * kNumLayers)), &std::free);
  std::vector<void*> k(kNumLayers), v(kNumLayers);
  for (int l = 0; l < kNumLayers; ++l) {
    k[l] = region.get() + (2 * l) * bytes;
    v[l] = region.get() + (2 * l + 1) * bytes;
    for (void* p : {k[l], v[l]}) {
      for (int64_t i = 0; i < cache_elems; ++i) {
        if (f16) {
          static_cast<uint16_t*>(p)[i] = FloatToFp16(dist(gen));
        } else {
          static_cast<float*>(p)[i] = dist(gen);
        }
      }
    }
  }
  std::vector<float> q(static_cast<int64_t>(num_seqs) * kNumHeads * kHeadDim);
  for (float& x : q) x = dist(gen);
  std::vector<float> out(q.size());
  std::vector<int32_t> qo_indptr(num_seqs + 1), kv_indptr(num_seqs + 1), kv_lens(num_seqs, kv_len);
  std::vector<int32_t> indices;
  for (int s = 0; s <= num_seqs; ++s) {
    qo_indptr[s] = s;
    kv_indptr[s] = s * blocks_per_seq;
  }
  for (int s = 0; s < num_seqs; ++s) {
    for (int b = 0; b < blocks_per_seq; ++b) indices.push_back(b * num_seqs + s);
  }
  PagedAttentionParams params;
  params.num_seqs = num_seqs;
  params.qo_indptr = qo_indptr.data();
  params.kv_indptr = kv_indptr.data();
  params.kv_indices = indices.data();
  params.kv_lens = kv_lens.data();
  params.num_heads = kNumHeads;
  params.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  std::vector<double> ms;
  for (int r = 0; r < 22; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int l = 0; l < kNumLayers; ++l) {
      PagedKvCache cache{k[l], v[l], num_blocks, kBlockSize, kNumKvHeads, kHeadDim, type};
      PagedAttention(q.data(), cache, params, out.data(), pool);
    }
    const auto t1 = std::chrono::steady_clock::now();
    if (r >= 2) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return Median(ms);
}

void ReportStep(int num_seqs, int kv_len, KvCacheType type, ThreadPool* pool) {
  const double ms = TimeDecodeStep(num_seqs, kv_len, type, pool);
  const int elem_bytes = type == KvCacheType::kF16 ? 2 : 4;
  const double bytes = 30.0 * num_seqs * kv_len * 2 * kNumKvHeads * kHeadDim * elem_bytes;
  std::printf("step %s %2d seqs kv_len %5d threads %2d: wall %9.3f ms (KV %6.1f MB, %5.1f GB/s)\n",
              type == KvCacheType::kF16 ? "f16" : "f32", num_seqs, kv_len, pool->num_threads(), ms,
              bytes / 1e6, bytes / (ms * 1e6));
}

}  // namespace
}  // namespace shardserve::cpu

int main(int argc, char** argv) {
  using namespace shardserve;
  using namespace shardserve::cpu;
  const int max_threads = argc > 1 ? std::atoi(argv[1]) : ThreadPool::DefaultThreads();
  const bool steps_only = argc > 2 && std::string(argv[2]) == "steps";
  std::printf("isa %s, heads %d/%d, head_dim %d, block_size %d\n", IsaName(ActiveIsa()), kNumHeads,
              kNumKvHeads, kHeadDim, kBlockSize);
  for (int threads : {1, max_threads}) {
    ThreadPool pool(threads);
    if (!steps_only) {
      Report("decode", 1, 512, &pool);
      Report("decode", 1, 4096, &pool);
      Report("prefill", 512, 512, &pool);
    }
    for (int num_seqs : {1, 16}) {
      for (int kv_len : {80, 512}) {
        for (KvCacheType type : {KvCacheType::kF32, KvCacheType::kF16}) {
          ReportStep(num_seqs, kv_len, type, &pool);
        }
      }
    }
    if (threads == max_threads) break;
  }
  return 0;
}
