// The test environment as Bazel sets it up, for tests and their helpers: where the runfiles and the
// scratch directory are, which model file the environment names, and gRPC deadlines.
//
//   std::ifstream f(TestRunfile("tests/fixtures/tiny/llama/reference.json"));
//   const std::string model = TestGgufPath();   // empty: SHARDSERVE_TEST_GGUF is not set
//   context.set_deadline(TestDeadline(absl::Seconds(30)));
#ifndef SHARDSERVE_COMMON_TESTING_TEST_ENV_H_
#define SHARDSERVE_COMMON_TESTING_TEST_ENV_H_

#include <chrono>
#include <functional>
#include <string>

#include "absl/time/time.h"

namespace shardserve {

// The runfiles path of a file in this repository: $TEST_SRCDIR/shardserve/<relative>, or
// ./shardserve/<relative> when TEST_SRCDIR is not set.
std::string TestRunfile(const std::string& relative);

// The test's scratch directory: $TEST_TMPDIR, or /tmp when it is not set.
std::string TestTempDir();

// The model file named by SHARDSERVE_TEST_GGUF (tools/test.sh sets it to the default model), or
// the empty string when it is not set.
std::string TestGgufPath();

// The time point `d` from now, as gRPC's ClientContext::set_deadline takes it.
std::chrono::system_clock::time_point TestDeadline(absl::Duration d);

// Polls `done` every millisecond until it returns true (then true) or `timeout` has passed
// (then false).
bool TestWaitUntil(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(10));

}  // namespace shardserve

#endif  // SHARDSERVE_COMMON_TESTING_TEST_ENV_H_
