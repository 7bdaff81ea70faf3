#include "tools/run_command.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/incremental_detokenizer.h"
#include "model/model_bundle.h"
#include "model/model_resolver.h"
#include "nlohmann/json.hpp"
#include "tools/cli_flags.h"
#include "worker/engine.h"
#include "worker/finish_reason.h"
#include "worker/stop_checker.h"

namespace shardserve {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

absl::StatusOr<std::vector<int32_t>> EncodePrompt(const ModelBundle& model,
                                                  const std::string& prompt, bool chat,
                                                  const std::string& system) {
  if (!chat) return model.tokenizer->Encode(prompt, /*add_special_tokens=*/true);
  if (!model.chat_template.has_value()) {
    return absl::FailedPreconditionError("--chat: this model ships no chat template");
  }
  std::vector<ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system});
  messages.push_back({"user", prompt});
  ASSIGN_OR_RETURN(std::string text,
                   model.chat_template->Apply(messages, /*add_generation_prompt=*/true));
  // The template writes any BOS itself, as Hugging Face's apply_chat_template assumes.
  return model.tokenizer->Encode(text, /*add_special_tokens=*/false);
}

absl::Status Run() {
  const double t_start = Now();
  ASSIGN_OR_RETURN(SamplingParams params, SamplingParamsFromFlags());
  const std::string prompt = absl::GetFlag(FLAGS_prompt);
  if (prompt.empty()) return absl::InvalidArgumentError("--prompt is required");
  const bool json = absl::GetFlag(FLAGS_json);
  ASSIGN_OR_RETURN(const int threads, ThreadsFromFlags());
  ASSIGN_OR_RETURN(const DType kv_cache_dtype, KvCacheDTypeFromFlags());

  ASSIGN_OR_RETURN(std::string path, ResolveModel(absl::GetFlag(FLAGS_model)));
  ASSIGN_OR_RETURN(ModelBundle model, LoadModelBundle(path));
  EngineOptions options;
  options.num_threads = threads;
  options.kv_cache_dtype = kv_cache_dtype;
  ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(model.weights.get(), options));
  const double load_seconds = Now() - t_start;

  ASSIGN_OR_RETURN(
      std::vector<int32_t> prompt_ids,
      EncodePrompt(model, prompt, absl::GetFlag(FLAGS_chat), absl::GetFlag(FLAGS_system)));
  std::vector<int32_t> eos_ids;
  for (int64_t id : engine->config().eos_token_ids) eos_ids.push_back(static_cast<int32_t>(id));
  if (model.tokenizer->eos_id() >= 0 &&
      std::find(eos_ids.begin(), eos_ids.end(), model.tokenizer->eos_id()) == eos_ids.end()) {
    eos_ids.push_back(model.tokenizer->eos_id());
  }
  IncrementalDetokenizer detok(*model.tokenizer, /*skip_special_tokens=*/true);
  StopChecker stop(params, eos_ids);
  absl::Status stream_status;
  std::string text;
  auto on_token = [&](int32_t token) {
    auto delta = detok.Add(token);
    if (!delta.ok()) {
      stream_status = delta.status();
      return false;
    }
    StopChecker::Result r = stop.Append(token, *delta);
    if (!json) {
      std::fwrite(r.text.data(), 1, r.text.size(), stdout);
      std::fflush(stdout);
    }
    return r.finish_reason == FinishReason::kNone;
  };
  ASSIGN_OR_RETURN(GenerationResult result, engine->Generate(prompt_ids, params, on_token));
  RETURN_IF_ERROR(stream_status);
  if (!stop.finished()) {
    // Generate stopped at max_tokens before the checker saw a finish; release what is left.
    std::string rest = detok.Finish();
    StopChecker::Result r = stop.Append(-1, rest);
    (void)r;
  }
  text = stop.output_text();
  const FinishReason reason = stop.finished() ? stop.finish_reason() : FinishReason::kLength;

  const int64_t n = static_cast<int64_t>(result.token_ids.size());
  const double prefill_tps =
      result.prefill_seconds > 0 ? result.prompt_tokens / result.prefill_seconds : 0;
  const double decode_tps =
      n > 1 && result.decode_seconds > 0 ? static_cast<double>(n - 1) / result.decode_seconds : 0;
  if (json) {
    nlohmann::json out;
    out["token_ids"] = result.token_ids;
    out["text"] = text;
    out["finish_reason"] = std::string(FinishReasonName(reason));
    out["prompt_tokens"] = result.prompt_tokens;
    out["completion_tokens"] = n;
    out["prefill_tokens_per_s"] = prefill_tps;
    out["decode_tokens_per_s"] = decode_tps;
    out["load_seconds"] = load_seconds;
    out["threads"] = engine->num_threads();
    if (params.logprobs >= 0) {
      nlohmann::json lps = nlohmann::json::array();
      for (const SampleResult& s : result.samples) {
        nlohmann::json e;
        e["token_id"] = s.token_id;
        e["logprob"] = s.logprob;
        nlohmann::json top = nlohmann::json::array();
        for (const TokenLogprob& t : s.top_logprobs) top.push_back({t.token_id, t.logprob});
        e["top_logprobs"] = top;
        lps.push_back(e);
      }
      out["logprobs"] = lps;
    }
    std::cout << out.dump(/*indent=*/-1, ' ', /*ensure_ascii=*/false,
                          nlohmann::json::error_handler_t::replace)
              << std::endl;
  } else {
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr,
                 "[%lld prompt tokens, %.1f tok/s prefill; %lld generated, %.1f tok/s decode; "
                 "load %.3f s; finish: %s]\n",
                 static_cast<long long>(result.prompt_tokens), prefill_tps,
                 static_cast<long long>(n), decode_tps, load_seconds,
                 std::string(FinishReasonName(reason)).c_str());
  }
  return absl::OkStatus();
}

}  // namespace

int RunCommand() {
  absl::Status st = Run();
  if (!st.ok()) {
    std::fprintf(stderr, "shardserve run: %s\n", st.ToString().c_str());
    return st.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}

}  // namespace shardserve
