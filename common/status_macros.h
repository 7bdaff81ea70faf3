// Status propagation macros for absl::Status and absl::StatusOr (Abseil 20220623 ships none).
//
//   absl::StatusOr<Foo> MakeFoo();
//   absl::Status Use() {
//     ASSIGN_OR_RETURN(Foo foo, MakeFoo());
//     RETURN_IF_ERROR(foo.Check());
//     return absl::OkStatus();
//   }
#ifndef SHARDSERVE_COMMON_STATUS_MACROS_H_
#define SHARDSERVE_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SHARDSERVE_CONCAT_INNER_(a, b) a##b
#define SHARDSERVE_CONCAT_(a, b) SHARDSERVE_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                                \
  do {                                                       \
    const absl::Status shardserve_status_ = (expr);          \
    if (!shardserve_status_.ok()) return shardserve_status_; \
  } while (0)

// Evaluates `rexpr` (a StatusOr); returns its status on error, else moves the value into `lhs`.
// `lhs` may be a declaration ("Foo foo") or an existing variable.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  ASSIGN_OR_RETURN_IMPL_(SHARDSERVE_CONCAT_(shardserve_statusor_, __LINE__), lhs, rexpr)

#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                           \
  if (!statusor.ok()) return statusor.status();      \
  lhs = std::move(statusor).value()

#endif  // SHARDSERVE_COMMON_STATUS_MACROS_H_
