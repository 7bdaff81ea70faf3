#include "kernels/cpu/moe_dispatch.h"

#include <algorithm>
#include <cstring>

#include "glog/logging.h"

namespace shardserve::cpu {

void BuildMoeDispatch(const int32_t* topk_ids, const float* topk_weights, int64_t num_tokens, int k,
                      int expert_begin, int expert_end, MoeDispatch* dispatch) {
  CHECK_LE(expert_begin, expert_end);
  const int num_local = expert_end - expert_begin;
  const int64_t num_choices = num_tokens * k;
  std::vector<int32_t>& indptr = dispatch->expert_indptr;
  indptr.assign(num_local + 1, 0);
  // Counting sort by expert; scanning tokens in order keeps each expert's list sorted.
  for (int64_t i = 0; i < num_choices; ++i) {
    const int e = topk_ids[i] - expert_begin;
    if (e >= 0 && e < num_local) ++indptr[e + 1];
  }
  for (int e = 0; e < num_local; ++e) indptr[e + 1] += indptr[e];
  const int32_t num_entries = indptr[num_local];
  dispatch->token_idx.resize(num_entries);
  dispatch->choice.resize(num_entries);
  dispatch->weights.resize(num_entries);
  std::vector<int32_t> fill(indptr.begin(), indptr.end() - 1);
  for (int64_t i = 0; i < num_choices; ++i) {
    const int e = topk_ids[i] - expert_begin;
    if (e < 0 || e >= num_local) continue;
    const int32_t at = fill[e]++;
    dispatch->token_idx[at] = static_cast<int32_t>(i / k);
    dispatch->choice[at] = static_cast<int32_t>(i % k);
    dispatch->weights[at] = topk_weights[i];
  }
}

void GatherRows(const float* x, int64_t cols, const int32_t* rows, int64_t n, float* out,
                ThreadPool* pool) {
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      std::memcpy(out + i * cols, x + static_cast<int64_t>(rows[i]) * cols, sizeof(float) * cols);
    }
  };
  if (pool == nullptr || n * cols < (1 << 16)) {
    run(0, n);
  } else {
    pool->ParallelFor(n, 8, run);
  }
}

void MoeCombine(const float* expert_out, const int32_t* token_idx, const float* weights, int64_t n,
                int64_t hidden, float* out, ThreadPool* pool) {
  // Threads take column ranges, so rows that hit the same token never race.
  auto run = [&](int64_t c0, int64_t c1) {
    for (int64_t i = 0; i < n; ++i) {
      const float w = weights[i];
      const float* src = expert_out + i * hidden;
      float* dst = out + static_cast<int64_t>(token_idx[i]) * hidden;
      for (int64_t c = c0; c < c1; ++c) dst[c] += w * src[c];
    }
  };
  if (pool == nullptr || n * hidden < (1 << 15)) {
    run(0, hidden);
  } else {
    pool->ParallelFor(hidden, 64, run);
  }
}

}  // namespace shardserve::cpu
