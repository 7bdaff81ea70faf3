// The global functions and the str/dict/list methods that chat templates call.
//
// Globals, as transformers' sandboxed environment provides them: range (capped at 100000 items
// like jinja2's sandbox), dict, namespace, joiner, raise_exception(message) and
// strftime_now(format) (local time).
// Methods: str.strip/lstrip/rstrip/split/rsplit/splitlines/upper/lower/title/capitalize/swapcase/
// startswith/endswith/replace/find/rfind/index/rindex/count/join/format/isdigit/isalpha/isalnum/
// isspace/isupper/islower/istitle/removeprefix/removesuffix/zfill/center/ljust/rjust,
// dict.items/keys/values/get/copy, list.index/count/copy. Mutating methods (list.append,
// dict.update, ...) resolve to an Undefined that fails when called, as the immutable sandbox
// rejects them.
#ifndef SHARDSERVE_MODEL_JINJA_BUILTINS_H_
#define SHARDSERVE_MODEL_JINJA_BUILTINS_H_

#include <optional>
#include <string>

#include "model/jinja_value.h"

namespace shardserve {
namespace jinja {

ValueDict BuiltinGlobals();

// `receiver.name` bound as a callable, or nullopt when the receiver's type has no such method.
std::optional<Value> LookupMethod(const Value& receiver, const std::string& name);

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_BUILTINS_H_
