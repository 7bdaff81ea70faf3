// ServingEngine's decode side of disaggregated serving: requests whose prompt a prefill group
// computes (serving_engine.h, Submit with a RemotePrefill). Split from serving_engine.cc only to
// keep files short; the same class, the same engine thread.
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "worker/serving_engine.h"

namespace shardserve {
namespace {

const char* RemoteStateName(int state) {
  static const char* const kNames[] = {"waiting_blocks", "expecting", "prefilling", "committing",
                                       "cancelling"};
  return state >= 0 && state < 5 ? kNames[state] : "unknown";
}

// A prefill group's failure as the decode side reports it: UNAVAILABLE unless the prefill group
// said it was full or out of time, so the coordinator may retry elsewhere.
absl::Status PrefillError(const RemotePrefill& remote, const absl::Status& error) {
  absl::StatusCode code = absl::StatusCode::kUnavailable;
  if (error.code() == absl::StatusCode::kResourceExhausted ||
      error.code() == absl::StatusCode::kDeadlineExceeded) {
    code = error.code();
  }
  return absl::Status(code, absl::StrCat("prefill group ", remote.group_id, " (",
                                         remote.leader_address, "): ", error.message()));
}

}  // namespace

void ServingEngine::SetRemoteState(int64_t seq_id, Remote& r, RemoteState next) {
  using S = RemoteState;
  const S from = r.state;
  const bool allowed =
      (from == S::kWaitingBlocks && next == S::kExpecting) ||
      (from == S::kExpecting && (next == S::kPrefilling || next == S::kCancelling)) ||
      (from == S::kPrefilling && (next == S::kCommitting || next == S::kCancelling)) ||
      (from == S::kCommitting && next == S::kCancelling);
  CHECK(allowed) << "remote request " << seq_id << ": " << RemoteStateName(static_cast<int>(from))
                 << " -> " << RemoteStateName(static_cast<int>(next));
  r.state = next;
}

bool ServingEngine::HasKvWork() const {
  return kv_work_.expect_size() > 0 || kv_work_.commit_size() > 0 || kv_work_.cancel_size() > 0 ||
         kv_work_.abort_size() > 0;
}

int ServingEngine::NumRemoteRunning() const {
  return static_cast<int>(remotes_.size() - remote_waiting_.size());
}

void ServingEngine::PrefillDone(int64_t seq_id, absl::StatusOr<v1::PrefillReply> reply) {
  absl::MutexLock lock(&mu_);
  prefill_done_.emplace_back(seq_id, std::move(reply));
  --num_prefill_calls_;
  wake_.Signal();
}

void ServingEngine::CancelRemote(int64_t seq_id, Remote& r, absl::Status status) {
  if (options_.metrics != nullptr) options_.metrics->RecordKvTransferFailure();
  r.end_status = std::move(status);
  kv_work_.add_cancel(r.transfer_id);
  SetRemoteState(seq_id, r, RemoteState::kCancelling);
}

void ServingEngine::StartPrefill(int64_t seq_id, Remote& r) {
  const RemotePrefill& remote = *r.active.remote;
  v1::PrefillRequest request;
  *request.mutable_request() = remote.request;
  request.mutable_request()->clear_remote_prefill();
  request.set_transfer_id(r.transfer_id);
  request.mutable_peers()->Assign(options_.kv_peers.begin(), options_.kv_peers.end());
  {
    absl::MutexLock lock(&mu_);
    ++num_prefill_calls_;
  }
  r.call_id = options_.prefill_client->Start(
      remote.leader_address, request, [this, seq_id](absl::StatusOr<v1::PrefillReply> reply) {
        PrefillDone(seq_id, std::move(reply));
      });
  SetRemoteState(seq_id, r, RemoteState::kPrefilling);
}

void ServingEngine::AdvanceRemotes() {
  // Drained even with no remote request left, so the loop's idle wait never sees a stale one.
  std::vector<std::pair<int64_t, absl::StatusOr<v1::PrefillReply>>> done;
  {
    absl::MutexLock lock(&mu_);
    done.swap(prefill_done_);
  }
  if (remotes_.empty()) return;
  for (auto& [seq_id, reply] : done) {
    auto it = remotes_.find(seq_id);
    if (it == remotes_.end()) continue;
    Remote& r = it->second;
    if (r.active.request->cancelled()) {
      CancelRemote(seq_id, r, absl::CancelledError("the request was cancelled"));
    } else if (!reply.ok()) {
      CancelRemote(seq_id, r, PrefillError(*r.active.remote, reply.status()));
    } else {
      r.reply = *std::move(reply);
      kv_work_.add_commit(r.transfer_id);
      SetRemoteState(seq_id, r, RemoteState::kCommitting);
    }
  }

  // Cancelled by the client: a request without blocks ends now; a running Prefill call is
  // cancelled and ends through its completion; a step in flight decides at its outcome.
  std::vector<int64_t> ended;
  for (auto& [seq_id, r] : remotes_) {
    if (!r.active.request->cancelled()) continue;
    if (r.state == RemoteState::kWaitingBlocks) {
      ended.push_back(seq_id);
    } else if (r.state == RemoteState::kPrefilling && !r.call_cancelled) {
      options_.prefill_client->Cancel(r.call_id);
      r.call_cancelled = true;
    }
  }
  for (int64_t seq_id : ended) {
    EndEarly(remotes_.at(seq_id).active, absl::CancelledError("the request was cancelled"));
    remotes_.erase(seq_id);
    remote_waiting_.erase(std::find(remote_waiting_.begin(), remote_waiting_.end(), seq_id));
  }

  // Blocks for the waiting ones, in arrival order (a prompt that does not fit holds back the
  // ones behind it, as the scheduler's FCFS does).
  while (!remote_waiting_.empty() &&
         scheduler_.num_running() + NumRemoteRunning() < options_.scheduler.max_num_seqs) {
    const int64_t seq_id = remote_waiting_.front();
    Remote& r = remotes_.at(seq_id);
    absl::Span<const int32_t> prompt = r.active.history.prompt_token_ids();
    // Fresh blocks: the KV arrives into them, so none may be shared with a cached prefix.
    absl::StatusOr<int> got = blocks_.Allocate(seq_id, prompt, /*use_prefix_cache=*/false);
    if (absl::IsResourceExhausted(got.status())) break;
    remote_waiting_.pop_front();
    if (!got.ok()) {
      EndEarly(r.active, got.status());
      remotes_.erase(seq_id);
      continue;
    }
    if (next_transfer_id_ == 0) {
      // Transfer ids must never repeat on a receiver, also across restarts of this leader.
      std::random_device entropy;
      next_transfer_id_ = (uint64_t{entropy()} << 32) | 1;
    }
    r.transfer_id = next_transfer_id_++;
    transfer_seq_[r.transfer_id] = seq_id;
    v1::StepKvWork::Expect* expect = kv_work_.add_expect();
    expect->set_transfer_id(r.transfer_id);
    expect->set_num_tokens(static_cast<int32_t>(prompt.size()));
    const std::vector<int32_t>& table = blocks_.BlockTable(seq_id);
    expect->mutable_block_ids()->Assign(table.begin(), table.end());
    SetRemoteState(seq_id, r, RemoteState::kExpecting);
  }
}

void ServingEngine::OnRemoteOutcomes(absl::Span<const KvOutcome> outcomes) {
  if (remotes_.empty()) return;
  for (const KvOutcome& o : outcomes) {
    if (o.kind == KvOutcome::Kind::kSend) continue;
    auto t = transfer_seq_.find(o.transfer_id);
    if (t == transfer_seq_.end()) continue;
    const int64_t seq_id = t->second;
    Remote& r = remotes_.at(seq_id);
    if (r.state == RemoteState::kCancelling) continue;
    const bool cancelled = r.active.request->cancelled();
    if (o.kind == KvOutcome::Kind::kExpect) {
      CHECK(r.state == RemoteState::kExpecting);
      if (!o.status.ok()) {
        CancelRemote(seq_id, r,
                     absl::UnavailableError(absl::StrCat(
                         "the decode group could not reserve KV blocks: ", o.status.message())));
      } else if (cancelled) {
        CancelRemote(seq_id, r, absl::CancelledError("the request was cancelled"));
      } else {
        StartPrefill(seq_id, r);
      }
      continue;
    }
    CHECK(r.state == RemoteState::kCommitting);
    // Committing ended the reservation on every rank, whatever the outcome.
    transfer_seq_.erase(t);
    if (!o.status.ok() || cancelled) {
      if (!o.status.ok() && options_.metrics != nullptr) {
        options_.metrics->RecordKvTransferFailure();
      }
      blocks_.Free(seq_id);
      EndEarly(r.active,
               cancelled ? absl::CancelledError("the request was cancelled")
                         : PrefillError(
                               *r.active.remote,
                               absl::Status(o.status.code(), absl::StrCat("the KV transfer did not "
                                                                          "complete: ",
                                                                          o.status.message()))));
      remotes_.erase(seq_id);
      continue;
    }
    // The prompt's KV is in place on every rank: the request joins the running batch with the
    // token the prefill group sampled, as if this group had computed the prompt.
    Active a = std::move(r.active);
    const v1::GenerateOnGroupResponse first = r.reply.first_token();
    remotes_.erase(seq_id);
    absl::Span<const int32_t> prompt = a.history.prompt_token_ids();
    const absl::Status added = scheduler_.AddComputed(
        seq_id, std::vector<int32_t>(prompt.begin(), prompt.end()), first.token_id());
    CHECK(added.ok()) << added;
    a.history.AppendOutput(first.token_id());
    // The prefill group drew once from the same seed: keep the stream a colocated run gives.
    if (!a.params.greedy()) a.rng.discard(1);
    TokenEvent event;
    event.token_id = first.token_id();
    event.logprob = first.logprob();
    for (const v1::WorkerTopLogprob& top : first.top_logprobs()) {
      event.top_logprobs.push_back({top.token_id(), top.logprob()});
    }
    event.prompt_tokens = a.prompt_tokens;
    event.cached_tokens = first.cached_tokens();
    event.finish = FinishAfter(a, first.token_id());
    const FinishReason finish = event.finish;
    a.request->Push(std::move(event));
    active_.emplace(seq_id, std::move(a));
    if (finish != FinishReason::kNone) FinishSequence(seq_id, finish);
  }

  // Reservations dropped by the step just run: their blocks can go.
  std::vector<int64_t> dropped;
  for (auto& [seq_id, r] : remotes_) {
    if (r.state == RemoteState::kCancelling && r.cancel_sent) dropped.push_back(seq_id);
  }
  for (int64_t seq_id : dropped) {
    Remote& r = remotes_.at(seq_id);
    transfer_seq_.erase(r.transfer_id);
    blocks_.Free(seq_id);
    EndEarly(r.active, r.end_status);
    remotes_.erase(seq_id);
  }
}

}  // namespace shardserve
