#include "worker/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace shardserve {
namespace {

const char* StateName(SequenceState state) {
  switch (state) {
    case SequenceState::kWaiting:
      return "waiting";
    case SequenceState::kRunning:
      return "running";
  }
  return "unknown";
}

}  // namespace

Scheduler::Scheduler(BlockAllocator* blocks, const SchedulerOptions& options)
    : blocks_(blocks), options_(options) {
  CHECK(blocks_ != nullptr);
  CHECK_GE(options_.max_num_seqs, 1);
  CHECK_GE(options_.max_num_batched_tokens, 1);
  CHECK_GE(options_.max_waiting, 0);
}

absl::Status Scheduler::Add(int64_t seq_id, std::vector<int32_t> prompt) {
  if (prompt.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("sequence ", seq_id, " has an empty prompt"));
  }
  const int num_blocks = blocks_->BlocksForTokens(static_cast<int>(prompt.size()));
  if (num_blocks > blocks_->num_blocks()) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence ", seq_id, " has ", prompt.size(), " prompt tokens, needing ",
                     num_blocks, " KV blocks; the cache has ", blocks_->num_blocks()));
  }
  if (seqs_.contains(seq_id)) {
    return absl::AlreadyExistsError(absl::StrCat("sequence ", seq_id, " already exists"));
  }
  if (num_waiting() >= options_.max_waiting) {
    return absl::ResourceExhaustedError(
        absl::StrCat(num_waiting(), " sequences are already waiting"));
  }
  Sequence seq;
  seq.num_prompt_tokens = static_cast<int32_t>(prompt.size());
  seq.tokens = std::move(prompt);
  seqs_.emplace(seq_id, std::move(seq));
  waiting_.push_back(seq_id);
  return absl::OkStatus();
}

absl::Status Scheduler::AddComputed(int64_t seq_id, std::vector<int32_t> prompt,
                                    int32_t first_token) {
  if (seqs_.contains(seq_id)) {
    return absl::AlreadyExistsError(absl::StrCat("sequence ", seq_id, " already exists"));
  }
  if (prompt.empty() || !blocks_->HasSequence(seq_id) ||
      blocks_->NumTokens(seq_id) != static_cast<int>(prompt.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sequence ", seq_id, " needs KV blocks holding its ", prompt.size(), " prompt tokens"));
  }
  Sequence seq;
  seq.num_prompt_tokens = static_cast<int32_t>(prompt.size());
  seq.tokens = std::move(prompt);
  seq.num_computed_tokens = seq.num_prompt_tokens;
  seq.num_reserved_tokens = seq.num_prompt_tokens;
  blocks_->MarkComputed(seq_id, seq.num_prompt_tokens);
  auto [it, inserted] = seqs_.emplace(seq_id, std::move(seq));
  SetState(seq_id, it->second, SequenceState::kRunning);
  running_.push_back(seq_id);
  AppendToken(seq_id, first_token);
  return absl::OkStatus();
}

SchedulerOutput Scheduler::Schedule() {
  SchedulerOutput out;
  int32_t budget = options_.max_num_batched_tokens;
  ScheduleRunning(&budget, &out);
  // A preemption means blocks ran short this step; admitting now would readmit the victim (it
  // is at the front of the queue) in the step that preempted it, or thrash.
  if (out.preempted.empty()) AdmitWaiting(&budget, &out);
  return out;
}

void Scheduler::ScheduleRunning(int32_t* budget, SchedulerOutput* out) {
  // NOTES: PreemptLast takes running_.back() while this pass walks running_ from the front, and
  // prefill chunks need no new slots (their blocks came with admission), so a victim is never a
  // sequence already scheduled this step: only later ones, or the one being scheduled, which is
  // then skipped (it was the last, so the pass ends).
  for (size_t i = 0; i < running_.size() && *budget > 0;) {
    const int64_t seq_id = running_[i];
    Sequence& seq = GetSequence(seq_id);
    if (seq.num_tokens() - seq.num_computed_tokens != 1) {
      ++i;
      continue;
    }
    if (!ReserveSlots(seq_id, seq, out)) break;
    EmitChunk(seq_id, seq, 1, out);
    --*budget;
    ++i;
  }
  for (int64_t seq_id : running_) {
    if (*budget == 0) break;
    Sequence& seq = GetSequence(seq_id);
    // 0 remaining: the caller has not yet appended this sequence's sampled token.
    const int32_t remaining = seq.num_tokens() - seq.num_computed_tokens;
    if (remaining <= 1) continue;
    const int32_t n = std::min(remaining, *budget);
    EmitChunk(seq_id, seq, n, out);
    *budget -= n;
  }
}

void Scheduler::AdmitWaiting(int32_t* budget, SchedulerOutput* out) {
  while (*budget > 0 && !waiting_.empty() && num_running() < options_.max_num_seqs) {
    const int64_t seq_id = waiting_.front();
    Sequence& seq = GetSequence(seq_id);
    absl::StatusOr<int> num_cached = blocks_->Allocate(seq_id, seq.tokens);
    // Strict FCFS: a sequence that does not fit holds back everyone behind it, so long prompts
    // are not starved by a stream of short ones.
    if (absl::IsResourceExhausted(num_cached.status())) return;
    CHECK(num_cached.ok()) << num_cached.status();
    waiting_.pop_front();
    SetState(seq_id, seq, SequenceState::kRunning);
    running_.push_back(seq_id);
    seq.num_computed_tokens = *num_cached;
    // After a preemption the cached prefix may reach into the output.
    seq.num_cached_tokens = std::min(*num_cached, seq.num_prompt_tokens);
    seq.num_reserved_tokens = seq.num_tokens();
    const int32_t n = std::min(seq.num_tokens() - seq.num_computed_tokens, *budget);
    EmitChunk(seq_id, seq, n, out);
    *budget -= n;
  }
}

bool Scheduler::ReserveSlots(int64_t seq_id, Sequence& seq, SchedulerOutput* out) {
  while (seq.num_reserved_tokens < seq.num_tokens()) {
    const absl::Status status = blocks_->AppendTokens(
        seq_id, absl::MakeConstSpan(seq.tokens).subspan(seq.num_reserved_tokens));
    if (status.ok()) {
      seq.num_reserved_tokens = seq.num_tokens();
      break;
    }
    CHECK(absl::IsResourceExhausted(status)) << status;
    const int64_t victim = PreemptLast();
    out->preempted.push_back(victim);
    if (victim == seq_id) return false;
  }
  return true;
}

void Scheduler::EmitChunk(int64_t seq_id, Sequence& seq, int32_t num_tokens, SchedulerOutput* out) {
  const int32_t start = seq.num_computed_tokens;
  const int32_t end = start + num_tokens;
  CHECK_GT(num_tokens, 0);
  CHECK_LE(end, seq.num_reserved_tokens) << "sequence " << seq_id << " has no KV slots";
  blocks_->MarkComputed(seq_id, end);
  seq.num_computed_tokens = end;
  out->chunks.push_back({seq_id, start, num_tokens, end == seq.num_tokens()});
  out->num_batched_tokens += num_tokens;
}

int64_t Scheduler::PreemptLast() {
  CHECK(!running_.empty());
  const int64_t seq_id = running_.back();
  running_.pop_back();
  Sequence& seq = GetSequence(seq_id);
  blocks_->Free(seq_id);
  seq.num_computed_tokens = 0;
  seq.num_reserved_tokens = 0;
  SetState(seq_id, seq, SequenceState::kWaiting);
  waiting_.push_front(seq_id);
  ++num_preemptions_;
  return seq_id;
}

void Scheduler::AppendToken(int64_t seq_id, int32_t token_id) {
  Sequence& seq = GetSequence(seq_id);
  CHECK(seq.state == SequenceState::kRunning)
      << "sequence " << seq_id << " is " << StateName(seq.state);
  CHECK_EQ(seq.num_computed_tokens, seq.num_tokens())
      << "sequence " << seq_id << " has tokens left to compute";
  CHECK_LE(blocks_->BlocksForTokens(seq.num_tokens() + 1), blocks_->num_blocks())
      << "sequence " << seq_id << " would outgrow the KV cache";
  seq.tokens.push_back(token_id);
}

bool Scheduler::Finish(int64_t seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return false;
  if (it->second.state == SequenceState::kRunning) {
    auto pos = std::find(running_.begin(), running_.end(), seq_id);
    CHECK(pos != running_.end()) << "running sequence " << seq_id << " is not in the batch";
    running_.erase(pos);
  } else {
    auto pos = std::find(waiting_.begin(), waiting_.end(), seq_id);
    CHECK(pos != waiting_.end()) << "waiting sequence " << seq_id << " is not queued";
    waiting_.erase(pos);
  }
  blocks_->Free(seq_id);
  seqs_.erase(it);
  return true;
}

SequenceState Scheduler::State(int64_t seq_id) const { return GetSequence(seq_id).state; }

const std::vector<int32_t>& Scheduler::Tokens(int64_t seq_id) const {
  return GetSequence(seq_id).tokens;
}

int32_t Scheduler::NumPromptTokens(int64_t seq_id) const {
  return GetSequence(seq_id).num_prompt_tokens;
}

int32_t Scheduler::NumComputedTokens(int64_t seq_id) const {
  return GetSequence(seq_id).num_computed_tokens;
}

int32_t Scheduler::NumCachedTokens(int64_t seq_id) const {
  return GetSequence(seq_id).num_cached_tokens;
}

const Scheduler::Sequence& Scheduler::GetSequence(int64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  CHECK(it != seqs_.end()) << "unknown sequence " << seq_id;
  return it->second;
}

Scheduler::Sequence& Scheduler::GetSequence(int64_t seq_id) {
  auto it = seqs_.find(seq_id);
  CHECK(it != seqs_.end()) << "unknown sequence " << seq_id;
  return it->second;
}

void Scheduler::SetState(int64_t seq_id, Sequence& seq, SequenceState next) {
  const bool allowed = (seq.state == SequenceState::kWaiting && next == SequenceState::kRunning) ||
                       (seq.state == SequenceState::kRunning && next == SequenceState::kWaiting);
  CHECK(allowed) << "sequence " << seq_id << ": " << StateName(seq.state) << " -> "
                 << StateName(next);
  seq.state = next;
}

}  // namespace shardserve
