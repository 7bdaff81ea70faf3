#include "model/jinja_builtins.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <memory>
#include <set>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "model/jinja_evaluator.h"
#include "model/jinja_format.h"
#include "model/jinja_text.h"

namespace shardserve {
namespace jinja {
namespace {

// jinja2's sandbox refuses larger ranges.
constexpr int64_t kMaxRange = 100000;

absl::Status TypeError(const std::string& message) { return absl::InvalidArgumentError(message); }

absl::StatusOr<std::string> StringArg(const std::string& method, const Value& v) {
  if (!v.is_string()) {
    return TypeError(method + "() argument must be str, not " + v.TypeName());
  }
  return v.str();
}

absl::StatusOr<int64_t> IntArg(const std::string& method, const Value& v) {
  if (!v.is_integral()) {
    return TypeError("'" + v.TypeName() + "' object cannot be interpreted as an integer (" +
                     method + ")");
  }
  return v.int_value();
}

// For strip/split: None means "whitespace".
absl::StatusOr<std::optional<std::string>> OptionalStringArg(const std::string& method,
                                                             const Value& v) {
  if (v.is_none() || v.is_undefined()) return std::optional<std::string>();
  ASSIGN_OR_RETURN(std::string s, StringArg(method, v));
  return std::optional<std::string>(std::move(s));
}

Value StringList(std::vector<std::string> parts) {
  ValueList items;
  items.reserve(parts.size());
  for (auto& p : parts) items.push_back(Value::String(std::move(p)));
  return Value::List(std::move(items));
}

std::string Justify(const std::string& s, int64_t width, const std::string& fill, char how) {
  int64_t length = static_cast<int64_t>(CodePointCount(s));
  if (width <= length) return s;
  int64_t margin = width - length;
  int64_t left = how == '<' ? 0 : how == '>' ? margin : margin / 2 + (margin & width & 1);
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += fill;
  out += s;
  for (int64_t i = 0; i < margin - left; ++i) out += fill;
  return out;
}

template <typename Predicate>
bool AllCodePoints(const std::string& s, Predicate predicate) {
  std::u32string cps = DecodeUtf8(s);
  if (cps.empty()) return false;
  for (char32_t c : cps) {
    if (!predicate(c)) return false;
  }
  return true;
}

bool IsTitle(const std::string& s) {
  bool cased = false, previous_cased = false;
  for (char32_t c : DecodeUtf8(s)) {
    if (IsUpperCase(c)) {
      if (previous_cased) return false;
      previous_cased = cased = true;
    } else if (IsLowerCase(c)) {
      if (!previous_cased) return false;
      previous_cased = cased = true;
    } else {
      previous_cased = false;
    }
  }
  return cased;
}

absl::StatusOr<Value> StrMethod(const std::string& name, const std::string& s, Evaluator& ev,
                                CallArgs& args) {
  const std::string method = "str." + name;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    ASSIGN_OR_RETURN(auto a, BindArgs(method, args, {{"chars", Value::None()}}));
    ASSIGN_OR_RETURN(std::optional<std::string> chars, OptionalStringArg(method, a[0]));
    return Value::String(PyStrip(s, chars ? &*chars : nullptr, name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    ASSIGN_OR_RETURN(
        auto a, BindArgs(method, args, {{"sep", Value::None()}, {"maxsplit", Value::Int(-1)}}));
    ASSIGN_OR_RETURN(std::optional<std::string> sep, OptionalStringArg(method, a[0]));
    ASSIGN_OR_RETURN(int64_t max_split, IntArg(method, a[1]));
    if (sep && sep->empty()) return absl::InvalidArgumentError("empty separator");
    return StringList(PySplit(s, sep ? &*sep : nullptr, max_split, name == "rsplit"));
  }
  if (name == "splitlines") return StringList(PySplitLines(s));
  if (name == "upper") return Value::String(PyUpper(s));
  if (name == "lower") return Value::String(PyLower(s));
  if (name == "title") return Value::String(PyTitle(s));
  if (name == "capitalize") return Value::String(PyCapitalize(s));
  if (name == "swapcase") return Value::String(PySwapCase(s));
  if (name == "startswith" || name == "endswith") {
    ASSIGN_OR_RETURN(auto a, BindArgs(method, args, {{"prefix", Value(), true}}));
    ValueList candidates = a[0].is_tuple() ? a[0].list() : ValueList{a[0]};
    for (const Value& candidate : candidates) {
      ASSIGN_OR_RETURN(std::string affix, StringArg(method, candidate));
      bool hit =
          affix.size() <= s.size() &&
          (name == "startswith" ? s.compare(0, affix.size(), affix) == 0
                                : s.compare(s.size() - affix.size(), affix.size(), affix) == 0);
      if (hit) return Value::Bool(true);
    }
    return Value::Bool(false);
  }
  if (name == "replace") {
    ASSIGN_OR_RETURN(
        auto a,
        BindArgs(method, args,
                 {{"old", Value(), true}, {"new", Value(), true}, {"count", Value::Int(-1)}}));
    ASSIGN_OR_RETURN(std::string old, StringArg(method, a[0]));
    ASSIGN_OR_RETURN(std::string replacement, StringArg(method, a[1]));
    ASSIGN_OR_RETURN(int64_t count, IntArg(method, a[2]));
    return Value::String(PyReplace(s, old, replacement, count));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    ASSIGN_OR_RETURN(auto a, BindArgs(method, args, {{"sub", Value(), true}}));
    ASSIGN_OR_RETURN(std::string sub, StringArg(method, a[0]));
    if (name == "count") return Value::Int(PyCount(s, sub));
    int64_t at = PyFind(s, sub, name[0] == 'r');
    if (at < 0 && (name == "index" || name == "rindex")) {
      return absl::InvalidArgumentError("substring not found");
    }
    return Value::Int(at);
  }
  if (name == "join") {
    ASSIGN_OR_RETURN(auto a, BindArgs(method, args, {{"iterable", Value(), true}}));
    ASSIGN_OR_RETURN(ValueList items, ev.Iterate(a[0]));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) {
        return TypeError("sequence item " + std::to_string(i) + ": expected str instance, " +
                         items[i].TypeName() + " found");
      }
      if (i > 0) out += s;
      out += items[i].str();
    }
    return Value::String(std::move(out));
  }
  if (name == "format") {
    ASSIGN_OR_RETURN(std::string formatted, BraceFormat(s, args));
    return Value::String(std::move(formatted));
  }
  if (name == "isdigit") return Value::Bool(AllCodePoints(s, IsDigit));
  if (name == "isalpha") return Value::Bool(AllCodePoints(s, IsAlpha));
  if (name == "isalnum") {
    return Value::Bool(AllCodePoints(s, [](char32_t c) { return IsAlpha(c) || IsDigit(c); }));
  }
  if (name == "isspace") return Value::Bool(AllCodePoints(s, IsPySpace));
  if (name == "isupper") return Value::Bool(PyIsUpper(s));
  if (name == "islower") return Value::Bool(PyIsLower(s));
  if (name == "istitle") return Value::Bool(IsTitle(s));
  if (name == "removeprefix" || name == "removesuffix") {
    ASSIGN_OR_RETURN(auto a, BindArgs(method, args, {{"affix", Value(), true}}));
    ASSIGN_OR_RETURN(std::string affix, StringArg(method, a[0]));
    if (affix.size() > s.size()) return Value::String(s);
    if (name == "removeprefix") {
      return Value::String(s.compare(0, affix.size(), affix) == 0 ? s.substr(affix.size()) : s);
    }
    return Value::String(s.compare(s.size() - affix.size(), affix.size(), affix) == 0
                             ? s.substr(0, s.size() - affix.size())
                             : s);
  }
  if (name == "zfill") {
    ASSIGN_OR_RETURN(auto a, BindArgs(method, args, {{"width", Value(), true}}));
    ASSIGN_OR_RETURN(int64_t width, IntArg(method, a[0]));
    int64_t length = static_cast<int64_t>(CodePointCount(s));
    if (width <= length) return Value::String(s);
    size_t sign = !s.empty() && (s[0] == '-' || s[0] == '+') ? 1 : 0;
    return Value::String(s.substr(0, sign) + std::string(width - length, '0') + s.substr(sign));
  }
  if (name == "center" || name == "ljust" || name == "rjust") {
    ASSIGN_OR_RETURN(
        auto a,
        BindArgs(method, args, {{"width", Value(), true}, {"fillchar", Value::String(" ")}}));
    ASSIGN_OR_RETURN(int64_t width, IntArg(method, a[0]));
    ASSIGN_OR_RETURN(std::string fill, StringArg(method, a[1]));
    if (CodePointCount(fill) != 1) {
      return TypeError("The fill character must be exactly one character long");
    }
    return Value::String(Justify(s, width, fill,
                                 name == "center"  ? '^'
                                 : name == "ljust" ? '<'
                                                   : '>'));
  }
  return absl::InternalError("unhandled str method " + name);
}

absl::StatusOr<Value> DictMethod(const std::string& name, const Value& d, CallArgs& args) {
  const std::string method = "dict." + name;
  if (name == "items" || name == "keys" || name == "values" || name == "copy") {
    RETURN_IF_ERROR(BindArgs(method, args, {}).status());
    if (name == "copy") return Value::Dict(d.dict());
    ValueList out;
    for (const auto& [key, value] : d.dict()) {
      if (name == "items") {
        out.push_back(Value::Tuple({Value::String(key), value}));
      } else {
        out.push_back(name == "keys" ? Value::String(key) : value);
      }
    }
    return Value::List(std::move(out));
  }
  ASSIGN_OR_RETURN(auto a,
                   BindArgs(method, args, {{"key", Value(), true}, {"default", Value::None()}}));
  if (a[0].is_string()) {
    if (const Value* found = d.Find(a[0].str())) return *found;
  }
  return a[1];
}

absl::StatusOr<Value> ListMethod(const std::string& name, const Value& list, CallArgs& args) {
  const std::string method = "list." + name;
  if (name == "copy") return Value::List(list.list());
  ASSIGN_OR_RETURN(auto a, BindArgs(method, args, {{"value", Value(), true}}));
  int64_t count = 0;
  for (size_t i = 0; i < list.list().size(); ++i) {
    if (!ValuesEqual(list.list()[i], a[0])) continue;
    if (name == "index") return Value::Int(static_cast<int64_t>(i));
    ++count;
  }
  if (name == "index") return absl::InvalidArgumentError(a[0].Repr() + " is not in list");
  return Value::Int(count);
}

const std::set<std::string>& StrMethods() {
  static const auto* const kNames = new std::set<std::string>{
      "strip",    "lstrip",  "rstrip",  "split",      "rsplit",       "splitlines",
      "upper",    "lower",   "title",   "capitalize", "swapcase",     "startswith",
      "endswith", "replace", "find",    "rfind",      "index",        "rindex",
      "count",    "join",    "format",  "isdigit",    "isalpha",      "isalnum",
      "isspace",  "isupper", "islower", "istitle",    "removeprefix", "removesuffix",
      "zfill",    "center",  "ljust",   "rjust"};
  return *kNames;
}

Value Unsafe(const std::string& name, const Value& receiver) {
  return Value::Undefined("access to attribute '" + name + "' of '" + receiver.TypeName() +
                          "' object is unsafe.");
}

absl::StatusOr<Value> Range(Evaluator&, CallArgs& args) {
  if (!args.keyword.empty() || args.positional.empty() || args.positional.size() > 3) {
    return TypeError("range expected 1 to 3 integer arguments");
  }
  int64_t bounds[3] = {0, 0, 1};
  for (size_t i = 0; i < args.positional.size(); ++i) {
    ASSIGN_OR_RETURN(int64_t v, IntArg("range", args.positional[i]));
    bounds[args.positional.size() == 1 ? 1 : i] = v;
  }
  int64_t start = bounds[0], stop = bounds[1], step = bounds[2];
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  double count = std::max(0.0, std::ceil((static_cast<double>(stop) - start) / step));
  if (count > kMaxRange) {
    return absl::ResourceExhaustedError(
        "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  ValueList items;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) items.push_back(Value::Int(i));
  return Value::List(std::move(items));
}

// dict(mapping, **kwargs) and namespace(mapping, **kwargs) share their argument handling.
absl::StatusOr<ValueDict> MergeMappings(const std::string& function, const CallArgs& args) {
  ValueDict out;
  for (const Value& positional : args.positional) {
    if (!positional.is_dict() && !positional.is_namespace()) {
      return TypeError(function + "() positional arguments must be mappings");
    }
    for (const auto& [key, value] : positional.dict()) DictSet(&out, key, value);
  }
  for (const auto& [key, value] : args.keyword) DictSet(&out, key, value);
  return out;
}

absl::StatusOr<Value> StrftimeNow(Evaluator&, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a, BindArgs("strftime_now", args, {{"format", Value(), true}}));
  ASSIGN_OR_RETURN(std::string format, StringArg("strftime_now", a[0]));
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buf[512];
  size_t n = format.empty() ? 0 : std::strftime(buf, sizeof(buf), format.c_str(), &local);
  if (n == 0 && !format.empty()) return absl::InvalidArgumentError("strftime_now: bad format");
  return Value::String(std::string(buf, n));
}

}  // namespace

ValueDict BuiltinGlobals() {
  ValueDict globals;
  globals.emplace_back("range", Value::Function("range", Range));
  globals.emplace_back(
      "dict", Value::Function("dict", [](Evaluator&, CallArgs& args) -> absl::StatusOr<Value> {
        ASSIGN_OR_RETURN(ValueDict items, MergeMappings("dict", args));
        return Value::Dict(std::move(items));
      }));
  globals.emplace_back(
      "namespace",
      Value::Function("namespace", [](Evaluator&, CallArgs& args) -> absl::StatusOr<Value> {
        ASSIGN_OR_RETURN(ValueDict items, MergeMappings("namespace", args));
        return Value::Namespace(std::move(items));
      }));
  globals.emplace_back(
      "joiner", Value::Function("joiner", [](Evaluator&, CallArgs& args) -> absl::StatusOr<Value> {
        ASSIGN_OR_RETURN(auto a, BindArgs("joiner", args, {{"sep", Value::String(", ")}}));
        std::string separator = a[0].ToString();
        auto used = std::make_shared<bool>(false);
        return Value::Function("joiner",
                               [separator, used](Evaluator&, CallArgs&) -> absl::StatusOr<Value> {
                                 if (!*used) {
                                   *used = true;
                                   return Value::String("");
                                 }
                                 return Value::String(separator);
                               });
      }));
  globals.emplace_back(
      "raise_exception",
      Value::Function("raise_exception", [](Evaluator&, CallArgs& args) -> absl::StatusOr<Value> {
        std::string message = args.positional.empty() ? "" : args.positional[0].ToString();
        return absl::InvalidArgumentError(message);
      }));
  globals.emplace_back("strftime_now", Value::Function("strftime_now", StrftimeNow));
  return globals;
}

std::optional<Value> LookupMethod(const Value& receiver, const std::string& name) {
  if (receiver.is_string()) {
    if (StrMethods().count(name) == 0) return std::nullopt;
    return Value::Function("str." + name, [receiver, name](Evaluator& ev, CallArgs& args) {
      return StrMethod(name, receiver.str(), ev, args);
    });
  }
  if (receiver.is_dict()) {
    if (name == "items" || name == "keys" || name == "values" || name == "get" || name == "copy") {
      return Value::Function("dict." + name, [receiver, name](Evaluator&, CallArgs& args) {
        return DictMethod(name, receiver, args);
      });
    }
    if (name == "pop" || name == "popitem" || name == "update" || name == "setdefault" ||
        name == "clear") {
      return Unsafe(name, receiver);
    }
    return std::nullopt;
  }
  if (receiver.is_list() && !receiver.is_tuple()) {
    if (name == "index" || name == "count" || name == "copy") {
      return Value::Function("list." + name, [receiver, name](Evaluator&, CallArgs& args) {
        return ListMethod(name, receiver, args);
      });
    }
    if (name == "append" || name == "extend" || name == "insert" || name == "pop" ||
        name == "remove" || name == "reverse" || name == "sort" || name == "clear") {
      return Unsafe(name, receiver);
    }
  }
  if (receiver.is_tuple() && (name == "index" || name == "count")) {
    return Value::Function("tuple." + name, [receiver, name](Evaluator&, CallArgs& args) {
      return ListMethod(name, receiver, args);
    });
  }
  return std::nullopt;
}

}  // namespace jinja
}  // namespace shardserve
