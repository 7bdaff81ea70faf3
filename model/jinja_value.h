// The values a Jinja template computes with, modelled on the Python objects jinja2 sees when
// transformers renders a chat template: None, bool, int, float, str, list, tuple, dict, callables,
// namespace() objects, and jinja2's Undefined (a missing variable, attribute or item).
//
//   Value v = Value::FromJson(nlohmann::ordered_json::parse(R"({"role": "user"})"));
//   v.Truthy();      // true: a non-empty dict
//   v.ToString();    // "{'role': 'user'}", as Python's str() prints it
//
// Strings, lists and dicts are immutable and shared, so copying a Value is cheap. Namespaces are
// the one mutable object (`{% set ns.attr = ... %}`) and are shared by reference, as in Python.
// Dicts keep insertion order and have string keys (the keys JSON can carry).
#ifndef SHARDSERVE_MODEL_JINJA_VALUE_H_
#define SHARDSERVE_MODEL_JINJA_VALUE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace shardserve {
namespace jinja {

class Evaluator;
class Value;

using ValueList = std::vector<Value>;
using ValueDict = std::vector<std::pair<std::string, Value>>;

// Arguments of a call, as Python passes them.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// A callable: a global such as range(), a bound method such as str.strip, or a macro.
// The evaluator is passed so callables can render macros and apply filters.
using NativeFunction = std::function<absl::StatusOr<Value>(Evaluator& evaluator, CallArgs& args)>;

class Value {
 public:
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kFunction,
    kNamespace
  };

  // Undefined, with the message jinja2 reports when it is used in a way that needs a value.
  Value() : kind_(Kind::kUndefined) {}
  static Value Undefined(std::string hint);
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  static Value String(std::string s);
  static Value List(ValueList items);
  static Value Tuple(ValueList items);
  static Value Dict(ValueDict items);
  static Value Function(std::string name, NativeFunction fn);
  static Value Namespace(ValueDict attributes);
  static Value FromJson(const nlohmann::ordered_json& json);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  // Python's int includes bool.
  bool is_integral() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }
  bool is_number() const { return is_integral() || kind_ == Kind::kFloat; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }  // lists and tuples
  bool is_tuple() const { return kind_ == Kind::kList && is_tuple_; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_function() const { return kind_ == Kind::kFunction; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }

  // REQUIRES: the matching kind (is_integral / is_number for the numeric ones).
  bool bool_value() const { return int_ != 0; }
  int64_t int_value() const { return int_; }
  double number_value() const { return kind_ == Kind::kFloat ? float_ : static_cast<double>(int_); }
  const std::string& str() const { return *string_; }
  const ValueList& list() const { return *list_; }
  const ValueDict& dict() const { return *dict_; }
  // The namespace's attributes, shared by every copy of this Value.
  ValueDict& namespace_attributes() const { return *dict_; }
  const std::string& function_name() const { return *string_; }
  const NativeFunction& function() const { return *function_; }
  // Nesting of lists and dicts: 0 for scalars, 1 + the deepest item for containers.
  int depth() const { return depth_; }
  // Why this Undefined is undefined, e.g. "'foo' is undefined".
  const std::string& undefined_hint() const;

  // Dict (or namespace) lookup; null when absent.
  const Value* Find(const std::string& key) const;

  // Python truthiness.
  bool Truthy() const;
  // Python str(): what `{{ value }}` prints. Undefined prints as "".
  std::string ToString() const;
  // Python repr(): how the value prints inside a list or dict.
  std::string Repr() const;
  // Python's type name, for error messages: 'int', 'str', 'NoneType', ...
  std::string TypeName() const;
  // Identity, as Python's `is` sees it for these objects.
  bool SameAs(const Value& other) const;

 private:
  Kind kind_;
  bool is_tuple_ = false;
  int depth_ = 0;
  int64_t int_ = 0;
  double float_ = 0;
  std::shared_ptr<const std::string> string_;  // string, function name or undefined hint
  std::shared_ptr<const ValueList> list_;
  std::shared_ptr<ValueDict> dict_;  // dict (never mutated) or namespace
  std::shared_ptr<const NativeFunction> function_;
};

// A parameter of a native function, for BindArgs.
struct Param {
  const char* name;
  Value default_value;  // used when the caller omits the argument (unless required)
  bool required = false;
};

// Binds `args` to `params` as Python binds a call: positional arguments first, then keywords.
// Fails on missing required arguments, unknown keywords and surplus positional arguments.
absl::StatusOr<std::vector<Value>> BindArgs(const std::string& function, const CallArgs& args,
                                            const std::vector<Param>& params);

// Python ==.
bool ValuesEqual(const Value& a, const Value& b);

// Sets `key` in an insertion-ordered dict, keeping the position of an existing key.
void DictSet(ValueDict* dict, std::string key, Value value);

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_VALUE_H_
