// Disaggregated serving between two ServingEngines in one process: a prefill group whose rank
// sends KV over the real TCP transport (loopback) and a decode group whose rank receives it,
// joined by a PrefillClient that calls the prefill engine directly (the gRPC hop is tested end to
// end in tests/cluster/disagg_test). Checks: outputs equal the single-process Engine's, also
// when the prompts' prefixes are cached on the prefill side and when prompts span several
// chunks; and every failure path (the prefill group fails, the request is cancelled while its
// prompt is prefilled, a decode rank that cannot be reached) ends the request with a clear
// status and leaves no KV block or reservation behind on either side.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "common/testing/test_env.h"
#include "gtest/gtest.h"
#include "model/weight_source.h"
#include "worker/comm/tcp_kv_transport.h"
#include "worker/engine.h"
#include "worker/serving_engine.h"

namespace shardserve {
namespace {

SamplingParams Greedy(int max_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

EngineOptions Options() {
  EngineOptions o;
  o.num_threads = 1;
  o.block_size = 16;
  o.kv_cache_bytes = int64_t{64} * 16 * 2 * 2 * 16 * 2 * 2;  // 64 blocks of the tiny model (F16)
  return o;
}

ServingOptions Serving() {
  ServingOptions o;
  o.scheduler.max_num_seqs = 16;
  o.scheduler.max_num_batched_tokens = 24;  // prompts span several chunks
  o.ping_interval = absl::Milliseconds(100);
  return o;
}

std::vector<int32_t> Prompt(int index, int length) {
  std::vector<int32_t> p;
  for (int i = 0; i < length; ++i) p.push_back((index * 37 + i * 11 + 5) % 290 + 3);
  return p;
}

struct Outcome {
  std::vector<int32_t> tokens;
  absl::Status status;
};

Outcome Drain(ServingRequest& r, absl::Duration timeout = absl::Seconds(60)) {
  Outcome o;
  TokenEvent e;
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    const ServingRequest::NextResult next = r.Next(&e, absl::Milliseconds(50));
    if (next == ServingRequest::kDone) {
      o.status = r.status();
      return o;
    }
    if (next == ServingRequest::kEvent) o.tokens.push_back(e.token_id);
  }
  o.status = absl::DeadlineExceededError("the request did not finish in time");
  return o;
}

// Calls the prefill group's engine in process, each call on its own thread. `fail_with`, when
// set, answers every call with that error instead; `hold` keeps calls until cancelled.
class DirectPrefillClient : public PrefillClient {
 public:
  explicit DirectPrefillClient(ServingEngine* prefill) : prefill_(prefill) {}
  ~DirectPrefillClient() override {
    for (std::thread& t : threads_) t.join();
  }

  uint64_t Start(const std::string& address, const v1::PrefillRequest& request,
                 Done done) override {
    absl::MutexLock lock(&mu_);
    const uint64_t id = next_id_++;
    cancelled_[id] = false;
    ++calls_;
    threads_.emplace_back([this, id, request, done = std::move(done)] { done(Run(id, request)); });
    return id;
  }

  void Cancel(uint64_t call_id) override {
    absl::MutexLock lock(&mu_);
    cancelled_[call_id] = true;
  }

  absl::Status fail_with;
  bool hold = false;
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::StatusOr<v1::PrefillReply> Run(uint64_t id, const v1::PrefillRequest& request) {
    auto is_cancelled = [&] {
      absl::MutexLock lock(&mu_);
      return cancelled_[id];
    };
    if (hold) {
      while (!is_cancelled()) absl::SleepFor(absl::Milliseconds(5));
      return absl::CancelledError("cancelled by the caller");
    }
    if (!fail_with.ok()) return fail_with;
    const v1::GenerateOnGroupRequest& r = request.request();
    KvTarget target;
    target.transfer_id = request.transfer_id();
    target.peers.assign(request.peers().begin(), request.peers().end());
    SamplingParams params = Greedy(1);
    auto submitted = prefill_->SubmitPrefill(
        std::vector<int32_t>(r.prompt_token_ids().begin(), r.prompt_token_ids().end()), params,
        r.request_id(), std::move(target));
    if (!submitted.ok()) return submitted.status();
    TokenEvent e;
    v1::PrefillReply reply;
    bool got = false;
    while (true) {
      const ServingRequest::NextResult next = (*submitted)->Next(&e, absl::Milliseconds(20));
      if (next == ServingRequest::kDone) break;
      if (is_cancelled()) (*submitted)->Cancel();
      if (next != ServingRequest::kEvent) continue;
      got = true;
      reply.mutable_first_token()->set_token_id(e.token_id);
      reply.mutable_first_token()->set_prompt_tokens(e.prompt_tokens);
      reply.mutable_first_token()->set_cached_tokens(e.cached_tokens);
      reply.set_kv_bytes(e.kv_bytes);
    }
    if (!(*submitted)->status().ok()) return (*submitted)->status();
    if (!got) return absl::InternalError("no token");
    return reply;
  }

  ServingEngine* const prefill_;
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, bool> cancelled_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;
};

// One single-rank prefill group and one single-rank decode group on the tiny Llama.
class DisaggServingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto weights = OpenWeightSource(TestRunfile("tests/fixtures/tiny/llama/model.gguf"));
    ASSERT_TRUE(weights.ok()) << weights.status();
    weights_ = std::move(*weights);
    auto shard = MakeShardSpec(weights_->config(), ParallelLayout{1, 1, 1}, 0, 0);
    ASSERT_TRUE(shard.ok()) << shard.status();
    TcpKvOptions kv;
    kv.io_timeout = absl::Seconds(2);
    auto receiver = TcpKvReceiver::Create("127.0.0.1", 0, kv);
    ASSERT_TRUE(receiver.ok()) << receiver.status();
    receiver_ = std::move(*receiver);
    sender_ = std::make_unique<TcpKvSender>(kv);

    GroupComms prefill_comms;
    prefill_comms.kv_sender = sender_.get();
    auto prefill_group = GroupEngine::Create(weights_.get(), *shard, prefill_comms, Options());
    ASSERT_TRUE(prefill_group.ok()) << prefill_group.status();
    prefill_group_ = std::move(*prefill_group);
    auto prefill = ServingEngine::Create(prefill_group_.get(), Serving());
    ASSERT_TRUE(prefill.ok()) << prefill.status();
    prefill_ = std::move(*prefill);
    client_ = std::make_unique<DirectPrefillClient>(prefill_.get());

    GroupComms decode_comms;
    decode_comms.kv_receiver = receiver_.get();
    auto decode_group = GroupEngine::Create(weights_.get(), *shard, decode_comms, Options());
    ASSERT_TRUE(decode_group.ok()) << decode_group.status();
    decode_group_ = std::move(*decode_group);
    peer_.set_address(receiver_->address());
    peer_.set_layer_begin(0);
    peer_.set_layer_end(static_cast<int32_t>(weights_->config().num_layers));
    peer_.set_kv_head_begin(0);
    peer_.set_kv_head_end(static_cast<int32_t>(weights_->config().num_kv_heads));
    ServingOptions decode_options = Serving();
    decode_options.prefill_client = client_.get();
    decode_options.kv_peers = {peer_};
    auto decode = ServingEngine::Create(decode_group_.get(), decode_options);
    ASSERT_TRUE(decode.ok()) << decode.status();
    decode_ = std::move(*decode);
  }

  void TearDown() override {
    if (decode_ != nullptr) decode_->Shutdown();
    client_.reset();
    if (prefill_ != nullptr) prefill_->Shutdown();
  }

  absl::StatusOr<std::shared_ptr<ServingRequest>> SubmitRemote(const std::vector<int32_t>& prompt,
                                                               int max_tokens) {
    RemotePrefill remote;
    remote.leader_address = "in-process";
    remote.group_id = 7;
    remote.request.mutable_prompt_token_ids()->Assign(prompt.begin(), prompt.end());
    remote.request.set_max_tokens(max_tokens);
    remote.request.set_ignore_eos(true);
    return decode_->Submit(prompt, Greedy(max_tokens), "r", remote);
  }

  std::vector<int32_t> Reference(const std::vector<int32_t>& prompt, int max_tokens) {
    auto engine = Engine::Create(weights_.get(), Options());
    EXPECT_TRUE(engine.ok()) << engine.status();
    auto r = (*engine)->Generate(prompt, Greedy(max_tokens), [](int32_t) { return true; });
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->token_ids : std::vector<int32_t>{};
  }

  // Both groups idle with every block free and no reservation left on the receiver.
  void ExpectNothingLeft() {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    ServingLoad d, p;
    while (absl::Now() < deadline) {
      d = decode_->Load();
      p = prefill_->Load();
      if (d.running == 0 && d.waiting == 0 && d.free_kv_blocks == d.num_kv_blocks &&
          p.running == 0 && p.waiting == 0 && p.free_kv_blocks == p.num_kv_blocks &&
          receiver_->num_pending() == 0) {
        return;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    ADD_FAILURE() << "decode: running " << d.running << " waiting " << d.waiting << " free "
                  << d.free_kv_blocks << "/" << d.num_kv_blocks << "; prefill: running "
                  << p.running << " waiting " << p.waiting << " free " << p.free_kv_blocks << "/"
                  << p.num_kv_blocks << "; pending reservations " << receiver_->num_pending();
  }

  std::unique_ptr<WeightSource> weights_;
  std::unique_ptr<TcpKvReceiver> receiver_;
  std::unique_ptr<TcpKvSender> sender_;
  std::unique_ptr<GroupEngine> prefill_group_;
  std::unique_ptr<GroupEngine> decode_group_;
  std::unique_ptr<ServingEngine> prefill_;
  std::unique_ptr<DirectPrefillClient> client_;
  std::unique_ptr<ServingEngine> decode_;
  v1::KvPeer peer_;
};

TEST_F(DisaggServingTest, OutputsEqualTheEngineAlone) {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::shared_ptr<ServingRequest>> requests;
  for (int i = 0; i < 8; ++i) {
    // Pairs share a 32-token prefix: the second of a pair finds it in the prefill group's
    // prefix cache, whose KV must be sent too.
    std::vector<int32_t> p = Prompt(i / 2, 32);
    const std::vector<int32_t> tail = Prompt(100 + i, 5 + 9 * i);
    p.insert(p.end(), tail.begin(), tail.end());
    prompts.push_back(p);
    auto r = SubmitRemote(p, 12);
    ASSERT_TRUE(r.ok()) << r.status();
    requests.push_back(*r);
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    const Outcome o = Drain(*requests[i]);
    ASSERT_TRUE(o.status.ok()) << "request " << i << ": " << o.status;
    EXPECT_EQ(o.tokens, Reference(prompts[i], 12)) << "request " << i;
  }
  EXPECT_EQ(client_->calls(), 8);
  EXPECT_GT(prefill_->Load().prefix_cache_hit_tokens, 0);
  ExpectNothingLeft();
}

TEST_F(DisaggServingTest, OneTokenRequestsFinishWithThePrefillToken) {
  const std::vector<int32_t> p = Prompt(3, 40);
  auto r = SubmitRemote(p, 1);
  ASSERT_TRUE(r.ok()) << r.status();
  const Outcome o = Drain(**r);
  ASSERT_TRUE(o.status.ok()) << o.status;
  EXPECT_EQ(o.tokens, Reference(p, 1));
  ExpectNothingLeft();
}

TEST_F(DisaggServingTest, AFailedPrefillGroupEndsTheRequestUnavailable) {
  client_->fail_with = absl::UnavailableError("connection refused");
  auto r = SubmitRemote(Prompt(1, 30), 8);
  ASSERT_TRUE(r.ok()) << r.status();
  const Outcome o = Drain(**r);
  EXPECT_TRUE(o.tokens.empty());
  EXPECT_EQ(o.status.code(), absl::StatusCode::kUnavailable) << o.status;
  EXPECT_TRUE(absl::StartsWith(o.status.message(), "prefill group 7")) << o.status;
  ExpectNothingLeft();
  // The decode group still serves.
  client_->fail_with = absl::OkStatus();
  auto again = SubmitRemote(Prompt(2, 20), 4);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(Drain(**again).status.ok());
}

TEST_F(DisaggServingTest, CancellingWhilePrefillingFreesEverything) {
  client_->hold = true;
  auto r = SubmitRemote(Prompt(4, 50), 8);
  ASSERT_TRUE(r.ok()) << r.status();
  // Wait until the reservation exists on the receiver, then cancel.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (receiver_->num_pending() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(receiver_->num_pending(), 1);
  (*r)->Cancel();
  const Outcome o = Drain(**r);
  EXPECT_EQ(o.status.code(), absl::StatusCode::kCancelled) << o.status;
  ExpectNothingLeft();
}

TEST_F(DisaggServingTest, AnUnreachableDecodeRankFailsTheTransferOnBothSides) {
  // The prefill group sends to a port nobody listens on.
  KvTarget target;
  target.transfer_id = 42;
  v1::KvPeer dead = peer_;
  dead.set_address("127.0.0.1:1");
  target.peers = {dead};
  auto r = prefill_->SubmitPrefill(Prompt(5, 40), Greedy(1), "p", target);
  ASSERT_TRUE(r.ok()) << r.status();
  const Outcome o = Drain(**r);
  EXPECT_TRUE(o.tokens.empty());
  EXPECT_EQ(o.status.code(), absl::StatusCode::kUnavailable) << o.status;
  ExpectNothingLeft();
}

TEST_F(DisaggServingTest, AGroupThatIsNotADecodeGroupRefusesPrefilledRequests) {
  RemotePrefill remote;
  remote.leader_address = "x";
  auto r = prefill_->Submit(Prompt(1, 8), Greedy(2), "r", remote);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace shardserve
