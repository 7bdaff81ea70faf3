// The public API end to end: `shardserve serve` starts a real local cluster (coordinator and
// worker processes) on SmolLM2 (SHARDSERVE_TEST_GGUF), and clients call InferenceService over
// gRPC. Checks: streamed greedy output equals the single-process Engine's, 64 concurrent
// streams all complete with the Engine's outputs, cancelling a stream or letting its deadline
// pass frees its KV blocks (seen in GetClusterStatus), Abort ends a stream with "abort", and bad
// requests get the right status codes; a full queue answers RESOURCE_EXHAUSTED at once.
//
// Every call has a deadline and every child process is ended by ChildProcesses, also when an
// assertion fails.
#include <signal.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/child_processes.h"
#include "common/testing/test_env.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "gtest/gtest.h"
#include "model/model_bundle.h"
#include "nlohmann/json.hpp"
#include "proto/shardserve/v1/inference.grpc.pb.h"
#include "worker/engine.h"

namespace shardserve {
namespace {

constexpr absl::Duration kReadyTimeout = absl::Seconds(120);
constexpr absl::Duration kCallTimeout = absl::Seconds(120);

// What one Generate call returned.
struct Streamed {
  grpc::Status status;
  std::vector<int32_t> token_ids;
  std::string text;
  std::string finish_reason;
  v1::Usage usage;
  int responses = 0;
};

Streamed Drain(grpc::ClientContext* context, v1::InferenceService::Stub* stub,
               const v1::GenerateRequest& request,
               const std::function<void(const Streamed&)>& after_each = nullptr) {
  Streamed s;
  auto reader = stub->Generate(context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    ++s.responses;
    s.token_ids.insert(s.token_ids.end(), response.token_ids().begin(), response.token_ids().end());
    s.text += response.text();
    if (!response.finish_reason().empty()) {
      s.finish_reason = response.finish_reason();
      s.usage = response.usage();
    }
    if (after_each) after_each(s);
  }
  s.status = reader->Finish();
  return s;
}

v1::GenerateRequest GreedyTokens(const std::vector<int32_t>& prompt, int max_tokens) {
  v1::GenerateRequest r;
  r.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  r.mutable_params()->set_max_tokens(max_tokens);
  r.mutable_params()->set_ignore_eos(true);
  return r;
}

// The local cluster of one test suite: `shardserve serve` with the given extra flags.
class LocalCluster {
 public:
  explicit LocalCluster(std::vector<std::string> flags) : children_(TestTempDir()) {
    std::vector<std::string> argv = {TestRunfile("tools/shardserve"), "serve",
                                     "--model=" + TestGgufPath(), "--port=0", "--threads=1",
                                     // The Engine that Offline() compares with uses it too.
                                     "--kv_cache_dtype=f16", "--log_dir=" + TestTempDir()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    serve_ = children_.Spawn("serve", argv);
  }

  ~LocalCluster() { children_.KillAll(absl::Seconds(10)); }

  // Waits for the ready line; the address, or empty on failure (see Output()).
  std::string WaitReady() {
    const absl::Time deadline = absl::Now() + kReadyTimeout;
    while (absl::Now() < deadline) {
      const std::string out = children_.Output(serve_);
      const size_t ready = out.find("ready: ");
      const size_t at = out.find(" on 127.0.0.1:", ready == std::string::npos ? 0 : ready);
      if (ready != std::string::npos && at != std::string::npos) {
        size_t end = at + 14;
        while (end < out.size() && isdigit(out[end])) ++end;
        int port = 0;
        if (absl::SimpleAtoi(out.substr(at + 14, end - at - 14), &port) && port > 0) {
          return absl::StrCat("127.0.0.1:", port);
        }
      }
      if (children_.WaitExit(serve_, absl::ZeroDuration()).has_value()) return "";
      absl::SleepFor(absl::Milliseconds(50));
    }
    return "";
  }

  std::string Output() const { return children_.Output(serve_); }

 private:
  ChildProcesses children_;
  pid_t serve_ = -1;
};

class ServingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (TestGgufPath().empty()) return;
    auto bundle = LoadModelBundle(TestGgufPath());
    ASSERT_TRUE(bundle.ok()) << bundle.status();
    bundle_ = new ModelBundle(std::move(*bundle));
    // Prefill chunks of at most 96 tokens keep every step on the same matmul path as the
    // single-process Engine's short prompts, so batched greedy tokens must equal its tokens.
    cluster_ = new LocalCluster({"--max_num_batched_tokens=96", "--max_num_seqs=64"});
    address_ = new std::string(cluster_->WaitReady());
    ASSERT_FALSE(address_->empty()) << cluster_->Output();
  }

  static void TearDownTestSuite() {
    delete cluster_;
    delete address_;
    delete bundle_;
    cluster_ = nullptr;
  }

  void SetUp() override {
    if (TestGgufPath().empty()) GTEST_SKIP() << "SHARDSERVE_TEST_GGUF is not set";
    ASSERT_NE(address_, nullptr);
    ASSERT_FALSE(address_->empty());
    channel_ = grpc::CreateChannel(*address_, grpc::InsecureChannelCredentials());
    stub_ = v1::InferenceService::NewStub(channel_);
  }

  // The single-process Engine's greedy tokens for `prompt`.
  static std::vector<int32_t> Offline(const std::vector<int32_t>& prompt, int max_tokens) {
    static absl::Mutex mu;
    static Engine* engine = nullptr;
    absl::MutexLock lock(&mu);
    if (engine == nullptr) {
      EngineOptions options;
      options.num_threads = 1;
      options.kv_cache_dtype = DType::kF16;  // the cluster's (--kv_cache_dtype above)
      auto created = Engine::Create(bundle_->weights.get(), options);
      EXPECT_TRUE(created.ok()) << created.status();
      if (!created.ok()) return {};
      engine = created->release();
    }
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    auto r = engine->Generate(prompt, p, [](int32_t) { return true; });
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->token_ids : std::vector<int32_t>{};
  }

  std::vector<int32_t> Encode(const std::string& text) {
    return bundle_->tokenizer->Encode(text, /*add_special_tokens=*/true);
  }

  v1::GroupLoad Load() {
    grpc::ClientContext context;
    context.set_deadline(TestDeadline(absl::Seconds(10)));
    v1::GetClusterStatusResponse status;
    EXPECT_TRUE(stub_->GetClusterStatus(&context, v1::GetClusterStatusRequest(), &status).ok());
    EXPECT_EQ(status.groups_size(), 1) << status.DebugString();
    return status.groups_size() > 0 ? status.groups(0).load() : v1::GroupLoad();
  }

  // Polls until the group runs nothing and every KV block is free again.
  bool WaitIdle(absl::Duration timeout, v1::GroupLoad* last) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      *last = Load();
      if (last->running_requests() == 0 && last->waiting_requests() == 0 &&
          last->num_kv_blocks() > 0 && last->free_kv_blocks() == last->num_kv_blocks()) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  static ModelBundle* bundle_;
  static LocalCluster* cluster_;
  static std::string* address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::InferenceService::Stub> stub_;
};

ModelBundle* ServingTest::bundle_ = nullptr;
LocalCluster* ServingTest::cluster_ = nullptr;
std::string* ServingTest::address_ = nullptr;

TEST_F(ServingTest, StreamedGreedyOutputEqualsTheOfflineEngine) {
  const std::vector<std::string> prompts = {
      "The capital of France is",
      "Write a haiku about the sea.",
      "def fibonacci(n):",
      "Three things to pack for a hike:",
  };
  for (const std::string& text : prompts) {
    v1::GenerateRequest request;
    request.set_text(text);
    request.mutable_params()->set_max_tokens(32);
    request.mutable_params()->set_ignore_eos(true);
    grpc::ClientContext context;
    context.set_deadline(TestDeadline(kCallTimeout));
    const Streamed s = Drain(&context, stub_.get(), request);
    ASSERT_TRUE(s.status.ok()) << s.status.error_message();
    const std::vector<int32_t> prompt = Encode(text);
    EXPECT_EQ(s.token_ids, Offline(prompt, 32)) << text;
    auto decoded = bundle_->tokenizer->Decode(s.token_ids, /*skip_special_tokens=*/true);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(s.text, *decoded) << text;
    EXPECT_EQ(s.finish_reason, "length");
    EXPECT_EQ(s.usage.prompt_tokens(), static_cast<int>(prompt.size()));
    EXPECT_EQ(s.usage.completion_tokens(), 32);
    EXPECT_GT(s.responses, 1) << "the output was not streamed";
  }
}

TEST_F(ServingTest, SixtyFourConcurrentStreamsAllMatch) {
  constexpr int kStreams = 64;
  constexpr int kTokens = 12;
  std::vector<std::vector<int32_t>> prompts;
  const std::vector<int32_t> base = Encode("Once upon a time, in a small village by the river,");
  for (int i = 0; i < kStreams; ++i) {
    std::vector<int32_t> p = base;
    // Distinct tails, except that every fourth prompt repeats the previous one.
    const int tail_index = i % 4 == 3 ? i - 1 : i;
    const std::vector<int32_t> tail = bundle_->tokenizer->Encode(
        absl::StrCat(" there lived ", tail_index, " cats"), /*add_special_tokens=*/false);
    p.insert(p.end(), tail.begin(), tail.end());
    prompts.push_back(p);
  }
  std::vector<Streamed> results(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      grpc::ClientContext context;
      context.set_deadline(TestDeadline(kCallTimeout));
      results[i] = Drain(&context, stub_.get(), GreedyTokens(prompts[i], kTokens));
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << i << ": " << results[i].status.error_message();
    EXPECT_EQ(results[i].token_ids, Offline(prompts[i], kTokens)) << "stream " << i;
    EXPECT_EQ(results[i].finish_reason, "length");
  }
  v1::GroupLoad load;
  EXPECT_TRUE(WaitIdle(absl::Seconds(10), &load)) << load.DebugString();
  EXPECT_GT(load.prefix_cache_hit_tokens(), 0) << load.DebugString();
}

TEST_F(ServingTest, CancellingMidStreamFreesTheBlocks) {
  grpc::ClientContext context;
  context.set_deadline(TestDeadline(kCallTimeout));
  std::atomic<bool> saw_blocks_in_use{false};
  const Streamed s = Drain(&context, stub_.get(), GreedyTokens(Encode("Tell me a story."), 4000),
                           [&](const Streamed& so_far) {
                             if (so_far.token_ids.size() == 8) {
                               saw_blocks_in_use = Load().free_kv_blocks() < Load().num_kv_blocks();
                               context.TryCancel();
                             }
                           });
  EXPECT_EQ(s.status.error_code(), grpc::StatusCode::CANCELLED) << s.status.error_message();
  EXPECT_TRUE(saw_blocks_in_use);
  EXPECT_LT(s.token_ids.size(), 100u);
  v1::GroupLoad load;
  EXPECT_TRUE(WaitIdle(absl::Seconds(5), &load)) << load.DebugString();
}

TEST_F(ServingTest, DeadlinesAreHonouredAndFreeTheBlocks) {
  grpc::ClientContext context;
  context.set_deadline(TestDeadline(absl::Milliseconds(500)));
  const absl::Time start = absl::Now();
  const Streamed s =
      Drain(&context, stub_.get(), GreedyTokens(Encode("Count to a thousand:"), 4000));
  EXPECT_EQ(s.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.status.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  v1::GroupLoad load;
  EXPECT_TRUE(WaitIdle(absl::Seconds(5), &load)) << load.DebugString();
}

TEST_F(ServingTest, AbortEndsTheStreamWithAbort) {
  v1::GenerateRequest request = GreedyTokens(Encode("List every prime number."), 4000);
  request.set_request_id("to-abort");
  grpc::ClientContext context;
  context.set_deadline(TestDeadline(kCallTimeout));
  bool aborted = false;
  const Streamed s = Drain(&context, stub_.get(), request, [&](const Streamed& so_far) {
    if (!aborted && so_far.token_ids.size() >= 4) {
      aborted = true;
      grpc::ClientContext abort_context;
      abort_context.set_deadline(TestDeadline(absl::Seconds(10)));
      v1::AbortRequest abort;
      abort.set_request_id("to-abort");
      v1::AbortResponse reply;
      EXPECT_TRUE(stub_->Abort(&abort_context, abort, &reply).ok());
      EXPECT_TRUE(reply.found());
    }
  });
  EXPECT_TRUE(s.status.ok()) << s.status.error_message();
  EXPECT_EQ(s.finish_reason, "abort");
  EXPECT_LT(s.token_ids.size(), 200u);
  v1::GroupLoad load;
  EXPECT_TRUE(WaitIdle(absl::Seconds(5), &load)) << load.DebugString();
}

TEST_F(ServingTest, BadRequestsGetTheRightCodes) {
  auto call = [&](const v1::GenerateRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(TestDeadline(absl::Seconds(30)));
    return Drain(&context, stub_.get(), request).status;
  };
  // Longer than SmolLM2's 8192-token context window.
  const grpc::Status too_long = call(GreedyTokens(std::vector<int32_t>(9000, 42), 16));
  EXPECT_EQ(too_long.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(too_long.error_message().find("9000"), std::string::npos) << too_long.error_message();
  EXPECT_NE(too_long.error_message().find("8192"), std::string::npos) << too_long.error_message();

  v1::GenerateRequest bad_params = GreedyTokens({1, 2, 3}, 16);
  bad_params.mutable_params()->set_top_p(1.5f);
  const grpc::Status bad = call(bad_params);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(bad.error_message().find("top_p"), std::string::npos) << bad.error_message();

  v1::GenerateRequest out_of_vocab = GreedyTokens({1, 49152}, 16);
  EXPECT_EQ(call(out_of_vocab).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::GenerateRequest unknown_model = GreedyTokens({1, 2, 3}, 4);
  unknown_model.set_model("no-such-model");
  EXPECT_EQ(call(unknown_model).error_code(), grpc::StatusCode::NOT_FOUND);

  v1::GenerateRequest empty;
  EXPECT_EQ(call(empty).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // The server is still healthy and serving.
  grpc::ClientContext context;
  context.set_deadline(TestDeadline(kCallTimeout));
  EXPECT_TRUE(Drain(&context, stub_.get(), GreedyTokens({1, 2, 3}, 2)).status.ok());
}

TEST_F(ServingTest, HealthAndModels) {
  // grpc.health.v1.Health/Check with an empty HealthCheckRequest (service ""), as grpcurl-style
  // tools send it; the reply {status: SERVING} is the two bytes 08 01 on the wire.
  grpc::GenericStub generic(channel_);
  grpc::Slice empty("");
  grpc::ByteBuffer check_request(&empty, 1), check_reply;
  grpc::ClientContext check_context;
  check_context.set_deadline(TestDeadline(absl::Seconds(10)));
  absl::Notification checked;
  grpc::Status check_status;
  generic.UnaryCall(&check_context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                    &check_request, &check_reply, [&](grpc::Status s) {
                      check_status = std::move(s);
                      checked.Notify();
                    });
  ASSERT_TRUE(checked.WaitForNotificationWithTimeout(absl::Seconds(15)));
  ASSERT_TRUE(check_status.ok()) << check_status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(check_reply.Dump(&slices).ok());
  std::string reply_bytes;
  for (const grpc::Slice& slice : slices) {
    reply_bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  EXPECT_EQ(reply_bytes, std::string("\x08\x01", 2));

  grpc::ClientContext context;
  context.set_deadline(TestDeadline(absl::Seconds(10)));
  v1::ListModelsResponse models;
  ASSERT_TRUE(stub_->ListModels(&context, v1::ListModelsRequest(), &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).vocab_size(), 49152);

  v1::TokenizeRequest tokenize;
  tokenize.set_text("Hello, world!");
  v1::TokenizeResponse tokens;
  grpc::ClientContext tokenize_context;
  tokenize_context.set_deadline(TestDeadline(absl::Seconds(10)));
  ASSERT_TRUE(stub_->Tokenize(&tokenize_context, tokenize, &tokens).ok());
  EXPECT_EQ(std::vector<int32_t>(tokens.token_ids().begin(), tokens.token_ids().end()),
            Encode("Hello, world!"));
}

// Runs the shardserve CLI to completion; its exit code and output (stdout and stderr).
std::pair<int, std::string> RunCli(const std::vector<std::string>& args, absl::Duration timeout) {
  ChildProcesses children(TestTempDir());
  std::vector<std::string> argv = {TestRunfile("tools/shardserve")};
  argv.insert(argv.end(), args.begin(), args.end());
  const pid_t pid = children.Spawn("cli", argv);
  const absl::optional<int> code = children.WaitExit(pid, timeout);
  return {code.has_value() ? *code : -1, children.Output(pid)};
}

// The JSON object on the first line of `out` that starts with '{'.
nlohmann::json FirstJsonLine(const std::string& out) {
  for (size_t at = 0; at < out.size();) {
    size_t end = out.find('\n', at);
    if (end == std::string::npos) end = out.size();
    if (out[at] == '{') return nlohmann::json::parse(out.substr(at, end - at), nullptr, false);
    at = end + 1;
  }
  return nlohmann::json();
}

TEST_F(ServingTest, GenerateCommandStreamsAndReportsJson) {
  const std::string text = "The capital of France is";
  const auto [code, out] = RunCli({"generate", "--server=" + *address_, "--prompt=" + text,
                                   "--max_tokens=8", "--ignore_eos", "--temperature=0", "--json"},
                                  kCallTimeout);
  ASSERT_EQ(code, 0) << out;
  const nlohmann::json j = FirstJsonLine(out);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j["token_ids"].get<std::vector<int32_t>>(), Offline(Encode(text), 8)) << out;
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_GT(j["ttft_ms"].get<double>(), 0);
  EXPECT_EQ(j["prompt_tokens"].get<int>(), static_cast<int>(Encode(text).size()));
  EXPECT_EQ(j["completion_tokens"].get<int>(), 8);
  auto decoded = bundle_->tokenizer->Decode(j["token_ids"].get<std::vector<int32_t>>(),
                                            /*skip_special_tokens=*/true);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(j["text"].get<std::string>(), *decoded);
}

TEST_F(ServingTest, BenchCommandReportsEveryRequest) {
  const auto [code, out] =
      RunCli({"bench", "--server=" + *address_, "--num_prompts=6", "--request_rate=inf",
              "--max_concurrency=3", "--input_len=16", "--output_len=4", "--seed=7", "--json"},
             kCallTimeout);
  ASSERT_EQ(code, 0) << out;
  const size_t at = out.find('{');
  ASSERT_NE(at, std::string::npos) << out;
  const nlohmann::json j = nlohmann::json::parse(out.substr(at), nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j["successful_requests"].get<int>(), 6) << out;
  EXPECT_EQ(j["failed_requests"].get<int>(), 0) << out;
  EXPECT_EQ(j["total_output_tokens"].get<int>(), 24) << out;
  EXPECT_GT(j["p50_ttft_ms"].get<double>(), 0) << out;
  EXPECT_GT(j["output_throughput"].get<double>(), 0) << out;
}

// The README's one-command demo: a cluster starts, answers one prompt, and is stopped.
TEST(ServeDemoTest, ServeWithPromptAnswersAndExits) {
  if (TestGgufPath().empty()) GTEST_SKIP() << "SHARDSERVE_TEST_GGUF is not set";
  const auto [code, out] =
      RunCli({"serve", "--model=" + TestGgufPath(), "--port=0", "--threads=1",
              "--log_dir=" + TestTempDir(), "--chat", "--prompt=Name a primary colour.",
              "--max_tokens=8", "--ignore_eos"},
             kReadyTimeout);
  ASSERT_EQ(code, 0) << out;
  // Everything but serve's own status lines is the streamed answer.
  std::string answer;
  for (size_t at = 0; at < out.size();) {
    size_t end = out.find('\n', at);
    if (end == std::string::npos) end = out.size();
    const std::string line = out.substr(at, end - at);
    if (line.rfind("shardserve serve:", 0) != 0 && line.rfind("ready:", 0) != 0) answer += line;
    at = end + 1;
  }
  EXPECT_FALSE(answer.empty()) << out;
}

// A cluster whose leader runs one request at a time and queues at most one more.
TEST(ServingQueueTest, AFullQueueAnswersResourceExhaustedAtOnce) {
  if (TestGgufPath().empty()) GTEST_SKIP() << "SHARDSERVE_TEST_GGUF is not set";
  LocalCluster cluster({"--max_num_seqs=1", "--max_waiting=1"});
  const std::string address = cluster.WaitReady();
  ASSERT_FALSE(address.empty()) << cluster.Output();
  auto stub = v1::InferenceService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  // The first request runs alone (its first token shows it left the queue); then five more
  // arrive at once: one may wait, the others are refused at once.
  constexpr int kRequests = 6;
  std::vector<Streamed> results(kRequests);
  std::vector<absl::Duration> took(kRequests);
  absl::Notification first_running;
  std::vector<std::thread> threads;
  auto send = [&](int i) {
    grpc::ClientContext context;
    context.set_deadline(TestDeadline(kCallTimeout));
    const absl::Time start = absl::Now();
    results[i] = Drain(&context, stub.get(), GreedyTokens({1, 2, 3, 4 + i}, 64),
                       [&](const Streamed& so_far) {
                         if (i == 0 && so_far.responses == 1) first_running.Notify();
                       });
    took[i] = absl::Now() - start;
  };
  threads.emplace_back(send, 0);
  ASSERT_TRUE(first_running.WaitForNotificationWithTimeout(absl::Seconds(60)));
  for (int i = 1; i < kRequests; ++i) threads.emplace_back(send, i);
  for (std::thread& t : threads) t.join();
  int ok = 0, exhausted = 0;
  for (int i = 0; i < kRequests; ++i) {
    if (results[i].status.ok()) {
      ++ok;
      EXPECT_EQ(results[i].token_ids.size(), 64u);
    } else {
      EXPECT_EQ(results[i].status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << results[i].status.error_message();
      EXPECT_LT(took[i], absl::Seconds(1)) << "refused only after waiting";
      ++exhausted;
    }
  }
  EXPECT_TRUE(results[0].status.ok()) << results[0].status.error_message();
  EXPECT_GE(ok, 2);
  EXPECT_GE(exhausted, 1);
}

}  // namespace
}  // namespace shardserve
