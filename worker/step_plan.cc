#include "worker/step_plan.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace shardserve {
namespace {

constexpr uint32_t kMagic = 0x31505353;  // "SSP1" little-endian

template <typename T>
void PutScalar(std::string* out, T v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(v));
}

template <typename T>
void PutArray(std::string* out, const std::vector<T>& v) {
  PutScalar<uint32_t>(out, static_cast<uint32_t>(v.size()));
  out->append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

class Reader {
 public:
  explicit Reader(absl::string_view bytes) : bytes_(bytes) {}

  template <typename T>
  absl::Status Scalar(T* v, const char* what) {
    if (bytes_.size() < sizeof(T)) return Truncated(what);
    std::memcpy(v, bytes_.data(), sizeof(T));
    bytes_.remove_prefix(sizeof(T));
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Array(std::vector<T>* v, const char* what) {
    uint32_t n = 0;
    RETURN_IF_ERROR(Scalar(&n, what));
    if (bytes_.size() / sizeof(T) < n) return Truncated(what);
    v->resize(n);
    std::memcpy(v->data(), bytes_.data(), n * sizeof(T));
    bytes_.remove_prefix(n * sizeof(T));
    return absl::OkStatus();
  }

  size_t remaining() const { return bytes_.size(); }

 private:
  static absl::Status Truncated(const char* what) {
    return absl::InvalidArgumentError(absl::StrCat("step plan truncated in ", what));
  }
  absl::string_view bytes_;
};

absl::Status CheckIndptr(const std::vector<int32_t>& indptr, size_t num_seqs, int64_t total,
                         const char* name) {
  if (indptr.size() != num_seqs + 1) {
    return absl::InvalidArgumentError(absl::StrCat("step plan: ", name, " has ", indptr.size(),
                                                   " entries for ", num_seqs, " sequences"));
  }
  if (indptr.front() != 0 || indptr.back() != total) {
    return absl::InvalidArgumentError(
        absl::StrCat("step plan: ", name, " must run from 0 to ", total));
  }
  for (size_t i = 1; i < indptr.size(); ++i) {
    if (indptr[i] < indptr[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat("step plan: ", name, " decreases at ", i));
    }
  }
  return absl::OkStatus();
}

}  // namespace

ForwardBatch StepPlan::AsForwardBatch() const {
  ForwardBatch b;
  b.token_ids = token_ids;
  b.positions = positions;
  b.slot_mapping = slot_mapping;
  b.attention.qo_indptr = qo_indptr;
  b.attention.kv_indptr = kv_indptr;
  b.attention.kv_indices = kv_indices;
  b.attention.kv_lens = kv_lens;
  b.logits_rows = logits_rows;
  return b;
}

std::string SerializeStepPlan(const StepPlan& plan) {
  std::string out;
  PutScalar<uint32_t>(&out, kMagic);
  PutScalar<uint32_t>(&out, static_cast<uint32_t>(plan.command));
  PutArray(&out, plan.token_ids);
  PutArray(&out, plan.positions);
  PutArray(&out, plan.slot_mapping);
  PutArray(&out, plan.qo_indptr);
  PutArray(&out, plan.kv_indptr);
  PutArray(&out, plan.kv_indices);
  PutArray(&out, plan.kv_lens);
  PutArray(&out, plan.logits_rows);
  PutScalar<uint32_t>(&out, static_cast<uint32_t>(plan.kv_work.size()));
  out.append(plan.kv_work);
  return out;
}

absl::StatusOr<StepPlan> ParseStepPlan(absl::string_view bytes, const StepPlanLimits& limits) {
  Reader r(bytes);
  uint32_t magic = 0, command = 0;
  RETURN_IF_ERROR(r.Scalar(&magic, "magic"));
  if (magic != kMagic) return absl::InvalidArgumentError("step plan: bad magic");
  RETURN_IF_ERROR(r.Scalar(&command, "command"));
  StepPlan plan;
  plan.command = static_cast<StepPlan::Command>(command);
  RETURN_IF_ERROR(r.Array(&plan.token_ids, "token_ids"));
  RETURN_IF_ERROR(r.Array(&plan.positions, "positions"));
  RETURN_IF_ERROR(r.Array(&plan.slot_mapping, "slot_mapping"));
  RETURN_IF_ERROR(r.Array(&plan.qo_indptr, "qo_indptr"));
  RETURN_IF_ERROR(r.Array(&plan.kv_indptr, "kv_indptr"));
  RETURN_IF_ERROR(r.Array(&plan.kv_indices, "kv_indices"));
  RETURN_IF_ERROR(r.Array(&plan.kv_lens, "kv_lens"));
  RETURN_IF_ERROR(r.Array(&plan.logits_rows, "logits_rows"));
  std::vector<char> kv_work;
  RETURN_IF_ERROR(r.Array(&kv_work, "kv_work"));
  plan.kv_work.assign(kv_work.begin(), kv_work.end());
  if (r.remaining() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("step plan: ", r.remaining(), " trailing bytes"));
  }
  RETURN_IF_ERROR(ValidateStepPlan(plan, limits));
  return plan;
}

absl::Status ValidateStepPlan(const StepPlan& plan, const StepPlanLimits& limits) {
  switch (plan.command) {
    case StepPlan::Command::kRun:
      break;
    case StepPlan::Command::kStop:
    case StepPlan::Command::kPing:
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("step plan: unknown command ", static_cast<uint32_t>(plan.command)));
  }
  const int64_t num_tokens = static_cast<int64_t>(plan.token_ids.size());
  if (num_tokens == 0 && !plan.kv_work.empty()) {
    const bool no_batch = plan.positions.empty() && plan.slot_mapping.empty() &&
                          plan.kv_lens.empty() && plan.kv_indices.empty() &&
                          plan.logits_rows.empty() && plan.qo_indptr.size() <= 1 &&
                          plan.kv_indptr.size() <= 1;
    if (no_batch) return absl::OkStatus();
    return absl::InvalidArgumentError("step plan: a batch without tokens");
  }
  if (num_tokens == 0) return absl::InvalidArgumentError("step plan: no tokens");
  if (plan.positions.size() != plan.token_ids.size() ||
      plan.slot_mapping.size() != plan.token_ids.size()) {
    return absl::InvalidArgumentError(
        "step plan: token_ids, positions and slot_mapping differ in length");
  }
  const size_t num_seqs = plan.kv_lens.size();
  if (num_seqs == 0) return absl::InvalidArgumentError("step plan: no sequences");
  RETURN_IF_ERROR(CheckIndptr(plan.qo_indptr, num_seqs, num_tokens, "qo_indptr"));
  RETURN_IF_ERROR(CheckIndptr(plan.kv_indptr, num_seqs,
                              static_cast<int64_t>(plan.kv_indices.size()), "kv_indptr"));
  for (size_t s = 0; s < num_seqs; ++s) {
    const int64_t blocks = plan.kv_indptr[s + 1] - plan.kv_indptr[s];
    const int64_t queries = plan.qo_indptr[s + 1] - plan.qo_indptr[s];
    if (plan.kv_lens[s] < queries || plan.kv_lens[s] > blocks * limits.block_size) {
      return absl::InvalidArgumentError(absl::StrCat("step plan: sequence ", s, " attends over ",
                                                     plan.kv_lens[s], " tokens with ", queries,
                                                     " queries in ", blocks, " blocks"));
    }
  }
  for (int32_t b : plan.kv_indices) {
    if (b < 0 || b >= limits.num_blocks) {
      return absl::InvalidArgumentError(
          absl::StrCat("step plan: block ", b, " outside [0, ", limits.num_blocks, ")"));
    }
  }
  const int64_t num_slots = limits.num_blocks * limits.block_size;
  for (int64_t i = 0; i < num_tokens; ++i) {
    if (plan.slot_mapping[i] < 0 || plan.slot_mapping[i] >= num_slots) {
      return absl::InvalidArgumentError(
          absl::StrCat("step plan: slot ", plan.slot_mapping[i], " outside [0, ", num_slots, ")"));
    }
    if (plan.positions[i] < 0) return absl::InvalidArgumentError("step plan: negative position");
    if (plan.token_ids[i] < 0 || plan.token_ids[i] >= limits.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("step plan: token id ", plan.token_ids[i], " outside the vocabulary"));
    }
  }
  for (int32_t row : plan.logits_rows) {
    if (row < 0 || row >= num_tokens) {
      return absl::InvalidArgumentError(
          absl::StrCat("step plan: logits row ", row, " outside [0, ", num_tokens, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace shardserve

namespace shardserve {

void PlanSequenceStep(const BlockAllocator& blocks, int64_t seq_id,
                      absl::Span<const int32_t> tokens, int64_t start_position, StepPlan* plan) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t block_size = blocks.block_size();
  const std::vector<int32_t>& table = blocks.BlockTable(seq_id);
  const int64_t kv_len = start_position + n;
  const int64_t num_blocks = (kv_len + block_size - 1) / block_size;
  plan->command = StepPlan::Command::kRun;
  plan->token_ids.assign(tokens.begin(), tokens.end());
  plan->positions.resize(n);
  for (int64_t i = 0; i < n; ++i) plan->positions[i] = static_cast<int32_t>(start_position + i);
  plan->slot_mapping.clear();
  blocks.AppendSlotMapping(seq_id, static_cast<int>(start_position), static_cast<int>(kv_len),
                           &plan->slot_mapping);
  plan->qo_indptr = {0, static_cast<int32_t>(n)};
  plan->kv_indptr = {0, static_cast<int32_t>(num_blocks)};
  plan->kv_indices.assign(table.begin(), table.begin() + num_blocks);
  plan->kv_lens = {static_cast<int32_t>(kv_len)};
  plan->logits_rows = {static_cast<int32_t>(n - 1)};
}

}  // namespace shardserve
