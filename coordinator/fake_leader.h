// Test double of an engine group's leader: an in-process WorkerService that streams scripted
// token ids, can block until its call is cancelled, fails on cue (also as a decode leader whose
// prefill group failed), answers GetLoad with a set load or hangs, and records what it was sent
// and when calls were cancelled.
//
//   FakeLeader leader;
//   const int port = leader.Start();          // 127.0.0.1:<port>
//   leader.SetScript({tokens, "length"});     // every call, unless one was pushed
//   leader.PushScript(failing);               // the next call only
//   ASSERT_TRUE(leader.WaitForCalls(1));
//
// Thread safety: every method may be called from any thread. Blocking handlers give up after
// 30 s, so a test that forgets to cancel still ends.
#ifndef SHARDSERVE_COORDINATOR_FAKE_LEADER_H_
#define SHARDSERVE_COORDINATOR_FAKE_LEADER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "proto/shardserve/v1/worker.grpc.pb.h"

namespace shardserve {

class FakeLeader final : public v1::WorkerService::Service {
 public:
  // What the leader does with a Generate call.
  struct Script {
    std::vector<int32_t> tokens;
    // Set on the last token unless the call blocks or fails afterwards.
    std::string finish_reason = "length";
    // After the tokens, wait (up to 30 s) until the call is cancelled.
    bool block = false;
    // Returned after the tokens when not OK.
    grpc::Status error = grpc::Status::OK;
    // With `error`: its message is prefixed "prefill group <remote_prefill.group_id>: ", as a
    // decode leader reports a failed prefill.
    bool error_names_prefill_group = false;
    int32_t cached_tokens = 0;
  };

  FakeLeader() = default;
  ~FakeLeader() override;

  // Serves on 127.0.0.1 at a free port, returned (0 on failure).
  int Start();
  // Ends every call now and stops serving; idempotent.
  void Shutdown();

  // The script of every call that finds no pushed one.
  void SetScript(Script script);
  // The script of the next call that finds none pushed before it.
  void PushScript(Script script);
  void SetLoad(v1::GetLoadReply load);
  // While true, GetLoad waits (up to 30 s) until its call is cancelled or this is set false.
  void SetGetLoadHangs(bool hangs);

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateOnGroupRequest* request,
                        grpc::ServerWriter<v1::GenerateOnGroupResponse>* writer) override;
  grpc::Status GetLoad(grpc::ServerContext* context, const v1::GetLoadRequest* request,
                       v1::GetLoadReply* reply) override;

  // Waits until `n` Generate calls have arrived; false after `timeout`.
  bool WaitForCalls(int n, absl::Duration timeout = absl::Seconds(10));
  // Waits until `n` calls have seen their cancellation; false after `timeout`.
  bool WaitForCancellations(int n, absl::Duration timeout = absl::Seconds(10));
  // Waits until `n` GetLoad calls have arrived; false after `timeout`.
  bool WaitForLoadCalls(int n, absl::Duration timeout = absl::Seconds(10));
  std::vector<absl::Time> cancel_times();
  int num_calls();
  int num_load_calls();
  std::vector<v1::GenerateOnGroupRequest> requests();
  v1::GenerateOnGroupRequest last_request();

 private:
  absl::Mutex mu_;
  Script script_ ABSL_GUARDED_BY(mu_);
  std::deque<Script> pushed_ ABSL_GUARDED_BY(mu_);
  v1::GetLoadReply load_ ABSL_GUARDED_BY(mu_);
  bool load_hangs_ ABSL_GUARDED_BY(mu_) = false;
  int num_load_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::GenerateOnGroupRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> cancel_times_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_COORDINATOR_FAKE_LEADER_H_
