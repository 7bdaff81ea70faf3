#include "worker/stop_checker.h"

#include <algorithm>

#include "glog/logging.h"

namespace shardserve {
namespace {

bool Contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

StopChecker::StopChecker(const SamplingParams& params, absl::Span<const int32_t> eos_token_ids)
    : max_tokens_(params.max_tokens),
      min_tokens_(params.min_tokens),
      ignore_eos_(params.ignore_eos),
      include_stop_str_(params.include_stop_str_in_output),
      eos_token_ids_(eos_token_ids.begin(), eos_token_ids.end()),
      stop_token_ids_(params.stop_token_ids),
      stop_strings_(params.stop) {}

std::string StopChecker::Release(size_t n) {
  std::string out = pending_.substr(0, n);
  released_ += out;
  pending_.erase(0, n);
  return out;
}

StopChecker::Result StopChecker::Finish(FinishReason reason, size_t release_bytes) {
  finish_reason_ = reason;
  Result result;
  result.finish_reason = reason;
  result.text = Release(release_bytes);
  pending_.clear();
  return result;
}

size_t StopChecker::HeldBackBytes() const {
  size_t held = 0;
  const absl::string_view pending(pending_);
  for (const std::string& stop : stop_strings_) {
    const size_t longest = std::min(stop.size() - 1, pending.size());
    for (size_t len = longest; len > held; --len) {
      if (pending.substr(pending.size() - len) == absl::string_view(stop).substr(0, len)) {
        held = len;
        break;
      }
    }
  }
  return held;
}

StopChecker::Result StopChecker::Append(int32_t token_id, absl::string_view text_delta) {
  CHECK(!finished()) << "Append after the sequence finished";
  ++num_output_tokens_;
  const bool may_stop = num_output_tokens_ > min_tokens_;

  if (may_stop) {
    const bool is_eos = !ignore_eos_ && Contains(eos_token_ids_, token_id);
    if (is_eos || Contains(stop_token_ids_, token_id)) {
      if (include_stop_str_) pending_.append(text_delta.data(), text_delta.size());
      Result result = Finish(FinishReason::kStop, pending_.size());
      if (!is_eos) result.stop_token_id = token_id;
      return result;
    }
  }

  const size_t old_size = pending_.size();
  pending_.append(text_delta.data(), text_delta.size());

  if (may_stop && !text_delta.empty() && !stop_strings_.empty()) {
    // A match must end inside the new text; earlier positions were searched on earlier tokens.
    const absl::string_view pending(pending_);
    size_t best_pos = absl::string_view::npos;
    const std::string* best = nullptr;
    for (const std::string& stop : stop_strings_) {
      const size_t from = old_size >= stop.size() ? old_size - stop.size() + 1 : 0;
      const size_t pos = pending.find(stop, from);
      if (pos != absl::string_view::npos && pos < best_pos) {
        best_pos = pos;
        best = &stop;
      }
    }
    if (best != nullptr) {
      Result result =
          Finish(FinishReason::kStop, include_stop_str_ ? best_pos + best->size() : best_pos);
      result.stop_string = *best;
      return result;
    }
  }

  if (num_output_tokens_ >= max_tokens_) return Finish(FinishReason::kLength, pending_.size());

  Result result;
  result.text = Release(pending_.size() - HeldBackBytes());
  return result;
}

}  // namespace shardserve
