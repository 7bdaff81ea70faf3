// Python's string formatting for Jinja templates: `'%s items' % n`, the `format` filter (also
// printf style) and the str.format() method ('{} and {name}'.format(...)).
//
// Covered: printf conversions s r a d i u x X o e E f F g G c % with flags, width, precision and
// %(name)s keys; str.format with automatic, numbered and named fields, !r/!s/!a conversions and
// the common format spec ([[fill]align][sign][0][width][.precision][type]). Attribute and index
// lookups inside str.format fields are not supported and fail with an error.
#ifndef SHARDSERVE_MODEL_JINJA_FORMAT_H_
#define SHARDSERVE_MODEL_JINJA_FORMAT_H_

#include <string>

#include "absl/status/statusor.h"
#include "model/jinja_value.h"

namespace shardserve {
namespace jinja {

// `format % args`: a tuple supplies positional arguments, a dict named ones, anything else is
// the single argument.
absl::StatusOr<std::string> PercentFormat(const std::string& format, const Value& args);

// format.format(*args.positional, **args.keyword)
absl::StatusOr<std::string> BraceFormat(const std::string& format, const CallArgs& args);

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_FORMAT_H_
