#include "worker/sampling_params.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace shardserve {
namespace {

absl::Status OutOfRange(const char* field, const char* range, float value) {
  return absl::InvalidArgumentError(absl::StrCat(field, " must be ", range, ", got ", value));
}

absl::Status OutOfRange(const char* field, const char* range, int64_t value) {
  return absl::InvalidArgumentError(absl::StrCat(field, " must be ", range, ", got ", value));
}

}  // namespace

absl::Status SamplingParams::Validate() const {
  if (!std::isfinite(temperature) || temperature < 0.0f) {
    return OutOfRange("temperature", "finite and >= 0", temperature);
  }
  if (top_k < -1) {
    return OutOfRange("top_k", "0 or -1 (disabled) or >= 1", int64_t{top_k});
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return OutOfRange("top_p", "in (0, 1]", top_p);
  }
  if (!(min_p >= 0.0f && min_p <= 1.0f)) {
    return OutOfRange("min_p", "in [0, 1]", min_p);
  }
  if (!std::isfinite(repetition_penalty) || !(repetition_penalty > 0.0f)) {
    return OutOfRange("repetition_penalty", "finite and > 0", repetition_penalty);
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return OutOfRange("presence_penalty", "in [-2, 2]", presence_penalty);
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return OutOfRange("frequency_penalty", "in [-2, 2]", frequency_penalty);
  }
  if (max_tokens < 1) {
    return OutOfRange("max_tokens", ">= 1", int64_t{max_tokens});
  }
  if (min_tokens < 0 || min_tokens > max_tokens) {
    return OutOfRange("min_tokens", absl::StrCat("in [0, max_tokens=", max_tokens, "]").c_str(),
                      int64_t{min_tokens});
  }
  for (int32_t id : stop_token_ids) {
    if (id < 0) return OutOfRange("stop_token_ids entries", ">= 0", int64_t{id});
  }
  if (stop.size() > kMaxStopStrings) {
    return absl::InvalidArgumentError(
        absl::StrCat("stop must hold at most ", kMaxStopStrings, " strings, got ", stop.size()));
  }
  for (size_t i = 0; i < stop.size(); ++i) {
    if (stop[i].empty() || stop[i].size() > kMaxStopStringBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stop[", i, "] must be 1 to ", kMaxStopStringBytes, " bytes long, got ", stop[i].size()));
    }
  }
  if (logprobs < -1 || logprobs > kMaxLogprobs) {
    return OutOfRange("logprobs", absl::StrCat("in [0, ", kMaxLogprobs, "] or -1 (none)").c_str(),
                      int64_t{logprobs});
  }
  return absl::OkStatus();
}

}  // namespace shardserve
