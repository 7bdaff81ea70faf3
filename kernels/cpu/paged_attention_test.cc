#include "kernels/cpu/paged_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "common/fp16.h"
#include "gtest/gtest.h"

namespace shardserve::cpu {
namespace {

struct Seq {
  int qo_len;
  int kv_len;
};

struct Case {
  int num_heads;
  int num_kv_heads;
  int head_dim;
  int block_size;
  std::vector<Seq> seqs;
  int sliding_window = 0;
  int threads = 1;
  KvCacheType type = KvCacheType::kF32;
};

std::vector<float> Random(size_t n, std::mt19937& gen, float scale) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// Runs one case through WriteKv + PagedAttention and compares with dense causal attention in
// double on the same keys and values. An F16 case draws values that halves hold exactly and
// must also give the same bits as an F32 cache of those values.
void RunCase(const Case& c, uint32_t seed) {
  std::mt19937 gen(seed);
  const int num_seqs = c.seqs.size();
  const int64_t row = static_cast<int64_t>(c.num_kv_heads) * c.head_dim;

  // Fragmented cache: blocks handed out from a shuffled pool with spare blocks in between.
  int total_blocks = 0;
  for (const Seq& s : c.seqs) total_blocks += (s.kv_len + c.block_size - 1) / c.block_size;
  const int num_blocks = total_blocks * 2 + 3;
  std::vector<int32_t> pool_ids(num_blocks);
  std::iota(pool_ids.begin(), pool_ids.end(), 0);
  std::shuffle(pool_ids.begin(), pool_ids.end(), gen);

  // Unused slots hold NaN: reading one would poison the output.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> k_cache(num_blocks * c.block_size * row, nan);
  std::vector<float> v_cache(k_cache.size(), nan);
  PagedKvCache cache{k_cache.data(), v_cache.data(), num_blocks,
                     c.block_size,   c.num_kv_heads, c.head_dim};
  const bool f16 = c.type == KvCacheType::kF16;
  const uint16_t half_nan = 0x7e00;
  std::vector<uint16_t> k_half(f16 ? k_cache.size() : 0, half_nan);
  std::vector<uint16_t> v_half(k_half.size(), half_nan);
  PagedKvCache half_cache{k_half.data(),  v_half.data(), num_blocks,       c.block_size,
                          c.num_kv_heads, c.head_dim,    KvCacheType::kF16};

  std::vector<int32_t> qo_indptr = {0}, kv_indptr = {0}, kv_indices, kv_lens;
  std::vector<std::vector<float>> dense_k(num_seqs), dense_v(num_seqs);
  int next_block = 0;
  for (int s = 0; s < num_seqs; ++s) {
    const Seq& seq = c.seqs[s];
    const int blocks = (seq.kv_len + c.block_size - 1) / c.block_size;
    for (int b = 0; b < blocks; ++b) kv_indices.push_back(pool_ids[next_block++]);
    qo_indptr.push_back(qo_indptr.back() + seq.qo_len);
    kv_indptr.push_back(kv_indptr.back() + blocks);
    kv_lens.push_back(seq.kv_len);
    dense_k[s] = Random(seq.kv_len * row, gen, 1.0f);
    dense_v[s] = Random(seq.kv_len * row, gen, 1.0f);
    if (f16) {
      for (auto* dense : {&dense_k[s], &dense_v[s]}) {
        for (float& x : *dense) x = Fp16ToFloat(FloatToFp16(x));
      }
    }
    std::vector<int64_t> slots(seq.kv_len);
    for (int p = 0; p < seq.kv_len; ++p) {
      slots[p] = static_cast<int64_t>(kv_indices[kv_indptr[s] + p / c.block_size]) * c.block_size +
                 p % c.block_size;
    }
    WriteKv(dense_k[s].data(), dense_v[s].data(), slots.data(), seq.kv_len, cache);
    if (f16) WriteKv(dense_k[s].data(), dense_v[s].data(), slots.data(), seq.kv_len, half_cache);
  }

  const int num_tokens = qo_indptr.back();
  const int64_t q_row = static_cast<int64_t>(c.num_heads) * c.head_dim;
  const auto q = Random(num_tokens * q_row, gen, 3.0f);
  std::vector<float> out(q.size(), nan);

  PagedAttentionParams params;
  params.num_seqs = num_seqs;
  params.qo_indptr = qo_indptr.data();
  params.kv_indptr = kv_indptr.data();
  params.kv_indices = kv_indices.data();
  params.kv_lens = kv_lens.data();
  params.num_heads = c.num_heads;
  params.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  params.sliding_window = c.sliding_window;
  ThreadPool thread_pool(c.threads);
  PagedAttention(q.data(), cache, params, out.data(), &thread_pool);
  if (f16) {
    std::vector<float> out_half(q.size(), nan);
    PagedAttention(q.data(), half_cache, params, out_half.data(), &thread_pool);
    ASSERT_EQ(std::memcmp(out_half.data(), out.data(), sizeof(float) * out.size()), 0)
        << "an F16 cache differs from an F32 cache of the same values";
  }

  const int group = c.num_heads / c.num_kv_heads;
  std::vector<double> scores, want(c.head_dim);
  for (int s = 0; s < num_seqs; ++s) {
    const Seq& seq = c.seqs[s];
    for (int i = 0; i < seq.qo_len; ++i) {
      const int pos = seq.kv_len - seq.qo_len + i;
      const int first = c.sliding_window > 0 ? std::max(0, pos - c.sliding_window + 1) : 0;
      for (int h = 0; h < c.num_heads; ++h) {
        const int kvh = h / group;
        const float* qv = q.data() + (qo_indptr[s] + i) * q_row + h * c.head_dim;
        scores.assign(pos + 1 - first, 0.0);
        double max = -std::numeric_limits<double>::infinity();
        for (int j = first; j <= pos; ++j) {
          const float* kv = dense_k[s].data() + j * row + kvh * c.head_dim;
          double dot = 0.0;
          for (int d = 0; d < c.head_dim; ++d) dot += static_cast<double>(qv[d]) * kv[d];
          scores[j - first] = dot / std::sqrt(static_cast<double>(c.head_dim));
          max = std::max(max, scores[j - first]);
        }
        double sum = 0.0;
        for (double& x : scores) sum += (x = std::exp(x - max));
        std::fill(want.begin(), want.end(), 0.0);
        for (int j = first; j <= pos; ++j) {
          const float* vv = dense_v[s].data() + j * row + kvh * c.head_dim;
          for (int d = 0; d < c.head_dim; ++d) want[d] += scores[j - first] / sum * vv[d];
        }
        const float* got = out.data() + (qo_indptr[s] + i) * q_row + h * c.head_dim;
        for (int d = 0; d < c.head_dim; ++d) {
          ASSERT_NEAR(got[d], want[d], 2e-5)
              << "seq " << s << " query " << i << " head " << h << " dim " << d;
        }
      }
    }
  }
}

TEST(PagedAttentionTest, DecodeGqa3) {
  Case c{9, 3, 64, 16, {{1, 1}, {1, 17}, {1, 300}, {1, 1000}}};
  RunCase(c, 1);
  c.threads = 3;
  RunCase(c, 2);
}

TEST(PagedAttentionTest, PrefillGqa4) {
  for (int block_size : {1, 16}) {
    Case c{8, 2, 128, block_size, {{1, 1}, {5, 5}, {100, 100}, {257, 257}}};
    RunCase(c, 3);
    c.threads = 2;
    RunCase(c, 4);
  }
}

TEST(PagedAttentionTest, ChunkedPrefillMha) {
  Case c{4, 4, 64, 16, {{37, 300}, {129, 193}, {2, 64}}};
  RunCase(c, 5);
  c.block_size = 1;
  c.threads = 3;
  RunCase(c, 6);
}

TEST(PagedAttentionTest, MixedBatch) {
  // Decode steps, a fresh prompt, a prompt chunk after a cached prefix, and a sequence with no
  // query rows this step, in one batch.
  Case c{12, 4, 64, 16, {{1, 700}, {60, 60}, {1, 3}, {0, 40}, {33, 90}, {1, 64}}};
  RunCase(c, 7);
  c.threads = 3;
  RunCase(c, 8);
}

TEST(PagedAttentionTest, LongDecodeSplitOverThreads) {
  // One or two sequences, many threads: the KV range is split and merged.
  Case one{9, 3, 64, 16, {{1, 5000}}, 0, 4};
  RunCase(one, 9);
  Case two{8, 1, 128, 16, {{1, 3000}, {1, 1200}}, 0, 3};
  RunCase(two, 10);
  Case prefill{4, 2, 64, 16, {{300, 2000}}, 0, 4};
  RunCase(prefill, 11);
}

TEST(PagedAttentionTest, SlidingWindow) {
  Case c{8, 2, 64, 16, {{1, 500}, {200, 200}, {70, 400}, {1, 20}}, 50};
  RunCase(c, 12);
  c.threads = 3;
  RunCase(c, 13);
  Case long_decode{4, 4, 64, 16, {{1, 3000}}, 1000, 4};
  RunCase(long_decode, 14);
}

TEST(PagedAttentionTest, HeadDimNotMultipleOfEight) {
  Case c{6, 2, 20, 16, {{1, 100}, {40, 50}}};
  RunCase(c, 15);
}

TEST(PagedAttentionTest, F16CacheEqualsF32CacheOfTheSameValues) {
  // Decode, prefill after a prefix, a long split decode, a sliding window, and a head size
  // the AVX2 kernels do not take (the portable ones then run).
  Case mixed{12, 4, 64, 16, {{1, 700}, {60, 60}, {1, 3}, {0, 40}, {33, 90}, {1, 64}}};
  mixed.type = KvCacheType::kF16;
  RunCase(mixed, 21);
  mixed.threads = 3;
  RunCase(mixed, 22);
  Case split{9, 3, 64, 16, {{1, 5000}, {1, 300}}, 0, 4};
  split.type = KvCacheType::kF16;
  RunCase(split, 23);
  Case window{8, 2, 64, 16, {{1, 500}, {70, 400}}, 50, 2};
  window.type = KvCacheType::kF16;
  RunCase(window, 24);
  Case odd{6, 2, 20, 16, {{1, 100}, {40, 50}}};
  odd.type = KvCacheType::kF16;
  RunCase(odd, 25);
}

// Continuous batching runs a sequence's attention next to any other sequences, on any number of
// threads: its output must be the same bits whatever shares the call (how the work is split may
// depend on the batch; the arithmetic of each sequence may not).
TEST(PagedAttentionTest, SequenceResultsDoNotDependOnTheBatch) {
  const int num_heads = 9, num_kv_heads = 3, head_dim = 64, block_size = 16;
  const int64_t row = num_kv_heads * head_dim;
  // Decode rows at lengths around the split length, prefill chunks, and a long decode split
  // into many ranges.
  const std::vector<Seq> seqs = {{1, 1},    {1, 80},  {1, 256}, {1, 257}, {1, 700},
                                 {1, 3000}, {7, 300}, {40, 40}, {3, 520}};
  std::mt19937 gen(17);
  int total_blocks = 0;
  for (const Seq& q : seqs) total_blocks += (q.kv_len + block_size - 1) / block_size;
  std::vector<float> k_cache(static_cast<int64_t>(total_blocks) * block_size * row);
  std::vector<float> v_cache(k_cache.size());
  for (float& x : k_cache) x = std::uniform_real_distribution<float>(-1.0f, 1.0f)(gen);
  for (float& x : v_cache) x = std::uniform_real_distribution<float>(-1.0f, 1.0f)(gen);
  PagedKvCache cache{k_cache.data(), v_cache.data(), total_blocks,
                     block_size,     num_kv_heads,   head_dim};
  // Each sequence's blocks, scattered, and its query rows.
  std::vector<int32_t> ids(total_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), gen);
  std::vector<std::vector<int32_t>> seq_blocks;
  std::vector<std::vector<float>> seq_q;
  int next = 0;
  for (const Seq& q : seqs) {
    const int blocks = (q.kv_len + block_size - 1) / block_size;
    seq_blocks.emplace_back(ids.begin() + next, ids.begin() + next + blocks);
    next += blocks;
    seq_q.push_back(Random(static_cast<size_t>(q.qo_len) * num_heads * head_dim, gen, 3.0f));
  }

  // Runs the sequences `members`, in that order, and returns each one's output.
  auto run = [&](const std::vector<int>& members, int threads) {
    std::vector<int32_t> qo_indptr = {0}, kv_indptr = {0}, kv_indices, kv_lens;
    std::vector<float> q;
    for (int m : members) {
      kv_indices.insert(kv_indices.end(), seq_blocks[m].begin(), seq_blocks[m].end());
      qo_indptr.push_back(qo_indptr.back() + seqs[m].qo_len);
      kv_indptr.push_back(static_cast<int32_t>(kv_indices.size()));
      kv_lens.push_back(seqs[m].kv_len);
      q.insert(q.end(), seq_q[m].begin(), seq_q[m].end());
    }
    std::vector<float> out(q.size());
    PagedAttentionParams params;
    params.num_seqs = static_cast<int>(members.size());
    params.qo_indptr = qo_indptr.data();
    params.kv_indptr = kv_indptr.data();
    params.kv_indices = kv_indices.data();
    params.kv_lens = kv_lens.data();
    params.num_heads = num_heads;
    params.scale = 0.125f;
    ThreadPool pool(threads);
    PagedAttention(q.data(), cache, params, out.data(), &pool);
    std::vector<std::vector<float>> per_seq;
    for (size_t i = 0; i < members.size(); ++i) {
      const int64_t width = static_cast<int64_t>(num_heads) * head_dim;
      per_seq.emplace_back(out.begin() + qo_indptr[i] * width,
                           out.begin() + qo_indptr[i + 1] * width);
    }
    return per_seq;
  };

  std::vector<std::vector<float>> alone;
  for (int m = 0; m < static_cast<int>(seqs.size()); ++m) alone.push_back(run({m}, 1)[0]);
  std::vector<int> all(seqs.size());
  std::iota(all.begin(), all.end(), 0);
  std::vector<std::vector<int>> batches = {all, {3, 1}, {4, 2, 0}, {8, 6, 7, 5}};
  for (int copies = 0; copies < 12; ++copies) batches.push_back({1, 2, 3, 8});  // many short
  std::vector<int> reversed(all.rbegin(), all.rend());
  batches.push_back(reversed);
  for (int threads : {1, 2, 3}) {
    for (int m = 0; m < static_cast<int>(seqs.size()); ++m) {
      ASSERT_EQ(run({m}, threads)[0], alone[m]) << "seq " << m << " alone, threads " << threads;
    }
    for (const std::vector<int>& batch : batches) {
      const auto got = run(batch, threads);
      for (size_t i = 0; i < batch.size(); ++i) {
        ASSERT_EQ(got[i], alone[batch[i]])
            << "seq " << batch[i] << " in a batch of " << batch.size() << ", threads " << threads;
      }
    }
  }
}

// A prompt row's output must not depend on how the prompt was cut into prefill chunks (the
// serving engine cuts where a step's token budget ends, so a prefilling group and the engine
// alone cut alike only by chance): each chunk, run against the cache that holds the whole
// prompt, gives the rows that one call over the whole prompt gives. Lengths stay below the
// flash-decoding split (tiles of a few tokens over more than 256 keys), whose merge rounds
// differently by design.
TEST(PagedAttentionTest, PromptRowsDoNotDependOnTheChunking) {
  const int num_heads = 9, num_kv_heads = 3, head_dim = 64, block_size = 16;
  const int len = 150;
  const int64_t width = static_cast<int64_t>(num_heads) * head_dim;
  std::mt19937 gen(29);
  const int num_blocks = (len + block_size - 1) / block_size;
  std::vector<float> k_cache =
      Random(static_cast<size_t>(num_blocks) * block_size * num_kv_heads * head_dim, gen, 1.0f);
  std::vector<float> v_cache = Random(k_cache.size(), gen, 1.0f);
  PagedKvCache cache{k_cache.data(), v_cache.data(), num_blocks,
                     block_size,     num_kv_heads,   head_dim};
  std::vector<int32_t> blocks(num_blocks);
  std::iota(blocks.begin(), blocks.end(), 0);
  std::shuffle(blocks.begin(), blocks.end(), gen);
  const std::vector<float> q = Random(static_cast<size_t>(len) * width, gen, 3.0f);

  // Rows [begin, end) of the prompt as one chunk over the cached prefix [0, end).
  auto run_chunk = [&](int begin, int end, int threads, float* out) {
    const std::vector<int32_t> qo_indptr = {0, end - begin};
    const std::vector<int32_t> kv_indptr = {0, num_blocks};
    const int32_t kv_len = end;
    PagedAttentionParams params;
    params.num_seqs = 1;
    params.qo_indptr = qo_indptr.data();
    params.kv_indptr = kv_indptr.data();
    params.kv_indices = blocks.data();
    params.kv_lens = &kv_len;
    params.num_heads = num_heads;
    params.scale = 0.125f;
    ThreadPool pool(threads);
    PagedAttention(q.data() + begin * width, cache, params, out + begin * width, &pool);
  };
  std::vector<float> whole(static_cast<size_t>(len) * width);
  run_chunk(0, len, 1, whole.data());
  for (int chunk : {1, 2, 3, 4, 7, 13, 14, 16, 33, 64, 100}) {
    for (int threads : {1, 2}) {
      std::vector<float> got(whole.size());
      for (int begin = 0; begin < len; begin += chunk) {
        run_chunk(begin, std::min(len, begin + chunk), threads, got.data());
      }
      for (int64_t i = 0; i < len * width; ++i) {
        ASSERT_EQ(got[i], whole[i]) << "chunks of " << chunk << ", threads " << threads
                                    << ": token " << i / width << " element " << i % width;
      }
    }
  }
}

TEST(PagedAttentionTest, WriteKvPlacesRowsInSlots) {
  const int num_blocks = 4, block_size = 4, kv_heads = 2, head_dim = 8;
  const int64_t row = kv_heads * head_dim;
  std::vector<float> k_cache(num_blocks * block_size * row, -1.0f);
  std::vector<float> v_cache(k_cache.size(), -1.0f);
  PagedKvCache cache{k_cache.data(), v_cache.data(), num_blocks, block_size, kv_heads, head_dim};
  const int num_tokens = 4;
  std::vector<float> k(num_tokens * row), v(num_tokens * row);
  for (int64_t i = 0; i < num_tokens * row; ++i) {
    k[i] = static_cast<float>(i);
    v[i] = static_cast<float>(1000 + i);
  }
  // Token 2 is padding.
  const std::vector<int64_t> slots = {13, 2, -1, 7};
  WriteKv(k.data(), v.data(), slots.data(), num_tokens, cache);
  for (int64_t slot = 0; slot < num_blocks * block_size; ++slot) {
    const auto it = std::find(slots.begin(), slots.end(), slot);
    for (int64_t e = 0; e < row; ++e) {
      if (it == slots.end()) {
        ASSERT_EQ(k_cache[slot * row + e], -1.0f);
        ASSERT_EQ(v_cache[slot * row + e], -1.0f);
      } else {
        const int64_t t = it - slots.begin();
        // Block slot / block_size, offset slot % block_size, then [kv_head, head_dim].
        const int64_t at = ((slot / block_size) * block_size + slot % block_size) * row + e;
        ASSERT_EQ(k_cache[at], k[t * row + e]);
        ASSERT_EQ(v_cache[at], v[t * row + e]);
      }
    }
  }
}

TEST(PagedAttentionTest, WriteKvRoundsIntoAnF16Cache) {
  const int num_blocks = 2, block_size = 4, kv_heads = 3, head_dim = 8;
  const int64_t row = kv_heads * head_dim;
  std::vector<uint16_t> k_cache(num_blocks * block_size * row, 0xffff);
  std::vector<uint16_t> v_cache(k_cache.size(), 0xffff);
  PagedKvCache cache{k_cache.data(), v_cache.data(), num_blocks,       block_size,
                     kv_heads,       head_dim,       KvCacheType::kF16};
  std::mt19937 gen(3);
  const int num_tokens = 3;
  const auto k = Random(num_tokens * row, gen, 100.0f);
  const auto v = Random(num_tokens * row, gen, 1e-3f);
  const std::vector<int64_t> slots = {5, -1, 0};
  WriteKv(k.data(), v.data(), slots.data(), num_tokens, cache);
  for (int64_t slot = 0; slot < num_blocks * block_size; ++slot) {
    const auto it = std::find(slots.begin(), slots.end(), slot);
    for (int64_t e = 0; e < row; ++e) {
      if (it == slots.end()) {
        ASSERT_EQ(k_cache[slot * row + e], 0xffff);
        ASSERT_EQ(v_cache[slot * row + e], 0xffff);
      } else {
        const int64_t t = it - slots.begin();
        ASSERT_EQ(k_cache[slot * row + e], FloatToFp16(k[t * row + e]));
        ASSERT_EQ(v_cache[slot * row + e], FloatToFp16(v[t * row + e]));
      }
    }
  }
}

}  // namespace
}  // namespace shardserve::cpu
