// jinja2's built-in filters, with transformers' `tojson` (json.dumps, ensure_ascii=False).
//
// Filters: abs attr capitalize center count d default dictsort e escape first float forceescape
// format indent int items join last length list lower map max min reject rejectattr replace
// reverse round safe select selectattr sort string sum title tojson trim unique upper wordcount.
// Filters that return generators in Python (map, select, reverse, ...) return lists here, which
// only shows when such a result is printed without `|list`.
#ifndef SHARDSERVE_MODEL_JINJA_FILTERS_H_
#define SHARDSERVE_MODEL_JINJA_FILTERS_H_

#include <string>

#include "absl/status/statusor.h"
#include "model/jinja_value.h"

namespace shardserve {
namespace jinja {

using FilterFunction = absl::StatusOr<Value> (*)(Evaluator& evaluator, const Value& input,
                                                 CallArgs& args);

// Null when no filter has that name.
const FilterFunction* FindFilter(const std::string& name);

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_FILTERS_H_
