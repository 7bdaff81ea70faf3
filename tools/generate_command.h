// `shardserve generate`: one request to a cluster's public API (InferenceService.Generate),
// streamed to stdout as it arrives.
//
//   shardserve generate --server=127.0.0.1:7000 --prompt="Hello" [--chat] [--max_tokens=N] ...
//   shardserve generate --server=127.0.0.1:7000 --token_ids=1,2,3 --json
//
// Text mode writes each text delta as it arrives (flushed), then a newline. --json prints one
// object at the end instead: token_ids, text, finish_reason, stop_reason, ttft_ms (client side:
// the request sent to the first response carrying a token), prompt_tokens, completion_tokens,
// cached_tokens, e2e_ms. Exit codes: 0 on success; 1 when the call ends with a non-OK status
// (printed on stderr with the gRPC code name); 2 for bad flags.
#ifndef SHARDSERVE_TOOLS_GENERATE_COMMAND_H_
#define SHARDSERVE_TOOLS_GENERATE_COMMAND_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "proto/shardserve/v1/inference.pb.h"

namespace shardserve {

// Builds the request the flags describe: the input from --token_ids, else --prompt (as chat
// messages with --chat, led by --system when given), the sampling flags (tools/cli_flags) and
// --request_id. INVALID_ARGUMENT for a missing or malformed input or bad sampling flags.
absl::StatusOr<v1::GenerateRequest> GenerateRequestFromFlags();

// Calls Generate on `server` with a deadline of `timeout` from now, writes the output as the
// command does (streamed text, or one JSON object when `json`), and returns the exit code.
// Another thread may end the call early with `context->TryCancel()`; `context` must be fresh and
// outlive the call. Runs on the calling thread.
int StreamGenerate(const std::string& server, const v1::GenerateRequest& request, bool json,
                   absl::Duration timeout, grpc::ClientContext* context);

// Reads the generate flags and returns the process exit code.
int GenerateCommand();

}  // namespace shardserve

#endif  // SHARDSERVE_TOOLS_GENERATE_COMMAND_H_
