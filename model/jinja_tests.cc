#include "model/jinja_tests.h"

#include <unordered_map>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "model/jinja_evaluator.h"
#include "model/jinja_filters.h"
#include "model/jinja_operators.h"
#include "model/jinja_text.h"

namespace shardserve {
namespace jinja {
namespace {

absl::StatusOr<Value> OneArg(const char* test, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a, BindArgs(test, args, {{"other", Value(), true}}));
  return a[0];
}

absl::StatusOr<bool> NoArgs(const char* test, CallArgs& args) {
  RETURN_IF_ERROR(BindArgs(test, args, {}).status());
  return true;
}

#define SIMPLE_TEST(fn, expression)                                                      \
  absl::StatusOr<bool> fn(Evaluator&, [[maybe_unused]] const Value& v, CallArgs& args) { \
    RETURN_IF_ERROR(NoArgs(#fn, args).status());                                         \
    return (expression);                                                                 \
  }

SIMPLE_TEST(Defined, !v.is_undefined())
SIMPLE_TEST(IsUndefined, v.is_undefined())
SIMPLE_TEST(IsNone, v.is_none())
SIMPLE_TEST(Boolean, v.is_bool())
SIMPLE_TEST(IsTrue, v.is_bool() && v.bool_value())
SIMPLE_TEST(IsFalse, v.is_bool() && !v.bool_value())
SIMPLE_TEST(Integer, v.is_int())
SIMPLE_TEST(Float, v.is_float())
SIMPLE_TEST(Number, v.is_number())
SIMPLE_TEST(String, v.is_string())
SIMPLE_TEST(Mapping, v.is_dict())
// jinja2's Undefined iterates as empty and has __len__/__getitem__, so it passes both.
SIMPLE_TEST(Iterable, v.is_undefined() || v.is_list() || v.is_dict() || v.is_string())
SIMPLE_TEST(Sequence, v.is_undefined() || v.is_list() || v.is_dict() || v.is_string())
SIMPLE_TEST(Callable, v.is_function() || v.is_undefined())
SIMPLE_TEST(Escaped, false)
SIMPLE_TEST(Lower, PyIsLower(v.ToString()))
SIMPLE_TEST(Upper, PyIsUpper(v.ToString()))

#undef SIMPLE_TEST

absl::StatusOr<bool> Parity(const Value& v, CallArgs& args, int64_t remainder) {
  RETURN_IF_ERROR(NoArgs("odd", args).status());
  ASSIGN_OR_RETURN(Value r, BinaryOp("%", v, Value::Int(2)));
  return ValuesEqual(r, Value::Int(remainder));
}

absl::StatusOr<bool> Odd(Evaluator&, const Value& v, CallArgs& args) { return Parity(v, args, 1); }
absl::StatusOr<bool> Even(Evaluator&, const Value& v, CallArgs& args) { return Parity(v, args, 0); }

absl::StatusOr<bool> DivisibleBy(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(Value num, OneArg("divisibleby", args));
  ASSIGN_OR_RETURN(Value r, BinaryOp("%", v, num));
  return ValuesEqual(r, Value::Int(0));
}

absl::StatusOr<bool> SameAs(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(Value other, OneArg("sameas", args));
  return v.SameAs(other);
}

absl::StatusOr<bool> In(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(Value seq, OneArg("in", args));
  return Contains(seq, v);
}

template <const char* kOp>
absl::StatusOr<bool> Compare(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(Value other, OneArg(kOp, args));
  return CompareOp(kOp, v, other);
}

constexpr char kEq[] = "==";
constexpr char kNe[] = "!=";
constexpr char kLt[] = "<";
constexpr char kLe[] = "<=";
constexpr char kGt[] = ">";
constexpr char kGe[] = ">=";

absl::StatusOr<bool> IsFilter(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(NoArgs("filter", args).status());
  return v.is_string() && FindFilter(v.str()) != nullptr;
}

absl::StatusOr<bool> IsTest(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(NoArgs("test", args).status());
  return v.is_string() && FindTest(v.str()) != nullptr;
}

}  // namespace

const TestFunction* FindTest(const std::string& name) {
  static const auto* const kTests = new std::unordered_map<std::string, TestFunction>{
      {"defined", Defined},
      {"undefined", IsUndefined},
      {"none", IsNone},
      {"boolean", Boolean},
      {"true", IsTrue},
      {"false", IsFalse},
      {"integer", Integer},
      {"float", Float},
      {"number", Number},
      {"string", String},
      {"mapping", Mapping},
      {"iterable", Iterable},
      {"sequence", Sequence},
      {"callable", Callable},
      {"escaped", Escaped},
      {"lower", Lower},
      {"upper", Upper},
      {"odd", Odd},
      {"even", Even},
      {"divisibleby", DivisibleBy},
      {"sameas", SameAs},
      {"in", In},
      {"eq", Compare<kEq>},
      {"equalto", Compare<kEq>},
      {"==", Compare<kEq>},
      {"ne", Compare<kNe>},
      {"!=", Compare<kNe>},
      {"lt", Compare<kLt>},
      {"lessthan", Compare<kLt>},
      {"<", Compare<kLt>},
      {"le", Compare<kLe>},
      {"<=", Compare<kLe>},
      {"gt", Compare<kGt>},
      {"greaterthan", Compare<kGt>},
      {">", Compare<kGt>},
      {"ge", Compare<kGe>},
      {">=", Compare<kGe>},
      {"filter", IsFilter},
      {"test", IsTest},
  };
  auto it = kTests->find(name);
  return it == kTests->end() ? nullptr : &it->second;
}

}  // namespace jinja
}  // namespace shardserve
