#include "worker/serving_engine.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "worker/engine.h"

namespace shardserve {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool Contains(absl::Span<const int32_t> ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

ServingRequest::NextResult ServingRequest::Next(TokenEvent* event, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !events_.empty() || ended_; };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (!events_.empty()) {
    *event = std::move(events_.front());
    events_.pop_front();
    return kEvent;
  }
  return ended_ ? kDone : kTimeout;
}

void ServingRequest::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
}

absl::Status ServingRequest::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

void ServingRequest::Push(TokenEvent event) {
  absl::MutexLock lock(&mu_);
  events_.push_back(std::move(event));
}

void ServingRequest::End(absl::Status status) {
  absl::MutexLock lock(&mu_);
  if (ended_) return;
  ended_ = true;
  status_ = std::move(status);
}

bool ServingRequest::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

ServingEngine::ServingEngine(GroupEngine* engine, const ServingOptions& options)
    : engine_(engine),
      options_(options),
      vocab_size_(engine->config().vocab_size),
      blocks_(static_cast<int>(engine->num_kv_blocks()),
              static_cast<int>(engine->kv_cache_shape().block_size)),
      // Submit enforces max_waiting (against the last published count plus the inbox), so a
      // request it accepted is never refused later when the engine thread takes it in.
      scheduler_(&blocks_,
                 [&] {
                   SchedulerOptions o = options.scheduler;
                   o.max_waiting = std::numeric_limits<int>::max();
                   return o;
                 }()),
      sampler_([&] {
        std::vector<int32_t> eos;
        for (int64_t id : engine->config().eos_token_ids) eos.push_back(static_cast<int32_t>(id));
        return eos;
      }()) {}

absl::StatusOr<std::unique_ptr<ServingEngine>> ServingEngine::Create(
    GroupEngine* engine, const ServingOptions& options) {
  if (engine == nullptr || !engine->is_leader()) {
    return absl::InvalidArgumentError("a ServingEngine runs on a group leader's engine");
  }
  const SchedulerOptions& s = options.scheduler;
  if (s.max_num_seqs < 1 || s.max_num_batched_tokens < 1 || s.max_waiting < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("scheduler options: max_num_seqs (", s.max_num_seqs,
                     ") and max_num_batched_tokens (", s.max_num_batched_tokens,
                     ") must be positive, max_waiting (", s.max_waiting, ") not negative"));
  }
  if (options.ping_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("ping_interval must be positive");
  }
  std::unique_ptr<ServingEngine> e(new ServingEngine(engine, options));
  {
    absl::MutexLock lock(&e->mu_);
    e->load_.num_kv_blocks = e->blocks_.num_blocks();
    e->load_.free_kv_blocks = e->blocks_.NumFreeBlocks();
  }
  e->thread_ = std::thread([p = e.get()] { p->Loop(); });
  return e;
}

ServingEngine::~ServingEngine() { Shutdown(); }

absl::StatusOr<std::shared_ptr<ServingRequest>> ServingEngine::Submit(
    std::vector<int32_t> prompt, const SamplingParams& params, std::string request_id,
    const std::optional<RemotePrefill>& remote) {
  if (remote.has_value() && (options_.prefill_client == nullptr || options_.kv_peers.empty())) {
    return absl::FailedPreconditionError(
        "this group cannot take prefilled requests: it is not a decode group");
  }
  Active a;
  a.remote = remote;
  return Enqueue(std::move(prompt), params, std::move(request_id), std::move(a));
}

absl::StatusOr<std::shared_ptr<ServingRequest>> ServingEngine::SubmitPrefill(
    std::vector<int32_t> prompt, const SamplingParams& params, std::string request_id,
    KvTarget target) {
  if (target.peers.empty()) {
    return absl::InvalidArgumentError("a prefill request needs the decode group's ranks");
  }
  SamplingParams one = params;
  one.max_tokens = 1;
  Active a;
  a.outgoing = Outgoing{std::move(target)};
  return Enqueue(std::move(prompt), one, std::move(request_id), std::move(a));
}

absl::StatusOr<std::shared_ptr<ServingRequest>> ServingEngine::Enqueue(std::vector<int32_t> prompt,
                                                                       const SamplingParams& params,
                                                                       std::string request_id,
                                                                       Active a) {
  RETURN_IF_ERROR(
      CheckGenerateRequest(engine_->config(), engine_->max_context_tokens(), prompt, params));
  absl::MutexLock lock(&mu_);
  if (!failure_.ok()) return failure_;
  if (shutdown_) return absl::FailedPreconditionError("this worker is shutting down");
  const int64_t waiting = static_cast<int64_t>(inbox_.size()) + load_.waiting;
  if (waiting >= options_.scheduler.max_waiting) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the group's queue is full (", waiting, " requests waiting); retry later"));
  }
  a.request = std::shared_ptr<ServingRequest>(new ServingRequest(std::move(request_id)));
  a.params = params;
  a.history = SequenceHistory(prompt);
  a.rng = Sampler::MakeRng(params);
  a.prompt_tokens = static_cast<int32_t>(prompt.size());
  std::shared_ptr<ServingRequest> handle = a.request;
  const int64_t seq_id = next_seq_id_++;
  inbox_.emplace_back(seq_id, std::move(a));
  // The prompt travels in the history; the scheduler gets its own copy when taken in.
  wake_.Signal();
  return handle;
}

ServingLoad ServingEngine::Load() const {
  absl::MutexLock lock(&mu_);
  ServingLoad load = load_;
  load.waiting += static_cast<int32_t>(inbox_.size());
  return load;
}

absl::Status ServingEngine::health() const {
  absl::MutexLock lock(&mu_);
  return failure_;
}

void ServingEngine::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_ && !thread_.joinable()) return;
    shutdown_ = true;
    wake_.Signal();
  }
  if (thread_.joinable()) thread_.join();
  // The engine thread cancelled every Prefill call; their completions touch this object.
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](int* calls) { return *calls == 0; }, &num_prefill_calls_));
}

void ServingEngine::TakeInbox() {
  std::vector<std::pair<int64_t, Active>> incoming;
  {
    absl::MutexLock lock(&mu_);
    incoming.swap(inbox_);
  }
  for (auto& [seq_id, a] : incoming) {
    if (a.remote.has_value()) {
      Remote& r = remotes_[seq_id];
      r.active = std::move(a);
      remote_waiting_.push_back(seq_id);
      continue;
    }
    absl::Span<const int32_t> prompt = a.history.prompt_token_ids();
    absl::Status added = scheduler_.Add(seq_id, std::vector<int32_t>(prompt.begin(), prompt.end()));
    if (!added.ok()) {
      EndEarly(a, added);
      continue;
    }
    active_.emplace(seq_id, std::move(a));
  }
  {
    // Submit counts the scheduler's waiting queue: publish it before the inbox looks empty.
    absl::MutexLock lock(&mu_);
    load_.waiting = scheduler_.num_waiting() + static_cast<int32_t>(remote_waiting_.size());
  }
  std::vector<int64_t> cancelled;
  for (const auto& [seq_id, a] : active_) {
    if (a.request->cancelled()) cancelled.push_back(seq_id);
  }
  for (int64_t seq_id : cancelled) {
    const std::optional<Outgoing>& outgoing = active_.at(seq_id).outgoing;
    if (outgoing.has_value() && outgoing->started > 0) {
      // Some layers went out: tell the decode ranks that no more will.
      v1::StepKvWork::Abort* abort = kv_work_.add_abort();
      abort->set_transfer_id(outgoing->target.transfer_id);
      abort->mutable_peers()->Assign(outgoing->target.peers.begin(), outgoing->target.peers.end());
      if (options_.metrics != nullptr) options_.metrics->RecordKvTransferFailure();
    }
    scheduler_.Finish(seq_id);
    EndEarly(active_.at(seq_id), absl::CancelledError("the request was cancelled"));
    active_.erase(seq_id);
  }
}

void ServingEngine::BuildPlan(const SchedulerOutput& out) {
  StepPlan& p = plan_;
  p = StepPlan();
  p.command = StepPlan::Command::kRun;
  p.qo_indptr.push_back(0);
  p.kv_indptr.push_back(0);
  const int64_t block_size = blocks_.block_size();
  for (const ScheduledChunk& c : out.chunks) {
    const std::vector<int32_t>& tokens = scheduler_.Tokens(c.seq_id);
    const int32_t end = c.start_position + c.num_tokens;
    for (int32_t i = c.start_position; i < end; ++i) {
      p.token_ids.push_back(tokens[i]);
      p.positions.push_back(i);
    }
    blocks_.AppendSlotMapping(c.seq_id, c.start_position, end, &p.slot_mapping);
    const std::vector<int32_t>& table = blocks_.BlockTable(c.seq_id);
    const int64_t used_blocks = (end + block_size - 1) / block_size;
    p.kv_indices.insert(p.kv_indices.end(), table.begin(), table.begin() + used_blocks);
    p.kv_indptr.push_back(static_cast<int32_t>(p.kv_indices.size()));
    p.kv_lens.push_back(end);
    p.qo_indptr.push_back(static_cast<int32_t>(p.token_ids.size()));
    if (c.wants_logits) p.logits_rows.push_back(static_cast<int32_t>(p.token_ids.size()) - 1);
    auto it = active_.find(c.seq_id);
    if (it != active_.end() && it->second.outgoing.has_value()) {
      AddSend(static_cast<int32_t>(p.kv_lens.size()) - 1, c, *it->second.outgoing);
    }
  }
  if (kv_work_.ByteSizeLong() > 0) {
    p.kv_work = kv_work_.SerializeAsString();
    kv_work_.Clear();
    for (auto& [seq_id, r] : remotes_) {
      if (r.state == RemoteState::kCancelling) r.cancel_sent = true;
    }
  }
}

void ServingEngine::AddSend(int32_t seq_index, const ScheduledChunk& c, Outgoing& outgoing) {
  // Every token up to the chunk's end, from the first not yet sent: the first chunk's also
  // covers a prefix that came from the prefix cache, and a chunk recomputed after a preemption
  // sends nothing twice.
  const int32_t end = std::max(outgoing.sent_tokens, c.start_position + c.num_tokens);
  if (end == outgoing.sent_tokens && !c.wants_logits) return;
  v1::StepKvWork::Send* send = kv_work_.add_send();
  send->set_transfer_id(outgoing.target.transfer_id);
  send->set_seq_index(seq_index);
  send->set_token_begin(outgoing.sent_tokens);
  send->set_token_end(end);
  send->set_finish(c.wants_logits);
  send->mutable_peers()->Assign(outgoing.target.peers.begin(), outgoing.target.peers.end());
  if (outgoing.started == 0) outgoing.started = Now();
  outgoing.sent_tokens = end;
}

void ServingEngine::EndEarly(Active& a, const absl::Status& status) {
  if (options_.metrics != nullptr) {
    options_.metrics->RecordFinish(status.code() == absl::StatusCode::kCancelled ? "abort"
                                                                                 : "error");
  }
  a.request->End(status);
}

void ServingEngine::FinishSequence(int64_t seq_id, FinishReason reason) {
  if (options_.metrics != nullptr) {
    options_.metrics->RecordFinish(std::string(FinishReasonName(reason)));
  }
  scheduler_.Finish(seq_id);
  auto it = active_.find(seq_id);
  if (it == active_.end()) return;
  it->second.request->End(absl::OkStatus());
  active_.erase(it);
}

FinishReason ServingEngine::FinishAfter(const Active& a, int32_t token) const {
  const int num_out = a.history.num_output_tokens();
  const std::vector<int32_t>& eos = sampler_.eos_token_ids();
  if (num_out >= a.params.min_tokens && (Contains(a.params.stop_token_ids, token) ||
                                         (!a.params.ignore_eos && Contains(eos, token)))) {
    return FinishReason::kStop;
  }
  if (num_out >= a.params.max_tokens) return FinishReason::kLength;
  return FinishReason::kNone;
}

void ServingEngine::DeliverTokens(const SchedulerOutput& out, absl::Span<float> logits) {
  size_t row = 0;
  for (const ScheduledChunk& c : out.chunks) {
    if (!c.wants_logits) continue;
    absl::Span<float> row_logits = logits.subspan(row * vocab_size_, vocab_size_);
    ++row;
    auto it = active_.find(c.seq_id);
    if (it == active_.end()) continue;
    Active& a = it->second;
    if (a.outgoing.has_value() && !TransferDelivered(c.seq_id, a)) continue;
    SampleResult s = sampler_.Sample(row_logits, a.params, a.history, a.rng);
    a.history.AppendOutput(s.token_id);
    TokenEvent event;
    event.token_id = s.token_id;
    event.logprob = s.logprob;
    event.top_logprobs = std::move(s.top_logprobs);
    event.prompt_tokens = a.prompt_tokens;
    event.cached_tokens = scheduler_.NumCachedTokens(c.seq_id);
    if (a.outgoing.has_value()) {
      event.kv_bytes = a.outgoing->bytes;
      event.kv_seconds = Now() - a.outgoing->started;
      if (options_.metrics != nullptr) {
        options_.metrics->RecordKvTransfer(event.kv_bytes, event.kv_seconds);
      }
    }
    event.finish = FinishAfter(a, s.token_id);
    const FinishReason finish = event.finish;
    a.request->Push(std::move(event));
    if (finish != FinishReason::kNone) {
      FinishSequence(c.seq_id, finish);
    } else {
      scheduler_.AppendToken(c.seq_id, s.token_id);
    }
  }
}

bool ServingEngine::TransferDelivered(int64_t seq_id, Active& a) {
  absl::Status status = absl::InternalError("the step did not confirm the KV transfer");
  for (const KvOutcome& o : kv_outcomes_) {
    if (o.kind != KvOutcome::Kind::kSend || o.transfer_id != a.outgoing->target.transfer_id) {
      continue;
    }
    status = o.status;
    a.outgoing->bytes = o.bytes;
  }
  if (status.ok()) return true;
  if (options_.metrics != nullptr) options_.metrics->RecordKvTransferFailure();
  scheduler_.Finish(seq_id);
  EndEarly(a,
           absl::Status(status.code(), absl::StrCat("KV transfer ", a.outgoing->target.transfer_id,
                                                    ": ", status.message())));
  active_.erase(seq_id);
  return false;
}

void ServingEngine::FailAll(const absl::Status& status) {
  LOG(ERROR) << "the engine group failed: " << status;
  {
    absl::MutexLock lock(&mu_);
    failure_ = status;  // Submit refuses from now on, so the inbox taken below stays empty
  }
  EndAll(status);
}

void ServingEngine::EndAll(const absl::Status& status) {
  std::vector<std::pair<int64_t, Active>> incoming;
  {
    absl::MutexLock lock(&mu_);
    incoming.swap(inbox_);
  }
  for (auto& [seq_id, a] : incoming) EndEarly(a, status);
  for (auto& [seq_id, a] : active_) {
    scheduler_.Finish(seq_id);
    EndEarly(a, status);
  }
  active_.clear();
  for (auto& [seq_id, r] : remotes_) {
    if (r.state == RemoteState::kPrefilling) options_.prefill_client->Cancel(r.call_id);
    blocks_.Free(seq_id);
    EndEarly(r.active, status);
  }
  remotes_.clear();
  remote_waiting_.clear();
  transfer_seq_.clear();
}

void ServingEngine::UpdateLoad(double step_seconds, int64_t step_tokens, int64_t step_seqs) {
  absl::MutexLock lock(&mu_);
  load_.running = scheduler_.num_running() + NumRemoteRunning();
  load_.waiting = scheduler_.num_waiting() + static_cast<int32_t>(remote_waiting_.size());
  load_.free_kv_blocks = blocks_.NumFreeBlocks();
  load_.kv_usage = blocks_.Usage();
  load_.prefix_cache_queried_tokens = blocks_.prefix_cache_stats().queried_tokens;
  load_.prefix_cache_hit_tokens = blocks_.prefix_cache_stats().hit_tokens;
  load_.preemptions = scheduler_.num_preemptions();
  if (options_.metrics != nullptr) {
    options_.metrics->RecordState(load_.running, load_.waiting + static_cast<int>(inbox_.size()),
                                  load_.kv_usage, load_.prefix_cache_queried_tokens,
                                  load_.prefix_cache_hit_tokens, load_.preemptions);
    if (step_seqs > 0) options_.metrics->RecordStep(step_seqs, step_tokens, step_seconds);
  }
  if (step_seqs > 0) {
    ++load_.steps;
    load_.last_step_tokens = step_tokens;
    load_.last_step_seqs = step_seqs;
    load_.last_step_seconds = step_seconds;
  }
}

void ServingEngine::Loop() {
  double last_ping = Now();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (shutdown_) break;
      if (inbox_.empty() && prefill_done_.empty() && !scheduler_.HasWork() && !HasKvWork()) {
        wake_.WaitWithTimeout(&mu_, options_.ping_interval);
        if (shutdown_) break;
      }
    }
    TakeInbox();
    AdvanceRemotes();
    if (!scheduler_.HasWork() && !HasKvWork()) {
      UpdateLoad(0, 0, 0);
      if (Now() - last_ping >= absl::ToDoubleSeconds(options_.ping_interval)) {
        if (absl::Status s = engine_->Ping(); !s.ok()) {
          FailAll(s);
          return;
        }
        last_ping = Now();
      }
      continue;
    }
    const SchedulerOutput out = scheduler_.HasWork() ? scheduler_.Schedule() : SchedulerOutput{};
    {
      // Admission moved requests out of the queue: say so before any of their tokens is out, so
      // that a client reacting to a token does not find them still counted as waiting.
      absl::MutexLock lock(&mu_);
      load_.waiting = scheduler_.num_waiting() + static_cast<int32_t>(remote_waiting_.size());
    }
    if (out.chunks.empty() && !HasKvWork()) {
      // Nothing fits this step (only possible while blocks are being freed): try again soon.
      UpdateLoad(0, 0, 0);
      absl::SleepFor(absl::Milliseconds(1));
      continue;
    }
    BuildPlan(out);
    logits_.resize(plan_.logits_rows.size() * vocab_size_);
    const double t0 = Now();
    absl::Status s = engine_->RunStep(plan_, logits_.data(), &kv_outcomes_);
    if (!s.ok()) {
      FailAll(s);
      return;
    }
    last_ping = Now();
    OnRemoteOutcomes(kv_outcomes_);
    DeliverTokens(out, absl::MakeSpan(logits_));
    kv_outcomes_.clear();
    UpdateLoad(last_ping - t0, out.num_batched_tokens, static_cast<int64_t>(out.chunks.size()));
  }
  EndAll(absl::CancelledError("this worker is shutting down"));
}

}  // namespace shardserve
