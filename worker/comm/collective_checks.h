// Test support: checks any Communicator against known values, run by every rank of a group
// (in the same order on every rank, as the interface requires).
#ifndef SHARDSERVE_WORKER_COMM_COLLECTIVE_CHECKS_H_
#define SHARDSERVE_WORKER_COMM_COLLECTIVE_CHECKS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "kernels/communicator.h"

namespace shardserve {

inline absl::Status ExpectTrue(bool condition, const std::string& what) {
  return condition ? absl::OkStatus() : absl::InternalError(absl::StrCat("expected: ", what));
}

template <typename T>
absl::Status ExpectEq(const T& actual, const T& expected, const std::string& what) {
  if (actual == expected) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": got ", actual, ", expected ", expected));
}

// Every collective and Send/Recv (a ring) on small, odd and large sizes, with exact expected
// values; also checks that an all-reduce of arbitrary floats ends bit-identical on every rank.
absl::Status RunCollectiveChecks(Communicator& comm);

// The next operation must fail (DEADLINE_EXCEEDED or UNAVAILABLE) within `bound`, and the one
// after it must fail at once.
absl::Status ExpectFailsWithinTimeout(Communicator& comm, absl::Duration bound);

}  // namespace shardserve

#endif  // SHARDSERVE_WORKER_COMM_COLLECTIVE_CHECKS_H_
