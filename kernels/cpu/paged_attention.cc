#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "glog/logging.h"
#include "kernels/cpu/attention_tile.h"
#include "kernels/cpu/vec_exp.h"

namespace shardserve::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Keys per inner step: the scores of a tile stay in L1, the chunk's keys and values in L2.
constexpr int kKvChunk = 64;
// Query rows (tokens x query heads of one kv head) per work item: each key and value loaded
// is used this many times.
constexpr int kTileRows = 32;
// The shortest KV range given its own work item when a sequence is split over threads.
constexpr int kMinSplitKv = 256;

// Query rows [q_begin, q_end) of sequence `seq` (all query heads of `kv_head`) against kv
// positions [kv_begin, kv_end).
struct WorkItem {
  int seq;
  int kv_head;
  int q_begin;
  int q_end;
  int kv_begin;
  int kv_end;
  int64_t cost;
  // Offset (in floats) of this item's unnormalised partial result in the merge buffer, or -1
  // when the item covers the whole KV range and writes the output itself.
  int64_t partial;
};

// A tile whose KV range was split: items [first_item, first_item + num_items) are merged.
struct MergeGroup {
  int first_item;
  int num_items;
};

struct Scratch {
  std::vector<float> q;        // [rows, head_dim], pre-multiplied by the scale
  std::vector<float> o;        // [rows, head_dim], unnormalised output
  std::vector<float> s;        // [rows, kKvChunk] scores, then probabilities
  std::vector<float> row_max;  // [rows]
  std::vector<float> row_sum;  // [rows]
  std::vector<const float*> k_rows;
  std::vector<const float*> v_rows;
};

Scratch& ThreadScratch() {
  static thread_local Scratch scratch;
  return scratch;
}

// Partial results of one item: o [rows, head_dim], then row_max [rows], then row_sum [rows].
int64_t PartialFloats(int rows, int head_dim) {
  return static_cast<int64_t>(rows) * (head_dim + 2);
}

class Runner {
 public:
  Runner(const float* q, const PagedKvCache& cache, const PagedAttentionParams& params, float* out)
      : q_(q),
        cache_(cache),
        p_(params),
        out_(out),
        group_(params.num_heads / cache.num_kv_heads),
        head_dim_(cache.head_dim),
        kern_(GetAttentionTileKernels(cache.head_dim)) {}

  void Plan(int num_threads);
  void Execute(ThreadPool* pool);

 private:
  int QoBegin(int s) const { return p_.qo_indptr[s]; }
  int QoLen(int s) const { return p_.qo_indptr[s + 1] - p_.qo_indptr[s]; }
  // Position of query row i of sequence s.
  int QueryPos(int s, int i) const { return p_.kv_lens[s] - QoLen(s) + i; }
  int FirstVisible(int pos) const {
    return p_.sliding_window > 0 ? std::max(0, pos - p_.sliding_window + 1) : 0;
  }

  void RunItem(const WorkItem& item);
  void Merge(const MergeGroup& group, int row_begin, int row_end) const;
  float* OutRow(int s, int token_in_seq, int head) const {
    return out_ +
           (static_cast<int64_t>(QoBegin(s) + token_in_seq) * p_.num_heads + head) * head_dim_;
  }

  const float* q_;
  const PagedKvCache& cache_;
  const PagedAttentionParams& p_;
  float* out_;
  const int group_;
  const int head_dim_;
  const AttentionTileKernels& kern_;

  std::vector<WorkItem> items_;
  std::vector<int> order_;  // items_ by decreasing cost, for load balance
  std::vector<MergeGroup> merges_;
  std::vector<float> partials_;
};

void Runner::Plan(int num_threads) {
  const int tile_tokens = std::max(1, kTileRows / group_);
  std::vector<WorkItem> base;
  for (int s = 0; s < p_.num_seqs; ++s) {
    const int qo_len = QoLen(s);
    const int kv_len = p_.kv_lens[s];
    const int num_blocks = p_.kv_indptr[s + 1] - p_.kv_indptr[s];
    CHECK(qo_len >= 0 && qo_len <= kv_len)
        << "seq " << s << " qo_len " << qo_len << " kv_len " << kv_len;
    CHECK_LE(kv_len, static_cast<int64_t>(num_blocks) * cache_.block_size) << "seq " << s;
    for (int b = 0; b < (kv_len + cache_.block_size - 1) / cache_.block_size; ++b) {
      const int32_t block = p_.kv_indices[p_.kv_indptr[s] + b];
      CHECK(block >= 0 && block < cache_.num_blocks) << "seq " << s << " block " << block;
    }
    for (int qb = 0; qb < qo_len; qb += tile_tokens) {
      const int qe = std::min(qo_len, qb + tile_tokens);
      const int kv_begin = FirstVisible(QueryPos(s, qb));
      const int kv_end = QueryPos(s, qe - 1) + 1;
      for (int h = 0; h < cache_.num_kv_heads; ++h) {
        const int64_t cost = static_cast<int64_t>(qe - qb) * group_ * (kv_end - kv_begin);
        base.push_back({s, h, qb, qe, kv_begin, kv_end, cost, -1});
      }
    }
  }
  const int64_t total_cost =
      std::accumulate(base.begin(), base.end(), int64_t{0},
                      [](int64_t acc, const WorkItem& w) { return acc + w.cost; });

  // Split long KV ranges when there are too few items to keep every thread busy. When all
  // items cost the same (one sequence, or a uniform decode batch) pick the split count that
  // makes the number of items a multiple of the thread count.
  const bool uniform =
      !base.empty() && std::all_of(base.begin(), base.end(),
                                   [&](const WorkItem& w) { return w.cost == base[0].cost; });
  const int64_t target = std::max<int64_t>(1, total_cost / (2 * num_threads));
  int uniform_splits = 1;
  if (uniform && num_threads > 1) {
    const int num_base = static_cast<int>(base.size());
    uniform_splits = num_threads / std::gcd(num_base, num_threads);
    while (static_cast<int64_t>(num_base) * uniform_splits < 2 * num_threads) uniform_splits *= 2;
  }
  int64_t partial_floats = 0;
  for (const WorkItem& w : base) {
    const int len = w.kv_end - w.kv_begin;
    int splits = 1;
    if (num_threads > 1 && w.cost > target) {
      splits = uniform ? uniform_splits : static_cast<int>((w.cost + target - 1) / target);
      splits = std::min(splits, std::max(1, len / kMinSplitKv));
    }
    if (splits <= 1) {
      items_.push_back(w);
      continue;
    }
    int split_len = (len + splits - 1) / splits;
    split_len = (split_len + kKvChunk - 1) / kKvChunk * kKvChunk;
    const int rows = (w.q_end - w.q_begin) * group_;
    merges_.push_back({static_cast<int>(items_.size()), 0});
    for (int b = w.kv_begin; b < w.kv_end; b += split_len) {
      WorkItem part = w;
      part.kv_begin = b;
      part.kv_end = std::min(w.kv_end, b + split_len);
      part.cost = static_cast<int64_t>(rows) * (part.kv_end - part.kv_begin);
      part.partial = partial_floats;
      partial_floats += PartialFloats(rows, head_dim_);
      items_.push_back(part);
      ++merges_.back().num_items;
    }
  }
  partials_.resize(partial_floats);
  order_.resize(items_.size());
  std::iota(order_.begin(), order_.end(), 0);
  std::stable_sort(order_.begin(), order_.end(),
                   [&](int a, int b) { return items_[a].cost > items_[b].cost; });
}

void Runner::Execute(ThreadPool* pool) {
  const int num_threads = pool == nullptr ? 1 : pool->num_threads();
  if (num_threads == 1 || items_.size() <= 1) {
    for (int i : order_) RunItem(items_[i]);
  } else {
    std::atomic<int> next{0};
    pool->Run([&](int, int) {
      for (int k = next.fetch_add(1); k < static_cast<int>(order_.size()); k = next.fetch_add(1)) {
        RunItem(items_[order_[k]]);
      }
    });
  }
  if (merges_.empty()) return;
  auto merge_all = [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const WorkItem& w = items_[merges_[g].first_item];
      Merge(merges_[g], 0, (w.q_end - w.q_begin) * group_);
    }
  };
  if (pool == nullptr || merges_.size() < 4) {
    merge_all(0, merges_.size());
  } else {
    pool->ParallelFor(merges_.size(), 1, merge_all);
  }
}

void Runner::RunItem(const WorkItem& item) {
  const int d_len = head_dim_;
  const int s = item.seq;
  const int tokens = item.q_end - item.q_begin;
  const int rows = tokens * group_;
  Scratch& sc = ThreadScratch();
  sc.q.resize(static_cast<size_t>(rows) * d_len);
  sc.o.assign(static_cast<size_t>(rows) * d_len, 0.0f);
  sc.s.resize(static_cast<size_t>(rows) * kKvChunk);
  sc.row_max.assign(rows, kNegInf);
  sc.row_sum.assign(rows, 0.0f);
  sc.k_rows.resize(kKvChunk);
  sc.v_rows.resize(kKvChunk);

  // The query heads of one kv head are adjacent within a token, so each token contributes
  // group_ contiguous rows.
  for (int t = 0; t < tokens; ++t) {
    const float* src = q_ + (static_cast<int64_t>(QoBegin(s) + item.q_begin + t) * p_.num_heads +
                             item.kv_head * group_) *
                                d_len;
    float* dst = sc.q.data() + static_cast<size_t>(t) * group_ * d_len;
    for (int i = 0; i < group_ * d_len; ++i) dst[i] = src[i] * p_.scale;
  }

  const int32_t* blocks = p_.kv_indices + p_.kv_indptr[s];
  const int block_size = cache_.block_size;
  const int first_pos = QueryPos(s, item.q_begin);  // position of the tile's first token
  for (int c0 = item.kv_begin; c0 < item.kv_end; c0 += kKvChunk) {
    const int n = std::min(kKvChunk, item.kv_end - c0);
    // Tokens [t_lo, t_hi) of the tile see at least one key of this chunk: later tokens see
    // later positions, so they form one range.
    const int t_lo = std::max(0, c0 - first_pos);
    int t_hi = tokens;
    if (p_.sliding_window > 0) {
      // Token t sees the chunk while its first visible position <= c0 + n - 1.
      t_hi = std::min(tokens, c0 + n - 1 + p_.sliding_window - first_pos);
    }
    if (t_lo >= t_hi) continue;
    int block_idx = c0 / block_size;
    int in_block = c0 % block_size;
    for (int j = 0; j < n; ++j) {
      const int64_t slot = static_cast<int64_t>(blocks[block_idx]) * block_size + in_block;
      const int64_t offset = (slot * cache_.num_kv_heads + item.kv_head) * d_len;
      sc.k_rows[j] = cache_.k + offset;
      sc.v_rows[j] = cache_.v + offset;
      if (++in_block == block_size) {
        in_block = 0;
        ++block_idx;
      }
    }
    const int r_lo = t_lo * group_;
    const int r_hi = t_hi * group_;
    float* s_tile = sc.s.data();
    kern_.qk(sc.q.data() + static_cast<size_t>(r_lo) * d_len, r_hi - r_lo, d_len, sc.k_rows.data(),
             n, s_tile, kKvChunk);
    for (int t = t_lo; t < t_hi; ++t) {
      const int pos = first_pos + t;
      const int j_lo = std::max(0, FirstVisible(pos) - c0);
      const int j_hi = std::min(n, pos - c0 + 1);
      for (int g = 0; g < group_; ++g) {
        const int r = t * group_ + g;
        float* srow = s_tile + static_cast<size_t>(r - r_lo) * kKvChunk;
        if (j_lo >= j_hi) {
          std::fill(srow, srow + n, 0.0f);
          continue;
        }
        std::fill(srow, srow + j_lo, kNegInf);
        std::fill(srow + j_hi, srow + n, kNegInf);
        const float alpha = kern_.softmax_step(srow, n, &sc.row_max[r], &sc.row_sum[r]);
        if (alpha != 1.0f) {
          float* orow = sc.o.data() + static_cast<size_t>(r) * d_len;
          for (int d = 0; d < d_len; ++d) orow[d] *= alpha;
        }
      }
    }
    kern_.pv(s_tile, kKvChunk, r_hi - r_lo, sc.v_rows.data(), n, d_len,
             sc.o.data() + static_cast<size_t>(r_lo) * d_len);
  }

  if (item.partial >= 0) {
    float* dst = partials_.data() + item.partial;
    std::memcpy(dst, sc.o.data(), sizeof(float) * rows * d_len);
    std::memcpy(dst + static_cast<size_t>(rows) * d_len, sc.row_max.data(), sizeof(float) * rows);
    std::memcpy(dst + static_cast<size_t>(rows) * (d_len + 1), sc.row_sum.data(),
                sizeof(float) * rows);
    return;
  }
  for (int r = 0; r < rows; ++r) {
    const float inv = sc.row_sum[r] > 0.0f ? 1.0f / sc.row_sum[r] : 0.0f;
    float* dst = OutRow(s, item.q_begin + r / group_, item.kv_head * group_ + r % group_);
    const float* orow = sc.o.data() + static_cast<size_t>(r) * d_len;
    for (int d = 0; d < d_len; ++d) dst[d] = orow[d] * inv;
  }
}

void Runner::Merge(const MergeGroup& mg, int row_begin, int row_end) const {
  const WorkItem& first = items_[mg.first_item];
  const int rows = (first.q_end - first.q_begin) * group_;
  const int d_len = head_dim_;
  for (int r = row_begin; r < row_end; ++r) {
    float global_max = kNegInf;
    for (int k = 0; k < mg.num_items; ++k) {
      const float* part = partials_.data() + items_[mg.first_item + k].partial;
      global_max = std::max(global_max, part[static_cast<size_t>(rows) * d_len + r]);
    }
    float* dst = OutRow(first.seq, first.q_begin + r / group_, first.kv_head * group_ + r % group_);
    std::fill(dst, dst + d_len, 0.0f);
    float sum = 0.0f;
    for (int k = 0; k < mg.num_items; ++k) {
      const float* part = partials_.data() + items_[mg.first_item + k].partial;
      const float part_max = part[static_cast<size_t>(rows) * d_len + r];
      if (part_max == kNegInf) continue;  // this range holds no key the row may see
      const float w = ExpF(part_max - global_max);
      sum += w * part[static_cast<size_t>(rows) * (d_len + 1) + r];
      const float* orow = part + static_cast<size_t>(r) * d_len;
      for (int d = 0; d < d_len; ++d) dst[d] += w * orow[d];
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int d = 0; d < d_len; ++d) dst[d] *= inv;
  }
}

}  // namespace

void WriteKv(const float* k, const float* v, const int64_t* slot_mapping, int64_t num_tokens,
             const PagedKvCache& cache, ThreadPool* pool) {
  const int64_t row_floats = cache.row_floats();
  const int64_t num_slots = cache.num_blocks * cache.block_size;
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = slot_mapping[t];
      if (slot < 0) continue;
      CHECK_LT(slot, num_slots) << "token " << t;
      std::memcpy(cache.k + slot * row_floats, k + t * row_floats, sizeof(float) * row_floats);
      std::memcpy(cache.v + slot * row_floats, v + t * row_floats, sizeof(float) * row_floats);
    }
  };
  if (pool == nullptr || num_tokens * row_floats < (1 << 16)) {
    run(0, num_tokens);
  } else {
    pool->ParallelFor(num_tokens, 16, run);
  }
}

void PagedAttention(const float* q, const PagedKvCache& cache, const PagedAttentionParams& params,
                    float* out, ThreadPool* pool) {
  CHECK_GT(cache.num_kv_heads, 0);
  CHECK_GT(cache.head_dim, 0);
  CHECK_GT(cache.block_size, 0);
  CHECK(params.num_heads > 0 && params.num_heads % cache.num_kv_heads == 0)
      << "num_heads " << params.num_heads << " num_kv_heads " << cache.num_kv_heads;
  CHECK_GE(params.sliding_window, 0);
  if (params.num_seqs == 0) return;
  Runner runner(q, cache, params, out);
  runner.Plan(pool == nullptr ? 1 : pool->num_threads());
  runner.Execute(pool);
}

}  // namespace shardserve::cpu
