// Command-line flags shared by the shardserve subcommands.
#ifndef SHARDSERVE_TOOLS_CLI_FLAGS_H_
#define SHARDSERVE_TOOLS_CLI_FLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kernels/dtype.h"
#include "worker/sampling_params.h"

ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(std::string, prompt);
ABSL_DECLARE_FLAG(bool, chat);
ABSL_DECLARE_FLAG(std::string, system);
ABSL_DECLARE_FLAG(int32_t, max_tokens);
ABSL_DECLARE_FLAG(int32_t, min_tokens);
ABSL_DECLARE_FLAG(double, temperature);
ABSL_DECLARE_FLAG(int32_t, top_k);
ABSL_DECLARE_FLAG(double, top_p);
ABSL_DECLARE_FLAG(double, min_p);
ABSL_DECLARE_FLAG(double, repetition_penalty);
ABSL_DECLARE_FLAG(double, presence_penalty);
ABSL_DECLARE_FLAG(double, frequency_penalty);
ABSL_DECLARE_FLAG(int64_t, seed);
ABSL_DECLARE_FLAG(bool, ignore_eos);
ABSL_DECLARE_FLAG(std::string, stop);
ABSL_DECLARE_FLAG(int32_t, logprobs);
ABSL_DECLARE_FLAG(int32_t, threads);
// run, bench-engine and serve (each worker's).
ABSL_DECLARE_FLAG(std::string, kv_cache_dtype);
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(std::vector<std::string>, stop_token_ids);
ABSL_DECLARE_FLAG(bool, include_stop_str_in_output);
// The commands that talk to a cluster (status, generate, bench).
ABSL_DECLARE_FLAG(std::string, server);
ABSL_DECLARE_FLAG(absl::Duration, timeout);

namespace shardserve {

// Builds SamplingParams from the sampling flags and validates them.
absl::StatusOr<SamplingParams> SamplingParamsFromFlags();

// --threads, validated (ThreadPool::ValidateNumThreads): 0 (every available CPU) or a count up to
// ThreadPool::MaxThreads(); else InvalidArgument naming the flag.
absl::StatusOr<int> ThreadsFromFlags();

// --kv_cache_dtype, validated: f16 (the default) or f32; else InvalidArgument naming the flag and
// the allowed values.
absl::StatusOr<DType> KvCacheDTypeFromFlags();

// --timeout when given (non-zero), else `command_default`: each command has its own sensible
// bound (status waits seconds for one answer, generate minutes for a whole generation).
absl::Duration TimeoutOr(absl::Duration command_default);

}  // namespace shardserve

#endif  // SHARDSERVE_TOOLS_CLI_FLAGS_H_
