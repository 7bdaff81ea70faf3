#include "worker/comm/tcp_kv_transport.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "model/shard_spec.h"
#include "worker/kv_cache.h"

namespace shardserve {
namespace {

constexpr int64_t kLayers = 4;
constexpr int64_t kHeads = 3;  // SmolLM2's KV heads: TP=2 splits them 2 + 1
constexpr int64_t kHeadDim = 8;
constexpr int64_t kBlockSize = 4;
constexpr int64_t kNumBlocks = 16;
constexpr int64_t kMaxTokens = kNumBlocks * kBlockSize;
// The transport moves rows as bytes in the caches' dtype, so the tests store 16-bit codes in
// every element: as exact floats in an F32 cache, as the raw bits of an F16 cache (never read as
// numbers). Prompt codes are 1 .. kLayers * 2 * kMaxTokens * kHeads * kHeadDim.
constexpr uint32_t kUntouched = 0xffff;
constexpr uint32_t kPrefillFill = 0xfffe;
static_assert(kLayers * 2 * kMaxTokens * kHeads * kHeadDim < kPrefillFill);
// Scheduling noise on a loaded machine; failures must still come well before a hang.
constexpr absl::Duration kSlack = absl::Seconds(3);
constexpr absl::Duration kWaitTimeout = absl::Seconds(20);
constexpr DType kDTypes[] = {DType::kF16, DType::kF32};

std::string DTypeParamName(const ::testing::TestParamInfo<DType>& info) {
  return DTypeName(info.param);
}

uint64_t NewTransferId() {
  static std::atomic<uint64_t> next{1};
  return next++;
}

TcpKvOptions Options(absl::Duration io_timeout = absl::Seconds(5)) {
  TcpKvOptions options;
  options.io_timeout = io_timeout;
  return options;
}

// The code of one element of the prompt's KV, distinct for every (layer, K/V, token, head, dim).
uint32_t Value(int64_t layer, int kind, int64_t token, int64_t head, int64_t d) {
  return static_cast<uint32_t>(
      1 + ((((layer * 2 + kind) * kMaxTokens + token) * kHeads + head) * kHeadDim + d));
}

void Store(void* row, DType dtype, int64_t d, uint32_t code) {
  if (dtype == DType::kF16) {
    static_cast<uint16_t*>(row)[d] = static_cast<uint16_t>(code);
  } else {
    static_cast<float*>(row)[d] = static_cast<float>(code);
  }
}

uint32_t Load(const void* row, DType dtype, int64_t d) {
  if (dtype == DType::kF16) return static_cast<const uint16_t*>(row)[d];
  return static_cast<uint32_t>(static_cast<const float*>(row)[d]);
}

// One rank's KV cache: its layers and heads of the model, and the blocks of the prompt.
struct RankKv {
  IndexRange layers;
  IndexRange heads;
  std::vector<int32_t> block_ids;  // in token order
  std::unique_ptr<KvCache> cache;

  DType dtype() const { return cache->shape().dtype; }
  void* Row(int64_t layer_idx, int kind, int64_t block, int64_t offset, int64_t head_idx) const {
    const KvLayerView& v = cache->layers()[layer_idx];
    return static_cast<char*>(kind == 0 ? v.k : v.v) +
           (block * kBlockSize + offset) * v.row_bytes() + head_idx * kHeadDim * v.elem_bytes();
  }
};

// A `dtype` rank whose every element is `fill`, with the prompt's blocks a shuffle of the
// cache's blocks chosen by `seed` (so both sides' block ids differ).
RankKv MakeRank(IndexRange layers, IndexRange heads, int seed, uint32_t fill, DType dtype) {
  RankKv rank{layers, heads, {}, nullptr};
  KvCacheShape shape{layers.size(), kNumBlocks, kBlockSize, heads.size(), kHeadDim, dtype};
  rank.cache = std::move(KvCache::Create(shape)).value();
  for (const KvLayerView& v : rank.cache->layers()) {
    const int64_t n = v.num_blocks * v.block_size * v.num_kv_heads * v.head_dim;
    for (int64_t i = 0; i < n; ++i) {
      Store(v.k, dtype, i, fill);
      Store(v.v, dtype, i, fill);
    }
  }
  rank.block_ids.resize(kNumBlocks);
  std::iota(rank.block_ids.begin(), rank.block_ids.end(), 0);
  std::shuffle(rank.block_ids.begin(), rank.block_ids.end(), std::mt19937(seed));
  return rank;
}

void WritePrompt(const RankKv& rank, int64_t num_tokens) {
  for (int64_t l = 0; l < rank.layers.size(); ++l) {
    for (int kind = 0; kind < 2; ++kind) {
      for (int64_t t = 0; t < num_tokens; ++t) {
        for (int64_t h = 0; h < rank.heads.size(); ++h) {
          void* row = rank.Row(l, kind, rank.block_ids[t / kBlockSize], t % kBlockSize, h);
          for (int64_t d = 0; d < kHeadDim; ++d) {
            Store(row, rank.dtype(), d,
                  Value(rank.layers.begin + l, kind, t, rank.heads.begin + h, d));
          }
        }
      }
    }
  }
}

// Checks every element of a decode rank's cache: the prompt's value in the slots of tokens
// [0, num_tokens) of `layers_written` (a sub-range of the rank's layers), kUntouched elsewhere.
void ExpectCache(const RankKv& rank, int64_t num_tokens, IndexRange layers_written) {
  std::vector<int64_t> position(kNumBlocks, -1);  // block id -> index in block_ids
  for (int64_t i = 0; i < (num_tokens + kBlockSize - 1) / kBlockSize; ++i) {
    position[rank.block_ids[i]] = i;
  }
  int64_t mismatches = 0;
  for (int64_t l = 0; l < rank.layers.size(); ++l) {
    const int64_t layer = rank.layers.begin + l;
    const bool written = layer >= layers_written.begin && layer < layers_written.end;
    for (int kind = 0; kind < 2; ++kind) {
      for (int64_t b = 0; b < kNumBlocks; ++b) {
        for (int64_t o = 0; o < kBlockSize; ++o) {
          const int64_t token = position[b] * kBlockSize + o;
          const bool in_prompt = written && position[b] >= 0 && token < num_tokens;
          for (int64_t h = 0; h < rank.heads.size(); ++h) {
            const void* row = rank.Row(l, kind, b, o, h);
            for (int64_t d = 0; d < kHeadDim; ++d) {
              const uint32_t want =
                  in_prompt ? Value(layer, kind, token, rank.heads.begin + h, d) : kUntouched;
              const uint32_t got = Load(row, rank.dtype(), d);
              if (got != want && ++mismatches <= 5) {
                ADD_FAILURE() << DTypeName(rank.dtype()) << " layer " << layer << " kind " << kind
                              << " block " << b << " offset " << o << " head "
                              << rank.heads.begin + h << " dim " << d << ": " << got << ", want "
                              << want;
              }
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

void ExpectUntouched(const RankKv& rank) { ExpectCache(rank, 0, IndexRange{0, 0}); }

KvDestination DestinationOf(const RankKv& rank, int64_t num_tokens) {
  KvDestination d;
  d.block_ids = rank.block_ids;
  d.num_tokens = num_tokens;
  d.layers = rank.layers;
  d.kv_heads = rank.heads;
  d.layer_views.assign(rank.cache->layers().begin(), rank.cache->layers().end());
  return d;
}

KvSource SourceOf(const RankKv& rank, int64_t layer, int64_t num_tokens) {
  KvSource s;
  s.view = rank.cache->layers()[layer - rank.layers.begin];
  s.block_ids = rank.block_ids;
  s.num_tokens = num_tokens;
  s.kv_heads = rank.heads;
  return s;
}

// The ranks of a tp x pp group over the test model, with `dtype` caches.
std::vector<RankKv> MakeGroup(int tp, int pp, int seed, bool prefill, int64_t num_tokens,
                              DType dtype) {
  std::vector<RankKv> ranks;
  for (int p = 0; p < pp; ++p) {
    for (int t = 0; t < tp; ++t) {
      ranks.push_back(MakeRank(EvenSplit(kLayers, pp, p), EvenSplit(kHeads, tp, t),
                               seed + 31 * static_cast<int>(ranks.size()),
                               prefill ? kPrefillFill : kUntouched, dtype));
      if (prefill) WritePrompt(ranks.back(), num_tokens);
    }
  }
  return ranks;
}

struct DecodeSide {
  std::vector<std::unique_ptr<TcpKvReceiver>> receivers;
  std::vector<KvPeer> peers;
};

DecodeSide StartDecode(const std::vector<RankKv>& ranks, uint64_t transfer_id, int64_t num_tokens) {
  DecodeSide side;
  for (const RankKv& rank : ranks) {
    side.receivers.push_back(std::move(TcpKvReceiver::Create("127.0.0.1", 0, Options())).value());
    EXPECT_TRUE(side.receivers.back()->Expect(transfer_id, DestinationOf(rank, num_tokens)).ok());
    side.peers.push_back({side.receivers.back()->address(), rank.layers, rank.heads});
  }
  return side;
}

// (prefill tp, prefill pp, decode tp, decode pp, num_tokens)
using Layout = std::tuple<int, int, int, int, int64_t>;
// A layout and the dtype of both sides' caches.
class ReslicingTest : public ::testing::TestWithParam<std::tuple<Layout, DType>> {};

// Every prefill rank sends from its own thread, layer by layer, into the same reservations.
TEST_P(ReslicingTest, EveryDestinationRowEqualsTheSource) {
  const auto [prefill_tp, prefill_pp, decode_tp, decode_pp, num_tokens] = std::get<0>(GetParam());
  const DType dtype = std::get<1>(GetParam());
  const std::vector<RankKv> prefill = MakeGroup(prefill_tp, prefill_pp, 1, true, num_tokens, dtype);
  const std::vector<RankKv> decode = MakeGroup(decode_tp, decode_pp, 2, false, num_tokens, dtype);
  const uint64_t id = NewTransferId();
  DecodeSide side = StartDecode(decode, id, num_tokens);

  std::vector<absl::Status> sent(prefill.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < prefill.size(); ++r) {
    threads.emplace_back([&, r] {
      TcpKvSender sender(Options());
      for (int64_t layer = prefill[r].layers.begin; layer < prefill[r].layers.end; ++layer) {
        sent[r] = sender.SendLayer(id, side.peers, layer, SourceOf(prefill[r], layer, num_tokens));
        if (!sent[r].ok()) break;
      }
      const absl::Status finished = sender.Finish(id, side.peers, sent[r]);
      if (sent[r].ok()) sent[r] = finished;
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : sent) EXPECT_TRUE(s.ok()) << s;
  for (size_t r = 0; r < decode.size(); ++r) {
    const absl::Status s = side.receivers[r]->Wait(id, kWaitTimeout);
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_EQ(side.receivers[r]->num_pending(), 0);
    ExpectCache(decode[r], num_tokens, decode[r].layers);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, ReslicingTest,
    ::testing::Combine(::testing::Values(Layout{1, 1, 2, 1, 37},  // 3 heads -> 2 + 1
                                         Layout{2, 1, 1, 1, 37},  // 2 + 1 -> 3
                                         Layout{1, 2, 2, 1, 37},  // prefill PP=2
                                         Layout{2, 1, 1, 2, 37},  // decode PP=2
                                         Layout{3, 1, 2, 2, 37},  // 1 + 1 + 1 -> 2 + 1, PP=2
                                         Layout{1, 1, 1, 1, 1}, Layout{2, 2, 3, 1, kMaxTokens}),
                       ::testing::ValuesIn(kDTypes)));

// The tests that run once per cache dtype.
class TcpKvTransportTest : public ::testing::TestWithParam<DType> {};
INSTANTIATE_TEST_SUITE_P(DTypes, TcpKvTransportTest, ::testing::ValuesIn(kDTypes), DTypeParamName);

// Wait completes with the last row, not before: layers go one at a time and the last in two
// token chunks, as a chunked prefill would send them.
TEST_P(TcpKvTransportTest, WaitEndsOnlyAfterTheLastSlice) {
  constexpr int64_t kTokens = 37;
  const std::vector<RankKv> prefill = MakeGroup(1, 1, 3, true, kTokens, GetParam());
  const std::vector<RankKv> decode = MakeGroup(1, 1, 4, false, kTokens, GetParam());
  const RankKv& src = prefill[0];
  const RankKv& dst = decode[0];
  const uint64_t id = NewTransferId();
  DecodeSide side = StartDecode(decode, id, kTokens);

  std::atomic<bool> done{false};
  absl::Status waited;
  std::thread waiter([&] {
    waited = side.receivers[0]->Wait(id, kWaitTimeout);
    done = true;
  });
  TcpKvSender sender(Options());
  for (int64_t layer = 0; layer < kLayers; ++layer) {
    KvSource source = SourceOf(src, layer, kTokens);
    if (layer == kLayers - 1) {
      source.tokens = {0, 20};
      ASSERT_TRUE(sender.SendLayer(id, side.peers, layer, source).ok());
      absl::SleepFor(absl::Milliseconds(100));
      EXPECT_FALSE(done) << "Wait returned before the last chunk";
      source.tokens = {20, kTokens};
    }
    ASSERT_TRUE(sender.SendLayer(id, side.peers, layer, source).ok());
    if (layer < kLayers - 1) {
      absl::SleepFor(absl::Milliseconds(100));
      EXPECT_FALSE(done) << "Wait returned after layer " << layer;
    }
  }
  const absl::Time start = absl::Now();
  waiter.join();
  EXPECT_LT(absl::Now() - start, kSlack);
  EXPECT_TRUE(waited.ok()) << waited;
  EXPECT_TRUE(sender.Finish(id, side.peers, absl::OkStatus()).ok());
  EXPECT_EQ(side.receivers[0]->num_pending(), 0);
  ExpectCache(dst, kTokens, dst.layers);
}

// Frames of several MiB whose rows are cut out of the destination's token rows (received through
// a bounded buffer in chunks) and out of the source's (copied into one buffer before sending).
TEST_P(TcpKvTransportTest, LargeReslicedFrames) {
  constexpr int64_t kTokens = 8000, kBlock = 16, kBlocks = 512, kDim = 64;
  // A cache of pseudo-random bits (16-bit words from `seed`'s sequence): the transport moves
  // bytes, and no misplaced row matches such a pattern by chance.
  const auto make = [](int64_t heads, uint32_t seed) {
    std::unique_ptr<KvCache> cache =
        std::move(KvCache::Create({1, kBlocks, kBlock, heads, kDim, GetParam()})).value();
    const KvLayerView& v = cache->layers()[0];
    uint32_t state = seed * 2654435761u + 1;
    for (int64_t i = 0; i < kBlocks * kBlock * v.row_bytes() / 2; ++i) {
      state = state * 1664525u + 1013904223u;
      static_cast<uint16_t*>(v.k)[i] = static_cast<uint16_t>(state >> 16);
      static_cast<uint16_t*>(v.v)[i] = static_cast<uint16_t>(state);
    }
    return cache;
  };
  std::vector<int32_t> src_blocks(kBlocks), dst_blocks(kBlocks);
  std::iota(src_blocks.begin(), src_blocks.end(), 0);
  std::iota(dst_blocks.begin(), dst_blocks.end(), 0);
  std::shuffle(dst_blocks.begin(), dst_blocks.end(), std::mt19937(9));
  // Prefill TP=2 (heads [0,2) and [2,3)) into decode TP=1, and prefill TP=1 into decode TP=2.
  for (const bool to_one : {true, false}) {
    const std::vector<IndexRange> src_heads =
        to_one ? std::vector<IndexRange>{{0, 2}, {2, 3}} : std::vector<IndexRange>{{0, 3}};
    const std::vector<IndexRange> dst_heads =
        to_one ? std::vector<IndexRange>{{0, 3}} : std::vector<IndexRange>{{0, 2}, {2, 3}};
    std::vector<std::unique_ptr<KvCache>> srcs, dsts;
    for (const IndexRange& h : src_heads) srcs.push_back(make(h.size(), 1 + h.begin));
    std::vector<std::unique_ptr<TcpKvReceiver>> receivers;
    std::vector<KvPeer> peers;
    const uint64_t id = NewTransferId();
    for (const IndexRange& h : dst_heads) {
      dsts.push_back(make(h.size(), 100));
      receivers.push_back(std::move(TcpKvReceiver::Create("127.0.0.1", 0, Options())).value());
      KvDestination d{dst_blocks, kTokens, {0, 1}, h, {dsts.back()->layers()[0]}};
      ASSERT_TRUE(receivers.back()->Expect(id, d).ok());
      peers.push_back({receivers.back()->address(), {0, 1}, h});
    }
    for (size_t r = 0; r < srcs.size(); ++r) {
      TcpKvSender sender(Options());
      KvSource source{srcs[r]->layers()[0], src_blocks, kTokens, src_heads[r], {}};
      ASSERT_TRUE(sender.SendLayer(id, peers, 0, source).ok());
      ASSERT_TRUE(sender.Finish(id, peers, absl::OkStatus()).ok());
    }
    for (auto& receiver : receivers) ASSERT_TRUE(receiver->Wait(id, kWaitTimeout).ok());
    int64_t mismatches = 0;
    for (size_t r = 0; r < dsts.size(); ++r) {
      for (size_t q = 0; q < srcs.size(); ++q) {
        const int64_t h0 = std::max(src_heads[q].begin, dst_heads[r].begin);
        const int64_t h1 = std::min(src_heads[q].end, dst_heads[r].end);
        if (h0 >= h1) continue;
        const KvLayerView& s = srcs[q]->layers()[0];
        const KvLayerView& d = dsts[r]->layers()[0];
        const int64_t head_bytes = kDim * s.elem_bytes();
        for (int64_t t = 0; t < kTokens; ++t) {
          const int64_t s_off = (src_blocks[t / kBlock] * kBlock + t % kBlock) * s.row_bytes() +
                                (h0 - src_heads[q].begin) * head_bytes;
          const int64_t d_off = (dst_blocks[t / kBlock] * kBlock + t % kBlock) * d.row_bytes() +
                                (h0 - dst_heads[r].begin) * head_bytes;
          const size_t bytes = (h1 - h0) * head_bytes;
          mismatches += std::memcmp(static_cast<const char*>(s.k) + s_off,
                                    static_cast<const char*>(d.k) + d_off, bytes) != 0;
          mismatches += std::memcmp(static_cast<const char*>(s.v) + s_off,
                                    static_cast<const char*>(d.v) + d_off, bytes) != 0;
        }
      }
    }
    EXPECT_EQ(mismatches, 0) << (to_one ? "TP=2 -> TP=1" : "TP=1 -> TP=2");
  }
}

// Fixture for the failure cases: one prefill rank and one decode rank, both TP=1, PP=1, with
// caches of the parameter's dtype.
class TransportFailureTest : public ::testing::TestWithParam<DType> {
 protected:
  static constexpr int64_t kTokens = 21;

  void SetUp() override {
    src_ = std::move(MakeGroup(1, 1, 5, true, kTokens, GetParam())[0]);
    dst_ = std::move(MakeGroup(1, 1, 6, false, kTokens, GetParam())[0]);
    receiver_ = std::move(TcpKvReceiver::Create("127.0.0.1", 0, Options())).value();
    peers_ = {{receiver_->address(), dst_.layers, dst_.heads}};
  }

  absl::Status Expect(uint64_t id) { return receiver_->Expect(id, DestinationOf(dst_, kTokens)); }

  RankKv src_;
  RankKv dst_;
  std::unique_ptr<TcpKvReceiver> receiver_;
  std::vector<KvPeer> peers_;
};

TEST_P(TransportFailureTest, SenderThatDisconnectsMidTransferFailsWaitQuickly) {
  const uint64_t id = NewTransferId();
  ASSERT_TRUE(Expect(id).ok());
  auto sender = std::make_unique<TcpKvSender>(Options());
  ASSERT_TRUE(sender->SendLayer(id, peers_, 0, SourceOf(src_, 0, kTokens)).ok());
  sender.reset();  // closes the connection with layers 1..3 unsent
  const absl::Time start = absl::Now();
  const absl::Status s = receiver_->Wait(id, absl::Seconds(30));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_LT(absl::Now() - start, kSlack);
  EXPECT_EQ(receiver_->num_pending(), 0);
}

TEST_P(TransportFailureTest, SenderThatNeverSendsGivesDeadlineExceeded) {
  const uint64_t id = NewTransferId();
  ASSERT_TRUE(Expect(id).ok());
  const absl::Time start = absl::Now();
  const absl::Status s = receiver_->Wait(id, absl::Milliseconds(300));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(300) + kSlack);
  EXPECT_EQ(receiver_->num_pending(), 0);
  EXPECT_EQ(receiver_->Wait(id, absl::Seconds(1)).code(), absl::StatusCode::kNotFound);
}

TEST_P(TransportFailureTest, FinishWithAnErrorFailsWait) {
  const uint64_t id = NewTransferId();
  ASSERT_TRUE(Expect(id).ok());
  TcpKvSender sender(Options());
  ASSERT_TRUE(sender.SendLayer(id, peers_, 0, SourceOf(src_, 0, kTokens)).ok());
  EXPECT_TRUE(sender.Finish(id, peers_, absl::AbortedError("prefill ran out of blocks")).ok());
  const absl::Status s = receiver_->Wait(id, kWaitTimeout);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_NE(s.message().find("prefill ran out of blocks"), absl::string_view::npos) << s;
  EXPECT_EQ(receiver_->num_pending(), 0);
}

// Two prefill stages: stage 0's layers land (its Finish is acknowledged), then the reservation
// is cancelled, and stage 1's layers arrive late: discarded, reported to stage 1 by Finish.
TEST_P(TransportFailureTest, LateDataAfterCancelIsDiscarded) {
  const uint64_t id = NewTransferId();
  ASSERT_TRUE(Expect(id).ok());
  TcpKvSender stage0(Options());
  TcpKvSender stage1(Options());
  for (int64_t layer = 0; layer < 2; ++layer) {
    ASSERT_TRUE(stage0.SendLayer(id, peers_, layer, SourceOf(src_, layer, kTokens)).ok());
  }
  ASSERT_TRUE(stage0.Finish(id, peers_, absl::OkStatus()).ok());
  receiver_->Cancel(id);
  EXPECT_EQ(receiver_->num_pending(), 0);
  for (int64_t layer = 2; layer < kLayers; ++layer) {
    EXPECT_TRUE(stage1.SendLayer(id, peers_, layer, SourceOf(src_, layer, kTokens)).ok());
  }
  EXPECT_EQ(stage1.Finish(id, peers_, absl::OkStatus()).code(), absl::StatusCode::kNotFound);
  ExpectCache(dst_, kTokens, IndexRange{0, 2});
  EXPECT_EQ(receiver_->num_pending(), 0);
  receiver_->Cancel(id);  // unknown now: a no-op
}

// A well-formed frame that does not fit the reservation fails the transfer without writing, and
// the connection keeps serving.
TEST_P(TransportFailureTest, FrameOutsideTheReservationFailsTheTransfer) {
  const uint64_t id = NewTransferId();
  ASSERT_TRUE(Expect(id).ok());
  std::vector<KvPeer> lying = peers_;
  lying[0].kv_heads = {0, kHeads + 1};  // claims a head the destination does not hold
  RankKv wide = MakeRank({0, kLayers}, {0, kHeads + 1}, 7, 1, GetParam());
  TcpKvSender sender(Options());
  KvSource source = SourceOf(wide, 0, kTokens);
  ASSERT_TRUE(sender.SendLayer(id, lying, 0, source).ok());
  EXPECT_EQ(sender.Finish(id, lying, absl::OkStatus()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(receiver_->Wait(id, kWaitTimeout).code(), absl::StatusCode::kInvalidArgument);
  ExpectUntouched(dst_);

  const uint64_t next = NewTransferId();  // same connection, a good transfer
  ASSERT_TRUE(Expect(next).ok());
  for (int64_t layer = 0; layer < kLayers; ++layer) {
    ASSERT_TRUE(sender.SendLayer(next, peers_, layer, SourceOf(src_, layer, kTokens)).ok());
  }
  EXPECT_TRUE(sender.Finish(next, peers_, absl::OkStatus()).ok());
  EXPECT_TRUE(receiver_->Wait(next, kWaitTimeout).ok());
  ExpectCache(dst_, kTokens, dst_.layers);
  EXPECT_EQ(receiver_->num_pending(), 0);
}

int ConnectRaw(const std::string& address) {
  const size_t colon = address.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(std::stoi(address.substr(colon + 1)));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{10, 0};  // bounds the test's reads
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// Garbage closes that connection only; a transfer over another connection is unaffected.
TEST_P(TransportFailureTest, GarbageClosesOnlyItsConnection) {
  const uint64_t id = NewTransferId();
  ASSERT_TRUE(Expect(id).ok());
  TcpKvSender sender(Options());
  ASSERT_TRUE(sender.SendLayer(id, peers_, 0, SourceOf(src_, 0, kTokens)).ok());

  KvFrameHeader oversized;  // good magic, but a payload that its ranges do not give
  oversized.type = static_cast<uint16_t>(KvFrameType::kData);
  oversized.transfer_id = id;
  oversized.head_end = 1;
  oversized.token_end = 1;
  oversized.head_dim = kHeadDim;
  oversized.payload_bytes = uint64_t{1} << 40;
  KvFrameHeader unknown_dtype = oversized;  // a payload size that fits 4-byte elements
  unknown_dtype.dtype = 7;
  unknown_dtype.payload_bytes = kHeadDim * 4;
  std::string http(sizeof(KvFrameHeader), ' ');
  std::memcpy(http.data(), "GET / HTTP/1.1\r\n", 16);
  for (const std::string& garbage :
       {http, std::string(reinterpret_cast<const char*>(&oversized), sizeof(oversized)),
        std::string(reinterpret_cast<const char*>(&unknown_dtype), sizeof(unknown_dtype))}) {
    const int fd = ConnectRaw(receiver_->address());
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, garbage.data(), garbage.size()), static_cast<ssize_t>(garbage.size()));
    char byte;
    const absl::Time start = absl::Now();
    const ssize_t n = read(fd, &byte, 1);  // the receiver's close: FIN, or RST if data was left
    EXPECT_TRUE(n == 0 || (n < 0 && errno == ECONNRESET)) << n << " " << std::strerror(errno);
    EXPECT_LT(absl::Now() - start, kSlack);
    close(fd);
  }
  for (int64_t layer = 1; layer < kLayers; ++layer) {
    ASSERT_TRUE(sender.SendLayer(id, peers_, layer, SourceOf(src_, layer, kTokens)).ok());
  }
  EXPECT_TRUE(sender.Finish(id, peers_, absl::OkStatus()).ok());
  EXPECT_TRUE(receiver_->Wait(id, kWaitTimeout).ok());
  ExpectCache(dst_, kTokens, dst_.layers);
  EXPECT_EQ(receiver_->num_pending(), 0);
}

TEST_P(TransportFailureTest, UnreachableReceiverIsUnavailableNamingIt) {
  TcpKvSender sender(Options(absl::Seconds(1)));
  std::string address;
  {
    // A port that was free a moment ago and has no listener now.
    auto gone = std::move(TcpKvReceiver::Create("127.0.0.1", 0, Options())).value();
    address = gone->address();
  }
  const std::vector<KvPeer> peers = {{address, dst_.layers, dst_.heads}};
  const absl::Time start = absl::Now();
  const absl::Status s = sender.SendLayer(NewTransferId(), peers, 0, SourceOf(src_, 0, kTokens));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find(address), absl::string_view::npos) << s;
  EXPECT_LT(absl::Now() - start, kSlack);
  EXPECT_EQ(sender.num_connections(), 0);
}

// A peer that accepts but never reads: the send fails once no byte moves for io_timeout, and
// Finish's wait for an ack is bounded the same way.
TEST_P(TransportFailureTest, HungReceiverGivesUnavailableWithinTheTimeout) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  const int small = 4096;
  setsockopt(listener, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  const std::string address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));

  // 64 MiB (F32) or 32 MiB (F16) of K per layer, as much of V: far more than the socket buffers
  // hold.
  KvCacheShape shape{1, 1024, 16, 16, 64, GetParam()};
  std::unique_ptr<KvCache> big = std::move(KvCache::Create(shape)).value();
  std::vector<int32_t> blocks(1024);
  std::iota(blocks.begin(), blocks.end(), 0);
  KvSource source;
  source.view = big->layers()[0];
  source.block_ids = blocks;
  source.num_tokens = 1024 * 16;
  source.kv_heads = {0, 16};
  const std::vector<KvPeer> peers = {{address, {0, 1}, {0, 16}}};

  TcpKvSender sender(Options(absl::Milliseconds(500)));
  absl::Time start = absl::Now();
  absl::Status s = sender.SendLayer(NewTransferId(), peers, 0, source);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500) + kSlack);

  start = absl::Now();
  s = sender.Finish(NewTransferId(), peers, absl::OkStatus());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500) + kSlack);
  close(listener);
}

TEST_P(TransportFailureTest, ExpectRejectsBadReservations) {
  const uint64_t id = NewTransferId();
  KvDestination bad = DestinationOf(dst_, kTokens);
  bad.block_ids[2] = kNumBlocks;
  EXPECT_EQ(receiver_->Expect(id, bad).code(), absl::StatusCode::kInvalidArgument);
  bad = DestinationOf(dst_, kTokens);
  bad.block_ids.resize(2);  // 21 tokens need 6 blocks of 4
  EXPECT_EQ(receiver_->Expect(id, bad).code(), absl::StatusCode::kInvalidArgument);
  bad = DestinationOf(dst_, kTokens);
  bad.kv_heads = {0, 2};  // the views hold 3 heads
  EXPECT_EQ(receiver_->Expect(id, bad).code(), absl::StatusCode::kInvalidArgument);
  bad = DestinationOf(dst_, kTokens);
  bad.layer_views[1].dtype = GetParam() == DType::kF16 ? DType::kF32 : DType::kF16;
  EXPECT_EQ(receiver_->Expect(id, bad).code(), absl::StatusCode::kInvalidArgument);
  bad = DestinationOf(dst_, kTokens);
  for (KvLayerView& v : bad.layer_views) v.dtype = DType::kBF16;
  EXPECT_EQ(receiver_->Expect(id, bad).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(Expect(id).ok());
  EXPECT_EQ(Expect(id).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(receiver_->num_pending(), 1);
  receiver_->Cancel(id);
  EXPECT_EQ(receiver_->num_pending(), 0);
}

// Destroying a receiver with a pending reservation and an open connection neither hangs nor
// crashes; the sender then gets an error, not a hang.
TEST_P(TransportFailureTest, ReceiverShutdownWithPendingTransfer) {
  const uint64_t id = NewTransferId();
  ASSERT_TRUE(Expect(id).ok());
  TcpKvSender sender(Options(absl::Seconds(1)));
  ASSERT_TRUE(sender.SendLayer(id, peers_, 0, SourceOf(src_, 0, kTokens)).ok());
  const absl::Time start = absl::Now();
  receiver_.reset();
  EXPECT_LT(absl::Now() - start, kSlack);
  EXPECT_FALSE(sender.Finish(id, peers_, absl::OkStatus()).ok());
}

INSTANTIATE_TEST_SUITE_P(DTypes, TransportFailureTest, ::testing::ValuesIn(kDTypes),
                         DTypeParamName);

// A prefill rank whose cache has another dtype than the decode rank's: every frame is refused
// (the bytes would be misread, not just misplaced), nothing is written, both ends get
// INVALID_ARGUMENT naming the dtypes and the flag, and the connection keeps serving: a later
// transfer between caches of one dtype over it succeeds.
TEST_P(TcpKvTransportTest, DTypeMismatchFailsTheTransferWithoutWriting) {
  constexpr int64_t kTokens = 21;
  const DType src_dtype = GetParam();
  const DType dst_dtype = src_dtype == DType::kF16 ? DType::kF32 : DType::kF16;
  const RankKv src = std::move(MakeGroup(1, 1, 5, true, kTokens, src_dtype)[0]);
  const RankKv other = std::move(MakeGroup(1, 1, 6, false, kTokens, dst_dtype)[0]);
  const RankKv same = std::move(MakeGroup(1, 1, 7, false, kTokens, src_dtype)[0]);
  auto receiver = std::move(TcpKvReceiver::Create("127.0.0.1", 0, Options())).value();
  const std::vector<KvPeer> peers = {{receiver->address(), src.layers, src.heads}};
  TcpKvSender sender(Options());

  const uint64_t id = NewTransferId();
  ASSERT_TRUE(receiver->Expect(id, DestinationOf(other, kTokens)).ok());
  for (int64_t layer = 0; layer < kLayers; ++layer) {
    ASSERT_TRUE(sender.SendLayer(id, peers, layer, SourceOf(src, layer, kTokens)).ok());
  }
  const absl::Status finished = sender.Finish(id, peers, absl::OkStatus());
  EXPECT_EQ(finished.code(), absl::StatusCode::kInvalidArgument) << finished;
  const std::string rows = absl::StrCat("holds ", DTypeName(src_dtype), " rows");
  const std::string cache = absl::StrCat("KV cache is ", DTypeName(dst_dtype));
  for (const absl::string_view part :
       {absl::string_view(rows), absl::string_view(cache), absl::string_view("--kv_cache_dtype")}) {
    EXPECT_NE(finished.message().find(part), absl::string_view::npos) << finished;
  }
  const absl::Status waited = receiver->Wait(id, kWaitTimeout);
  EXPECT_EQ(waited.code(), absl::StatusCode::kInvalidArgument) << waited;
  EXPECT_NE(waited.message().find("--kv_cache_dtype"), absl::string_view::npos) << waited;
  EXPECT_EQ(receiver->num_pending(), 0);
  ExpectUntouched(other);

  const uint64_t next = NewTransferId();
  ASSERT_TRUE(receiver->Expect(next, DestinationOf(same, kTokens)).ok());
  for (int64_t layer = 0; layer < kLayers; ++layer) {
    ASSERT_TRUE(sender.SendLayer(next, peers, layer, SourceOf(src, layer, kTokens)).ok());
  }
  EXPECT_TRUE(sender.Finish(next, peers, absl::OkStatus()).ok());
  EXPECT_TRUE(receiver->Wait(next, kWaitTimeout).ok());
  ExpectCache(same, kTokens, same.layers);
}

}  // namespace
}  // namespace shardserve
