// Attention over a paged KV cache, for a batch mixing prefill chunks and decode steps.
//
// The KV cache of one layer is two arrays K and V of floats or halves, each
// [num_blocks, block_size, num_kv_heads, head_dim]; token slot `slot` of the cache is
// block slot / block_size, row slot % block_size. A batch is described in CSR form, as in
// FlashInfer:
//   sequence s owns query rows qo_indptr[s] .. qo_indptr[s + 1] of q, and its KV blocks are
//   kv_indices[kv_indptr[s] .. kv_indptr[s + 1]], in order, holding kv_lens[s] tokens.
// The query rows of a sequence are its LAST qo_len positions (qo_len = qo_indptr[s + 1] -
// qo_indptr[s], REQUIRES qo_len <= kv_len), so a decode step has qo_len = 1 and a prefill chunk
// appended to a cached prefix has qo_len < kv_len. Query row i of a sequence (0-based) is at
// position p = kv_len - qo_len + i and sees kv positions [0, p] (causal), or
// [p - sliding_window + 1, p] with a sliding window (Mistral).
//
// Grouped-query attention: query head h reads kv head h / (num_heads / num_kv_heads).
//
//   PagedKvCache cache{k_cache, v_cache, num_blocks, 16, num_kv_heads, head_dim};
//   WriteKv(k, v, slot_mapping, num_tokens, cache, &pool);   // append this step's keys/values
//   PagedAttentionParams params;
//   params.num_seqs = num_seqs;
//   params.qo_indptr = qo_indptr; ...
//   params.num_heads = num_heads;
//   params.scale = 1.0f / std::sqrt(head_dim);
//   PagedAttention(q, cache, params, out, &pool);
#ifndef SHARDSERVE_KERNELS_CPU_PAGED_ATTENTION_H_
#define SHARDSERVE_KERNELS_CPU_PAGED_ATTENTION_H_

#include <cstdint>

#include "common/thread_pool.h"

namespace shardserve::cpu {

// How cached keys and values are stored: floats, or IEEE halves (rounded to nearest even when
// written, converted back exactly when read).
enum class KvCacheType { kF32, kF16 };

// A view of one layer's paged KV cache; does not own the arrays.
struct PagedKvCache {
  void* k = nullptr;  // [num_blocks, block_size, num_kv_heads, head_dim] of `type`
  void* v = nullptr;  // [num_blocks, block_size, num_kv_heads, head_dim] of `type`
  int64_t num_blocks = 0;
  int block_size = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  KvCacheType type = KvCacheType::kF32;

  // Elements (and bytes) of one token's keys (or values), all kv heads.
  int64_t row_elems() const { return static_cast<int64_t>(num_kv_heads) * head_dim; }
  int64_t elem_bytes() const { return type == KvCacheType::kF16 ? 2 : 4; }
};

// Scatters this step's keys and values into their cache slots, rounding them to halves for an
// F16 cache.
// k, v:         [num_tokens, num_kv_heads, head_dim]
// slot_mapping: [num_tokens]; slot = block_idx * block_size + offset. A negative slot skips
//               the token (padding). REQUIRES: slots < num_blocks * block_size, and distinct.
void WriteKv(const float* k, const float* v, const int64_t* slot_mapping, int64_t num_tokens,
             const PagedKvCache& cache, ThreadPool* pool = nullptr);

struct PagedAttentionParams {
  int num_seqs = 0;
  const int32_t* qo_indptr = nullptr;   // [num_seqs + 1], qo_indptr[0] = 0
  const int32_t* kv_indptr = nullptr;   // [num_seqs + 1], kv_indptr[0] = 0
  const int32_t* kv_indices = nullptr;  // [kv_indptr[num_seqs]] block ids
  const int32_t* kv_lens = nullptr;     // [num_seqs]; REQUIRES: kv_lens[s] <=
                                        //   (kv_indptr[s + 1] - kv_indptr[s]) * block_size
  int num_heads = 0;                    // REQUIRES: a multiple of cache.num_kv_heads
  float scale = 1.0f;                   // usually 1 / sqrt(head_dim)
  int sliding_window = 0;               // 0: none; else each query sees this many positions
};

// Causal attention of every query row against its sequence's cached keys and values, which
// must already include this step's (WriteKv first).
// q:   [num_tokens, num_heads, head_dim], num_tokens = qo_indptr[num_seqs]
// out: [num_tokens, num_heads, head_dim]; must not overlap q or the cache.
// Softmax is computed online in float (running max and sum, as flash attention does), so any
// kv_len works in fixed scratch memory. Work is split over (sequence, query tile), and a decode
// row's KV range longer than 256 positions over ranges of at most that length whose partial
// results are then merged (flash decoding); with few such pieces, over kv heads too. A
// sequence's pieces depend only on that sequence, so its output is the same bits whatever else
// is in the batch and however many threads run it. pool may be null (runs on the calling
// thread).
void PagedAttention(const float* q, const PagedKvCache& cache, const PagedAttentionParams& params,
                    float* out, ThreadPool* pool = nullptr);

}  // namespace shardserve::cpu

#endif  // SHARDSERVE_KERNELS_CPU_PAGED_ATTENTION_H_
