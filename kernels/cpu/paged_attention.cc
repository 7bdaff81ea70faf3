#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
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
// A query tile of at most this many tokens (decode rows) whose visible KV range is longer than
// kSplitKv is split into ranges of about equal length, at most kSplitKv each, whose partial
// results are merged (flash decoding), so that one long sequence still keeps every thread busy.
// NOTES: the split depends only on the tile itself, never on the rest of the batch or the thread
// count, so a sequence's output is the same bits whatever else shares the step.
constexpr int kMaxSplitTokens = 4;
constexpr int kSplitKv = 256;
static_assert(kSplitKv % kKvChunk == 0);
// Keys per step of the interleaved head loops in RunItem: a multiple of every tile kernel's key
// block, so that the products are those of one call over the chunk.
constexpr int kStepKeys = 8;

// Query rows [q_begin, q_end) of sequence `seq`, for the query heads of kv heads
// [h_begin, h_end), against kv positions [kv_begin, kv_end). Every kv head is computed alike
// whichever item holds it; one item holding all of a sequence's kv heads reads each cached
// token's keys and values as one contiguous run, which streams from memory much better than a
// head's slice of every token.
struct WorkItem {
  int seq;
  int h_begin;
  int h_end;
  int q_begin;
  int q_end;
  int kv_begin;
  int kv_end;
  int64_t cost;
  // Offset (in floats) of this item's unnormalised partial result in the merge buffer, or -1
  // when the item covers the whole KV range and writes the output itself. Partials are laid
  // out per kv head: [h_end - h_begin][PartialFloats(rows)].
  int64_t partial;
};

// A tile whose KV range was split: items [first_item, first_item + num_items) are merged.
struct MergeGroup {
  int first_item;
  int num_items;
};

// Cache lines to prefetch, kept as ranges: the rows of consecutive tokens of one block are
// adjacent (all of an item's kv heads), so a chunk's lines make a few ranges rather than a
// thousand entries.
class LineQueue {
 public:
  void Clear() {
    ranges_.clear();
    num_lines_ = 0;
    range_ = 0;
    line_ = 0;
  }
  // Queues the lines of [p, p + bytes).
  void Add(const char* p, int64_t bytes) {
    const uintptr_t first = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{63};
    const uintptr_t last = (reinterpret_cast<uintptr_t>(p) + bytes - 1) & ~uintptr_t{63};
    if (!ranges_.empty() && first >= ranges_.back().first && first <= ranges_.back().last + 64) {
      Range& r = ranges_.back();
      if (last > r.last) {
        num_lines_ += (last - r.last) / 64;
        r.last = last;
      }
      return;
    }
    ranges_.push_back({first, last});
    num_lines_ += (last - first) / 64 + 1;
  }
  int64_t num_lines() const { return num_lines_; }
  // Prefetches the next `count` queued lines.
  void Fetch(int64_t count) {
    for (; count > 0 && range_ < ranges_.size(); --count) {
      const uintptr_t a = ranges_[range_].first + 64 * line_;
      __builtin_prefetch(reinterpret_cast<const char*>(a), 0, 3);
      if (a == ranges_[range_].last) {
        ++range_;
        line_ = 0;
      } else {
        ++line_;
      }
    }
  }

 private:
  struct Range {
    uintptr_t first;  // first and last line addresses
    uintptr_t last;
  };
  std::vector<Range> ranges_;
  int64_t num_lines_ = 0;
  size_t range_ = 0;  // the next line to fetch
  int64_t line_ = 0;
};

struct Scratch {
  std::vector<float> q;              // [heads, rows, head_dim], pre-multiplied by the scale
  std::vector<float> o;              // [heads, rows, head_dim], unnormalised output
  std::vector<float> s;              // [heads, rows, kKvChunk] scores, then probabilities
  std::vector<float> row_max;        // [heads, rows]
  std::vector<float> row_sum;        // [heads, rows]
  std::vector<int64_t> slot_offset;  // [kKvChunk] element offset of each key's cache row
  // Row pointers of the chunk, [heads, kKvChunk]: the F32 pair or the F16 pair is used.
  std::vector<const float*> k_rows;
  std::vector<const float*> v_rows;
  std::vector<const uint16_t*> k_rows16;
  std::vector<const uint16_t*> v_rows16;
  LineQueue lines;  // to prefetch
};

Scratch& ThreadScratch() {
  static thread_local Scratch scratch;
  return scratch;
}

// The row pointers of one kv head for n cached tokens whose rows start at slot_offset[j]
// elements.
template <class T>
void SetRows(const T* k, const T* v, const int64_t* slot_offset, int n, int64_t head_offset,
             const T** k_rows, const T** v_rows) {
  for (int j = 0; j < n; ++j) {
    k_rows[j] = k + slot_offset[j] + head_offset;
    v_rows[j] = v + slot_offset[j] + head_offset;
  }
}

// Partial results of one kv head of an item: o [rows, head_dim], then row_max [rows], then
// row_sum [rows].
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

  // `next`, when known, is the item this thread runs after `item`: its first keys and values
  // are fetched while `item` is computed, unless `prefetched`, those of `item` first.
  void RunItem(const WorkItem& item, const WorkItem* next, bool prefetched);
  void Merge(const MergeGroup& group) const;
  float* OutRow(int s, int token_in_seq, int head) const {
    return out_ +
           (static_cast<int64_t>(QoBegin(s) + token_in_seq) * p_.num_heads + head) * head_dim_;
  }
  // Queues the cache lines of keys, then values, [c0, c0 + n) of an item's kv heads.
  void CollectLines(const WorkItem& item, int c0, int n, LineQueue* lines) const;

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
  // One unit per query tile and KV range, all kv heads together.
  std::vector<WorkItem> units;
  std::vector<MergeGroup> unit_merges;  // over `units`
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
      const int len = kv_end - kv_begin;
      const int64_t rows = static_cast<int64_t>(qe - qb) * group_;
      if (qe - qb > kMaxSplitTokens || len <= kSplitKv) {
        units.push_back({s, 0, cache_.num_kv_heads, qb, qe, kv_begin, kv_end, rows * len, -1});
        continue;
      }
      const int pieces = (len + kSplitKv - 1) / kSplitKv;
      const int piece_len = ((len + pieces - 1) / pieces + kKvChunk - 1) / kKvChunk * kKvChunk;
      unit_merges.push_back({static_cast<int>(units.size()), 0});
      for (int b = kv_begin; b < kv_end; b += piece_len) {
        const int e = std::min(kv_end, b + piece_len);
        units.push_back({s, 0, cache_.num_kv_heads, qb, qe, b, e, rows * (e - b), 0});
        ++unit_merges.back().num_items;
      }
    }
  }

  // Too few units to keep every thread busy: one item per kv head instead (the same
  // arithmetic, so the choice does not change any result).
  const bool per_head = num_threads > 1 && cache_.num_kv_heads > 1 &&
                        static_cast<int64_t>(units.size()) < 2 * num_threads;
  std::vector<int> first_item(units.size() + 1);
  int64_t partial_floats = 0;
  for (size_t u = 0; u < units.size(); ++u) {
    first_item[u] = static_cast<int>(items_.size());
    const WorkItem& w = units[u];
    const int64_t head_floats = PartialFloats((w.q_end - w.q_begin) * group_, head_dim_);
    const int step = per_head ? 1 : cache_.num_kv_heads;
    for (int h = 0; h < cache_.num_kv_heads; h += step) {
      WorkItem item = w;
      item.h_begin = h;
      item.h_end = h + step;
      item.cost = w.cost * step;
      if (w.partial >= 0) {
        item.partial = partial_floats;
        partial_floats += head_floats * step;
      }
      items_.push_back(item);
    }
  }
  first_item[units.size()] = static_cast<int>(items_.size());
  for (const MergeGroup& g : unit_merges) {
    merges_.push_back({first_item[g.first_item],
                       first_item[g.first_item + g.num_items] - first_item[g.first_item]});
  }
  partials_.resize(partial_floats);
  order_.resize(items_.size());
  std::iota(order_.begin(), order_.end(), 0);
  std::stable_sort(order_.begin(), order_.end(),
                   [&](int a, int b) { return items_[a].cost > items_[b].cost; });
}

void Runner::Execute(ThreadPool* pool) {
  const int num_threads = pool == nullptr ? 1 : pool->num_threads();
  const int num_items = static_cast<int>(order_.size());
  if (num_threads == 1 || items_.size() <= 1) {
    for (int k = 0; k < num_items; ++k) {
      RunItem(items_[order_[k]], k + 1 < num_items ? &items_[order_[k + 1]] : nullptr, k > 0);
    }
  } else {
    // Each thread claims its next item before running the current one, so that it can fetch
    // the next item's first keys while computing.
    std::atomic<int> next{0};
    pool->Run([&](int, int) {
      int cur = next.fetch_add(1);
      bool prefetched = false;
      while (cur < num_items) {
        const int after = next.fetch_add(1);
        RunItem(items_[order_[cur]], after < num_items ? &items_[order_[after]] : nullptr,
                prefetched);
        cur = after;
        prefetched = true;
      }
    });
  }
  if (merges_.empty()) return;
  auto merge_all = [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) Merge(merges_[g]);
  };
  if (pool == nullptr || merges_.size() < 4) {
    merge_all(0, merges_.size());
  } else {
    pool->ParallelFor(merges_.size(), 1, merge_all);
  }
}

void Runner::CollectLines(const WorkItem& item, int c0, int n, LineQueue* lines) const {
  const int32_t* blocks = p_.kv_indices + p_.kv_indptr[item.seq];
  const int block_size = cache_.block_size;
  const int64_t elem = cache_.elem_bytes();
  const int64_t span = static_cast<int64_t>(item.h_end - item.h_begin) * head_dim_ * elem;
  for (const void* base : {cache_.k, cache_.v}) {
    for (int j = c0; j < c0 + n; ++j) {
      const int64_t slot =
          static_cast<int64_t>(blocks[j / block_size]) * block_size + j % block_size;
      lines->Add(static_cast<const char*>(base) +
                     (slot * cache_.num_kv_heads + item.h_begin) * head_dim_ * elem,
                 span);
    }
  }
}

void Runner::RunItem(const WorkItem& item, const WorkItem* next, bool prefetched) {
  const int d_len = head_dim_;
  const int s = item.seq;
  const int heads = item.h_end - item.h_begin;
  const int tokens = item.q_end - item.q_begin;
  const int rows = tokens * group_;  // per kv head
  const size_t head_q = static_cast<size_t>(rows) * d_len;
  const size_t head_s = static_cast<size_t>(rows) * kKvChunk;
  Scratch& sc = ThreadScratch();
  sc.q.resize(head_q * heads);
  sc.o.assign(head_q * heads, 0.0f);
  sc.s.resize(head_s * heads);
  sc.row_max.assign(static_cast<size_t>(rows) * heads, kNegInf);
  sc.row_sum.assign(static_cast<size_t>(rows) * heads, 0.0f);
  sc.slot_offset.resize(kKvChunk);
  const bool f16 = cache_.type == KvCacheType::kF16;
  if (f16) {
    sc.k_rows16.resize(kKvChunk * heads);
    sc.v_rows16.resize(kKvChunk * heads);
  } else {
    sc.k_rows.resize(kKvChunk * heads);
    sc.v_rows.resize(kKvChunk * heads);
  }
  // One kv head: the keys of a token are a short slice of a longer row, so there is no run to
  // read, and fewer, longer kernel calls do better. Several: the interleaved, prefetched steps
  // described below.
  const bool interleave = heads > 1;
  const int step_keys = interleave ? kStepKeys : kKvChunk;

  // The item's first keys and values, unless the previous item already asked for them.
  if (interleave && !prefetched) {
    sc.lines.Clear();
    CollectLines(item, item.kv_begin, std::min(kKvChunk, item.kv_end - item.kv_begin), &sc.lines);
    sc.lines.Fetch(sc.lines.num_lines());
  }

  // The query heads of one kv head are adjacent within a token, so each token contributes
  // group_ contiguous rows.
  for (int h = 0; h < heads; ++h) {
    for (int t = 0; t < tokens; ++t) {
      const float* src = q_ + (static_cast<int64_t>(QoBegin(s) + item.q_begin + t) * p_.num_heads +
                               (item.h_begin + h) * group_) *
                                  d_len;
      float* dst = sc.q.data() + h * head_q + static_cast<size_t>(t) * group_ * d_len;
      for (int i = 0; i < group_ * d_len; ++i) dst[i] = src[i] * p_.scale;
    }
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
      sc.slot_offset[j] = slot * cache_.num_kv_heads * d_len;
      if (++in_block == block_size) {
        in_block = 0;
        ++block_idx;
      }
    }
    for (int h = 0; h < heads; ++h) {
      const int64_t head_offset = static_cast<int64_t>(item.h_begin + h) * d_len;
      if (f16) {
        SetRows(static_cast<const uint16_t*>(cache_.k), static_cast<const uint16_t*>(cache_.v),
                sc.slot_offset.data(), n, head_offset, sc.k_rows16.data() + h * kKvChunk,
                sc.v_rows16.data() + h * kKvChunk);
      } else {
        SetRows(static_cast<const float*>(cache_.k), static_cast<const float*>(cache_.v),
                sc.slot_offset.data(), n, head_offset, sc.k_rows.data() + h * kKvChunk,
                sc.v_rows.data() + h * kKvChunk);
      }
    }
    // The lines of the next chunk (or of the next item's first), fetched a few at a time
    // between the kernel calls below: a burst of prefetches stalls the core once its miss
    // buffers are full, and then nothing is in flight while it computes. Decode attention over
    // many sequences streams the whole cache once per step, so keeping the fetches flowing
    // while computing matters most for long contexts.
    sc.lines.Clear();
    if (interleave) {
      if (c0 + n < item.kv_end) {
        CollectLines(item, c0 + n, std::min(kKvChunk, item.kv_end - c0 - n), &sc.lines);
      } else if (next != nullptr) {
        CollectLines(*next, next->kv_begin, std::min(kKvChunk, next->kv_end - next->kv_begin),
                     &sc.lines);
      }
    }
    const int steps = 2 * heads * ((n + step_keys - 1) / step_keys);
    const int64_t per_step = (sc.lines.num_lines() + steps - 1) / steps;
    auto fetch_some = [&] { sc.lines.Fetch(per_step); };
    const int r_lo = t_lo * group_;
    const int r_hi = t_hi * group_;
    // Scores, step_keys keys at a time for every head in turn, so that each cached token's keys
    // are read as one run (the same products as one call per head over the chunk).
    for (int j0 = 0; j0 < n; j0 += step_keys) {
      const int nj = std::min(step_keys, n - j0);
      for (int h = 0; h < heads; ++h) {
        fetch_some();
        const float* q_rows = sc.q.data() + h * head_q + static_cast<size_t>(r_lo) * d_len;
        float* s_rows = sc.s.data() + h * head_s + j0;
        if (f16) {
          kern_.qk_f16(q_rows, r_hi - r_lo, d_len, sc.k_rows16.data() + h * kKvChunk + j0, nj,
                       s_rows, kKvChunk);
        } else {
          kern_.qk(q_rows, r_hi - r_lo, d_len, sc.k_rows.data() + h * kKvChunk + j0, nj, s_rows,
                   kKvChunk);
        }
      }
    }
    for (int h = 0; h < heads; ++h) {
      float* s_tile = sc.s.data() + h * head_s;
      float* o_h = sc.o.data() + h * head_q;
      float* max_h = sc.row_max.data() + static_cast<size_t>(h) * rows;
      float* sum_h = sc.row_sum.data() + static_cast<size_t>(h) * rows;
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
          const float alpha = kern_.softmax_step(srow, n, &max_h[r], &sum_h[r]);
          if (alpha != 1.0f) {
            float* orow = o_h + static_cast<size_t>(r) * d_len;
            for (int d = 0; d < d_len; ++d) orow[d] *= alpha;
          }
        }
      }
    }
    // Values the same way; each output row still sums the keys in order.
    for (int j0 = 0; j0 < n; j0 += step_keys) {
      const int nj = std::min(step_keys, n - j0);
      for (int h = 0; h < heads; ++h) {
        fetch_some();
        const float* p_rows = sc.s.data() + h * head_s + j0;
        float* o_rows = sc.o.data() + h * head_q + static_cast<size_t>(r_lo) * d_len;
        if (f16) {
          kern_.pv_f16(p_rows, kKvChunk, r_hi - r_lo, sc.v_rows16.data() + h * kKvChunk + j0, nj,
                       d_len, o_rows);
        } else {
          kern_.pv(p_rows, kKvChunk, r_hi - r_lo, sc.v_rows.data() + h * kKvChunk + j0, nj, d_len,
                   o_rows);
        }
      }
    }
  }

  for (int h = 0; h < heads; ++h) {
    const float* o_h = sc.o.data() + h * head_q;
    const float* max_h = sc.row_max.data() + static_cast<size_t>(h) * rows;
    const float* sum_h = sc.row_sum.data() + static_cast<size_t>(h) * rows;
    if (item.partial >= 0) {
      float* dst = partials_.data() + item.partial + h * PartialFloats(rows, d_len);
      std::memcpy(dst, o_h, sizeof(float) * rows * d_len);
      std::memcpy(dst + static_cast<size_t>(rows) * d_len, max_h, sizeof(float) * rows);
      std::memcpy(dst + static_cast<size_t>(rows) * (d_len + 1), sum_h, sizeof(float) * rows);
      continue;
    }
    for (int r = 0; r < rows; ++r) {
      const float inv = sum_h[r] > 0.0f ? 1.0f / sum_h[r] : 0.0f;
      float* dst = OutRow(s, item.q_begin + r / group_, (item.h_begin + h) * group_ + r % group_);
      const float* orow = o_h + static_cast<size_t>(r) * d_len;
      for (int d = 0; d < d_len; ++d) dst[d] = orow[d] * inv;
    }
  }
}

void Runner::Merge(const MergeGroup& mg) const {
  const WorkItem& first = items_[mg.first_item];
  const int rows = (first.q_end - first.q_begin) * group_;
  const int d_len = head_dim_;
  const int64_t head_floats = PartialFloats(rows, d_len);
  // The group's items cover each kv head once per KV range, in range order (all heads in one
  // item, or one item per head); Merge visits a head's ranges in that order.
  for (int kvh = 0; kvh < cache_.num_kv_heads; ++kvh) {
    for (int r = 0; r < rows; ++r) {
      auto part_of = [&](const WorkItem& item) {
        return partials_.data() + item.partial + (kvh - item.h_begin) * head_floats;
      };
      auto holds = [&](const WorkItem& item) { return kvh >= item.h_begin && kvh < item.h_end; };
      float global_max = kNegInf;
      for (int k = 0; k < mg.num_items; ++k) {
        const WorkItem& item = items_[mg.first_item + k];
        if (!holds(item)) continue;
        global_max = std::max(global_max, part_of(item)[static_cast<size_t>(rows) * d_len + r]);
      }
      float* dst = OutRow(first.seq, first.q_begin + r / group_, kvh * group_ + r % group_);
      std::fill(dst, dst + d_len, 0.0f);
      float sum = 0.0f;
      for (int k = 0; k < mg.num_items; ++k) {
        const WorkItem& item = items_[mg.first_item + k];
        if (!holds(item)) continue;
        const float* part = part_of(item);
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
}

}  // namespace

void WriteKv(const float* k, const float* v, const int64_t* slot_mapping, int64_t num_tokens,
             const PagedKvCache& cache, ThreadPool* pool) {
  const int64_t row = cache.row_elems();
  const int64_t num_slots = cache.num_blocks * cache.block_size;
  const bool f16 = cache.type == KvCacheType::kF16;
  const AttentionTileKernels& kern = GetAttentionTileKernels(cache.head_dim);
  auto run = [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = slot_mapping[t];
      if (slot < 0) continue;
      CHECK_LT(slot, num_slots) << "token " << t;
      if (f16) {
        kern.to_f16(k + t * row, static_cast<int>(row),
                    static_cast<uint16_t*>(cache.k) + slot * row);
        kern.to_f16(v + t * row, static_cast<int>(row),
                    static_cast<uint16_t*>(cache.v) + slot * row);
      } else {
        std::memcpy(static_cast<float*>(cache.k) + slot * row, k + t * row, sizeof(float) * row);
        std::memcpy(static_cast<float*>(cache.v) + slot * row, v + t * row, sizeof(float) * row);
      }
    }
  };
  if (pool == nullptr || num_tokens * row < (1 << 16)) {
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
