#include "tools/cli_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/thread_pool.h"
#include "worker/kv_cache.h"

ABSL_FLAG(std::string, model, "smollm2",
          "a .gguf file, a Hugging Face checkpoint directory, or the name of a known model "
          "(smollm2)");
ABSL_FLAG(std::string, prompt, "", "the prompt text");
ABSL_FLAG(bool, chat, false, "render the prompt as a user message with the model's chat template");
ABSL_FLAG(std::string, system, "", "with --chat: a system message before the prompt");
ABSL_FLAG(int32_t, max_tokens, 128, "the most tokens to generate");
ABSL_FLAG(int32_t, min_tokens, 0, "tokens to generate before EOS or a stop may end the output");
ABSL_FLAG(double, temperature, 0.0, "sampling temperature; 0 is greedy");
ABSL_FLAG(int32_t, top_k, 0, "keep the k most likely tokens; 0 keeps all");
ABSL_FLAG(double, top_p, 1.0, "nucleus sampling mass in (0, 1]");
ABSL_FLAG(double, min_p, 0.0, "drop tokens below min_p times the top probability");
ABSL_FLAG(double, repetition_penalty, 1.0, "penalty for tokens already in prompt or output");
ABSL_FLAG(double, presence_penalty, 0.0, "penalty for tokens present in the output");
ABSL_FLAG(double, frequency_penalty, 0.0, "penalty per occurrence in the output");
ABSL_FLAG(int64_t, seed, -1, "random seed for sampling; -1 draws one");
ABSL_FLAG(bool, ignore_eos, false, "keep generating past the end-of-sequence token");
ABSL_FLAG(std::string, stop, "", "stop strings, separated by '|'");
ABSL_FLAG(int32_t, logprobs, -1, "with --json: return this many top logprobs per token");
ABSL_FLAG(int32_t, threads, 0, "CPU threads; 0 uses every CPU available to the process");
ABSL_FLAG(std::string, kv_cache_dtype, "f16",
          "KV cache element type: f16 (llama.cpp's default; half the memory and bandwidth per "
          "token) or f32 (exact)");
ABSL_FLAG(bool, json, false, "print one JSON object instead of streaming text");
ABSL_FLAG(std::vector<std::string>, stop_token_ids, {},
          "token ids that end the output besides EOS, separated by ','");
ABSL_FLAG(bool, include_stop_str_in_output, false,
          "keep the matched stop string at the end of the output");
ABSL_FLAG(std::string, server, "127.0.0.1:7000", "HOST:PORT of the coordinator");
ABSL_FLAG(absl::Duration, timeout, absl::ZeroDuration(),
          "status: how long to wait for the coordinator's answer (default 5s); generate: the "
          "call's deadline (default 10m); 0 means the command's default");

namespace shardserve {

absl::StatusOr<SamplingParams> SamplingParamsFromFlags() {
  SamplingParams p;
  p.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  p.min_tokens = absl::GetFlag(FLAGS_min_tokens);
  p.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  p.top_k = absl::GetFlag(FLAGS_top_k);
  p.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  p.min_p = static_cast<float>(absl::GetFlag(FLAGS_min_p));
  p.repetition_penalty = static_cast<float>(absl::GetFlag(FLAGS_repetition_penalty));
  p.presence_penalty = static_cast<float>(absl::GetFlag(FLAGS_presence_penalty));
  p.frequency_penalty = static_cast<float>(absl::GetFlag(FLAGS_frequency_penalty));
  const int64_t seed = absl::GetFlag(FLAGS_seed);
  if (seed >= 0) p.seed = static_cast<uint64_t>(seed);
  p.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  const std::string stop = absl::GetFlag(FLAGS_stop);
  if (!stop.empty()) p.stop = absl::StrSplit(stop, '|', absl::SkipEmpty());
  p.logprobs = absl::GetFlag(FLAGS_logprobs);
  p.include_stop_str_in_output = absl::GetFlag(FLAGS_include_stop_str_in_output);
  for (const std::string& id : absl::GetFlag(FLAGS_stop_token_ids)) {
    int32_t value = 0;
    if (!absl::SimpleAtoi(id, &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--stop_token_ids: '", id, "' is not a token id"));
    }
    p.stop_token_ids.push_back(value);
  }
  RETURN_IF_ERROR(p.Validate());
  return p;
}

absl::StatusOr<int> ThreadsFromFlags() {
  const int32_t threads = absl::GetFlag(FLAGS_threads);
  const absl::Status valid = ThreadPool::ValidateNumThreads(threads);
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("--threads ", valid.message()));
  return threads;
}

absl::StatusOr<DType> KvCacheDTypeFromFlags() {
  return ParseKvCacheDType(absl::GetFlag(FLAGS_kv_cache_dtype));
}

absl::Duration TimeoutOr(absl::Duration command_default) {
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  return timeout > absl::ZeroDuration() ? timeout : command_default;
}

}  // namespace shardserve
