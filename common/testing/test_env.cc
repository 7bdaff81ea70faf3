#include "common/testing/test_env.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace shardserve {

std::string TestRunfile(const std::string& relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/shardserve/", relative);
}

std::string TestTempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

std::string TestGgufPath() {
  const char* path = std::getenv("SHARDSERVE_TEST_GGUF");
  return path != nullptr ? path : "";
}

std::chrono::system_clock::time_point TestDeadline(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

bool TestWaitUntil(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() >= give_up) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

}  // namespace shardserve
