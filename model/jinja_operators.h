// Python's operators on Jinja values: arithmetic (+ - * / // % **), string concatenation (~),
// comparisons, membership (in) and slicing. Results and errors follow CPython: 7 / 2 == 3.5,
// -7 // 2 == -4, -7 % 3 == 2, 'ab' * 2 == 'abab', 'a' + 1 is a TypeError, and any arithmetic or
// ordering on an Undefined fails with the Undefined's message. Integers are 64-bit; overflow is
// an error rather than a silent wrap.
#ifndef SHARDSERVE_MODEL_JINJA_OPERATORS_H_
#define SHARDSERVE_MODEL_JINJA_OPERATORS_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "model/jinja_value.h"

namespace shardserve {
namespace jinja {

// op: + - * / // % ** ~
absl::StatusOr<Value> BinaryOp(const std::string& op, const Value& left, const Value& right);
// op: - +
absl::StatusOr<Value> UnaryOp(const std::string& op, const Value& operand);
// op: == != < <= > >= in notin
absl::StatusOr<bool> CompareOp(const std::string& op, const Value& left, const Value& right);
// `item in container`.
absl::StatusOr<bool> Contains(const Value& container, const Value& item);
// Python's ordering for sorting: negative, zero or positive; TypeError across unordered types.
absl::StatusOr<int> ThreeWayCompare(const Value& left, const Value& right);
// object[start:stop:step] for lists, tuples and strings; unset bounds are Python's None.
absl::StatusOr<Value> Slice(const Value& object, std::optional<int64_t> start,
                            std::optional<int64_t> stop, std::optional<int64_t> step);

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_OPERATORS_H_
