// Throughput of the TCP KV transport against a raw TCP socket, on loopback, in one process.
//
//   bazel build -c opt //worker/comm:kv_transport_bench
//   bazel-bin/worker/comm/kv_transport_bench --tokens=2048 --iters=10 [--kv_cache_dtype=f32]
//
// Moves the KV of a --tokens prompt of SmolLM2-135M's shape (30 layers, 3 KV heads of 64 dims,
// K and V in --kv_cache_dtype, F16 by default as the engine caches them) layer by layer from a
// prefill rank's paged cache into a decode rank's paged cache (TP=1 on both sides by default;
// --prefill_tp and --decode_tp split the heads and re-slice them in flight), timed from the first
// SendLayer until Wait returns on every decode rank. Then moves the same bytes over a plain TCP
// connection, one writer and one reader thread, one contiguous write per layer. Runs alternate so
// both see the same machine load; the medians are compared.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "model/shard_spec.h"
#include "worker/comm/tcp_kv_transport.h"
#include "worker/kv_cache.h"

ABSL_FLAG(int64_t, tokens, 2048, "prompt tokens");
ABSL_FLAG(int64_t, layers, 30, "layers");
ABSL_FLAG(int64_t, kv_heads, 3, "KV heads");
ABSL_FLAG(int64_t, head_dim, 64, "dims per head");
ABSL_FLAG(int64_t, block_size, 16, "tokens per KV block");
ABSL_FLAG(int, prefill_tp, 1, "prefill ranks splitting the KV heads (one sender thread each)");
ABSL_FLAG(int, decode_tp, 1, "decode ranks splitting the KV heads (one receiver each)");
ABSL_FLAG(int, iters, 10, "timed transfers of each kind");
ABSL_FLAG(std::string, kv_cache_dtype, "f16",
          "element type of both ranks' KV caches: f16 (the engine's default) or f32");

namespace shardserve {
namespace {

// Set by Run from --kv_cache_dtype.
DType kv_dtype = DType::kF16;

struct Rank {
  IndexRange heads;
  std::unique_ptr<KvCache> cache;
  std::vector<int32_t> block_ids;  // in token order, shuffled so blocks are scattered
};

absl::StatusOr<Rank> MakeRank(IndexRange heads, int seed) {
  const int64_t blocks = (absl::GetFlag(FLAGS_tokens) + absl::GetFlag(FLAGS_block_size) - 1) /
                         absl::GetFlag(FLAGS_block_size);
  Rank rank{heads, nullptr, std::vector<int32_t>(blocks)};
  ASSIGN_OR_RETURN(rank.cache, KvCache::Create({absl::GetFlag(FLAGS_layers), blocks,
                                                absl::GetFlag(FLAGS_block_size), heads.size(),
                                                absl::GetFlag(FLAGS_head_dim), kv_dtype}));
  std::iota(rank.block_ids.begin(), rank.block_ids.end(), 0);
  std::shuffle(rank.block_ids.begin(), rank.block_ids.end(), std::mt19937(seed));
  // Touch every page so that neither side times page faults. The transport moves bytes, so the
  // fill is a pseudo-random bit pattern, which no misplaced row matches by chance.
  uint32_t state = static_cast<uint32_t>(seed) * 2654435761u + 1;
  for (const KvLayerView& v : rank.cache->layers()) {
    const int64_t n = v.num_blocks * v.block_size * v.row_bytes() / 2;
    uint16_t* k = static_cast<uint16_t*>(v.k);
    uint16_t* val = static_cast<uint16_t*>(v.v);
    for (int64_t i = 0; i < n; ++i) {
      state = state * 1664525u + 1013904223u;
      k[i] = static_cast<uint16_t>(state >> 16);
      val[i] = static_cast<uint16_t>(state);
    }
  }
  return rank;
}

// Every row of `dst` equals the row of the same (layer, token, head) in the prefill rank that
// holds the head.
bool SameKv(const std::vector<Rank>& srcs, const Rank& dst) {
  const int64_t tokens = absl::GetFlag(FLAGS_tokens);
  const int64_t bs = absl::GetFlag(FLAGS_block_size);
  const int64_t hd = absl::GetFlag(FLAGS_head_dim);
  for (int64_t l = 0; l < absl::GetFlag(FLAGS_layers); ++l) {
    const KvLayerView& d = dst.cache->layers()[l];
    for (const Rank& src : srcs) {
      const KvLayerView& s = src.cache->layers()[l];
      const int64_t h0 = std::max(src.heads.begin, dst.heads.begin);
      const int64_t h1 = std::min(src.heads.end, dst.heads.end);
      if (h0 >= h1) continue;
      const int64_t head_bytes = hd * s.elem_bytes();
      const size_t bytes = (h1 - h0) * head_bytes;
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t s_slot = int64_t{src.block_ids[t / bs]} * bs + t % bs;
        const int64_t d_slot = int64_t{dst.block_ids[t / bs]} * bs + t % bs;
        const int64_t s_off = s_slot * s.row_bytes() + (h0 - src.heads.begin) * head_bytes;
        const int64_t d_off = d_slot * d.row_bytes() + (h0 - dst.heads.begin) * head_bytes;
        if (std::memcmp(static_cast<const char*>(s.k) + s_off,
                        static_cast<const char*>(d.k) + d_off, bytes) != 0 ||
            std::memcmp(static_cast<const char*>(s.v) + s_off,
                        static_cast<const char*>(d.v) + d_off, bytes) != 0) {
          return false;
        }
      }
    }
  }
  return true;
}

// --prefill_tp prefill ranks' caches and senders, --decode_tp decode ranks' caches and
// receivers, and the connections between them, set up once and reused by every timed transfer.
class TransportBench {
 public:
  absl::Status Setup() {
    const int64_t kv_heads = absl::GetFlag(FLAGS_kv_heads);
    const int prefill_tp = absl::GetFlag(FLAGS_prefill_tp);
    const int decode_tp = absl::GetFlag(FLAGS_decode_tp);
    for (int r = 0; r < decode_tp; ++r) {
      ASSIGN_OR_RETURN(Rank rank, MakeRank(EvenSplit(kv_heads, decode_tp, r), 100 + r));
      dst_.push_back(std::move(rank));
      ASSIGN_OR_RETURN(std::unique_ptr<TcpKvReceiver> receiver,
                       TcpKvReceiver::Create("127.0.0.1", 0, TcpKvOptions{}));
      peers_.push_back({receiver->address(), {0, absl::GetFlag(FLAGS_layers)}, dst_.back().heads});
      receivers_.push_back(std::move(receiver));
    }
    for (int r = 0; r < prefill_tp; ++r) {
      ASSIGN_OR_RETURN(Rank rank, MakeRank(EvenSplit(kv_heads, prefill_tp, r), 1 + r));
      src_.push_back(std::move(rank));
      senders_.push_back(std::make_unique<TcpKvSender>(TcpKvOptions{}));
      for (const KvPeer& peer : peers_) RETURN_IF_ERROR(senders_.back()->Connect(peer.address));
    }
    return absl::OkStatus();
  }

  // Seconds from the first SendLayer until every decode rank's Wait returns. Each prefill rank
  // sends from its own thread, as each would from its own process.
  absl::StatusOr<double> RunOnce() {
    const uint64_t id = ++last_id_;
    const int64_t layers = absl::GetFlag(FLAGS_layers);
    const int64_t tokens = absl::GetFlag(FLAGS_tokens);
    for (size_t r = 0; r < receivers_.size(); ++r) {
      KvDestination d;
      d.block_ids = dst_[r].block_ids;
      d.num_tokens = tokens;
      d.layers = {0, layers};
      d.kv_heads = dst_[r].heads;
      d.layer_views.assign(dst_[r].cache->layers().begin(), dst_[r].cache->layers().end());
      RETURN_IF_ERROR(receivers_[r]->Expect(id, d));
    }
    std::vector<absl::Status> sent(src_.size());
    const auto send = [&](size_t r) {
      for (int64_t l = 0; l < layers && sent[r].ok(); ++l) {
        KvSource s;
        s.view = src_[r].cache->layers()[l];
        s.block_ids = src_[r].block_ids;
        s.num_tokens = tokens;
        s.kv_heads = src_[r].heads;
        sent[r] = senders_[r]->SendLayer(id, peers_, l, s);
      }
    };
    const absl::Time start = absl::Now();
    std::vector<std::thread> threads;
    for (size_t r = 1; r < src_.size(); ++r) threads.emplace_back(send, r);
    send(0);
    for (std::thread& t : threads) t.join();
    for (const absl::Status& s : sent) RETURN_IF_ERROR(s);
    for (auto& receiver : receivers_) RETURN_IF_ERROR(receiver->Wait(id, absl::Seconds(60)));
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    for (auto& sender : senders_) RETURN_IF_ERROR(sender->Finish(id, peers_, absl::OkStatus()));
    return seconds;
  }

  absl::Status Check() const {
    for (const Rank& d : dst_) {
      if (!SameKv(src_, d)) return absl::InternalError("transport: destination differs");
    }
    return absl::OkStatus();
  }

 private:
  std::vector<Rank> src_;
  std::vector<Rank> dst_;
  std::vector<std::unique_ptr<TcpKvReceiver>> receivers_;
  std::vector<KvPeer> peers_;
  std::vector<std::unique_ptr<TcpKvSender>> senders_;
  uint64_t last_id_ = 0;
};

void WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// One TCP connection over loopback: a writer (the calling thread) and a reader thread, the same
// bytes in the same per-layer chunks, contiguous on both ends.
class RawSocketBench {
 public:
  explicit RawSocketBench(int64_t bytes) : src_(bytes, 1), dst_(bytes, 2) {}
  ~RawSocketBench() {
    for (int fd : {writer_, reader_, listener_}) {
      if (fd >= 0) close(fd);
    }
  }

  absl::Status Setup() {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listener_, 1) != 0 ||
        getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return absl::InternalError("raw socket: cannot listen");
    }
    writer_ = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(writer_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      return absl::InternalError("raw socket: cannot connect");
    }
    reader_ = accept(listener_, nullptr, nullptr);
    const int one = 1;
    setsockopt(writer_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(reader_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return reader_ >= 0 ? absl::OkStatus() : absl::InternalError("raw socket: cannot accept");
  }

  // Seconds from the first write until the reader has every byte.
  double RunOnce() {
    const int64_t layers = absl::GetFlag(FLAGS_layers);
    const int64_t layer_bytes = static_cast<int64_t>(src_.size()) / layers;
    std::thread read_thread([&] {
      for (int64_t l = 0; l < layers; ++l) {
        int64_t got = 0;
        while (got < layer_bytes) {
          const ssize_t r = read(reader_, dst_.data() + l * layer_bytes + got, layer_bytes - got);
          if (r <= 0) return;
          got += r;
        }
      }
    });
    const absl::Time start = absl::Now();
    for (int64_t l = 0; l < layers; ++l) {
      WriteAll(writer_, src_.data() + l * layer_bytes, layer_bytes);
    }
    read_thread.join();
    return absl::ToDoubleSeconds(absl::Now() - start);
  }

  absl::Status Check() const {
    return src_ == dst_ ? absl::OkStatus() : absl::InternalError("raw socket: destination differs");
  }

 private:
  std::vector<char> src_;
  std::vector<char> dst_;
  int listener_ = -1;
  int writer_ = -1;
  int reader_ = -1;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

absl::Status Run() {
  const int iters = std::max(1, absl::GetFlag(FLAGS_iters));
  ASSIGN_OR_RETURN(kv_dtype, ParseKvCacheDType(absl::GetFlag(FLAGS_kv_cache_dtype)));
  const KvCacheShape shape{absl::GetFlag(FLAGS_layers),   0,       0, absl::GetFlag(FLAGS_kv_heads),
                           absl::GetFlag(FLAGS_head_dim), kv_dtype};
  // The bytes moved per transfer, in the caches' dtype.
  const int64_t bytes = shape.BytesPerToken() * absl::GetFlag(FLAGS_tokens);
  std::printf(
      "KV of %ld tokens: %ld layers x K,V x %ld heads x %ld dims %s = %.1f MB per "
      "transfer; %d iterations each; %u hardware threads\n",
      absl::GetFlag(FLAGS_tokens), absl::GetFlag(FLAGS_layers), absl::GetFlag(FLAGS_kv_heads),
      absl::GetFlag(FLAGS_head_dim), std::string(KvCacheDTypeName(kv_dtype)).c_str(), bytes / 1e6,
      iters, std::thread::hardware_concurrency());
  TransportBench transport_bench;
  RawSocketBench raw_bench(bytes);
  RETURN_IF_ERROR(transport_bench.Setup());
  RETURN_IF_ERROR(raw_bench.Setup());
  // One untimed run of each warms the connections (socket buffers grow) and the caches.
  RETURN_IF_ERROR(transport_bench.RunOnce().status());
  raw_bench.RunOnce();
  std::vector<double> transport;
  std::vector<double> raw;
  for (int i = 0; i < iters; ++i) {
    ASSIGN_OR_RETURN(const double t, transport_bench.RunOnce());
    transport.push_back(bytes / t / 1e9);
    raw.push_back(bytes / raw_bench.RunOnce() / 1e9);
  }
  RETURN_IF_ERROR(transport_bench.Check());
  RETURN_IF_ERROR(raw_bench.Check());
  const double t = Median(transport);
  const double r = Median(raw);
  const std::string label = absl::StrCat(
      "tcp kv transport (prefill_tp=", absl::GetFlag(FLAGS_prefill_tp),
      ", decode_tp=", absl::GetFlag(FLAGS_decode_tp), ", ", KvCacheDTypeName(kv_dtype), "):");
  std::printf("%-48s median %.2f GB/s, best %.2f GB/s\n", label.c_str(), t,
              *std::max_element(transport.begin(), transport.end()));
  std::printf("%-48s median %.2f GB/s, best %.2f GB/s\n", "raw tcp socket (one connection):", r,
              *std::max_element(raw.begin(), raw.end()));
  std::printf("ratio transport / raw (medians): %.2fx\n", t / r);
  return absl::OkStatus();
}

}  // namespace
}  // namespace shardserve

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const absl::Status s = shardserve::Run();
  if (!s.ok()) {
    std::fprintf(stderr, "kv_transport_bench: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
