// jinja2's built-in tests (`value is name(args)`): boolean callable defined divisibleby eq
// equalto escaped even false filter float ge greaterthan gt in integer iterable le lessthan
// lower lt mapping ne none number odd sameas sequence string test true undefined upper, and the
// operator aliases == != < <= > >=.
#ifndef SHARDSERVE_MODEL_JINJA_TESTS_H_
#define SHARDSERVE_MODEL_JINJA_TESTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "model/jinja_value.h"

namespace shardserve {
namespace jinja {

using TestFunction = absl::StatusOr<bool> (*)(Evaluator& evaluator, const Value& input,
                                              CallArgs& args);

// Null when no test has that name.
const TestFunction* FindTest(const std::string& name);

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_TESTS_H_
