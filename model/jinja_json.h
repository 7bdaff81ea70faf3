// Python's json.dumps for Jinja values: the `tojson` filter of Hugging Face chat templates, which
// transformers defines as json.dumps(x, ensure_ascii=False, indent=None, separators=None,
// sort_keys=False) rather than jinja2's HTML-safe variant.
#ifndef SHARDSERVE_MODEL_JINJA_JSON_H_
#define SHARDSERVE_MODEL_JINJA_JSON_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "model/jinja_value.h"

namespace shardserve {
namespace jinja {

struct JsonOptions {
  bool ensure_ascii = false;
  // Unset: one line. Set: newlines, each level indented by this string (Python's indent=N gives
  // N spaces).
  std::optional<std::string> indent;
  // Unset: Python's defaults, (", ", ": ") on one line and (",", ": ") when indenting.
  std::optional<std::string> item_separator;
  std::optional<std::string> key_separator;
  bool sort_keys = false;
};

// Fails, as Python does, on values JSON cannot hold (Undefined, callables, namespaces).
absl::StatusOr<std::string> DumpJson(const Value& value, const JsonOptions& options);

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_JSON_H_
