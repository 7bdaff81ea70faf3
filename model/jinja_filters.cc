#include "model/jinja_filters.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "common/status_macros.h"
#include "model/jinja_builtins.h"
#include "model/jinja_evaluator.h"
#include "model/jinja_format.h"
#include "model/jinja_json.h"
#include "model/jinja_operators.h"
#include "model/jinja_sequence_filters.h"
#include "model/jinja_text.h"

namespace shardserve {
namespace jinja {
namespace {

absl::StatusOr<std::vector<Value>> Bind(const char* filter, CallArgs& args,
                                        const std::vector<Param>& params) {
  return BindArgs(filter, args, params);
}

std::optional<double> ParsePyFloat(const std::string& raw) {
  std::string s = PyStrip(raw, nullptr, true, true);
  std::string lower = absl::AsciiStrToLower(s);
  std::string body = lower;
  double sign = 1;
  if (!body.empty() && (body[0] == '+' || body[0] == '-')) {
    sign = body[0] == '-' ? -1 : 1;
    body = body.substr(1);
  }
  if (body == "inf" || body == "infinity") return sign * HUGE_VAL;
  if (body == "nan") return std::nan("");
  std::string cleaned;
  bool digits = false;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c == '_') {
      bool between = i > 0 && i + 1 < body.size() && absl::ascii_isdigit(body[i - 1]) &&
                     absl::ascii_isdigit(body[i + 1]);
      if (!between) return std::nullopt;
      continue;
    }
    if (absl::ascii_isdigit(c)) {
      digits = true;
    } else if (c != '.' && c != 'e' && c != '+' && c != '-') {
      return std::nullopt;
    }
    cleaned.push_back(c);
  }
  if (!digits) return std::nullopt;
  char* end = nullptr;
  double value = std::strtod(cleaned.c_str(), &end);
  if (end == nullptr || *end != '\0') return std::nullopt;
  return sign * value;
}

// Python's int(text, base); nullopt when Python raises ValueError.
std::optional<int64_t> ParsePyInt(const std::string& raw, int base) {
  std::string s = absl::AsciiStrToLower(PyStrip(raw, nullptr, true, true));
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s = s.substr(1);
  }
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o' || s[1] == 'b')) {
    int prefix_base = s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : 2;
    if (base == 0 || base == prefix_base) {
      base = prefix_base;
      s = s.substr(2);
      if (!s.empty() && s[0] == '_') s = s.substr(1);
    }
  }
  if (base == 0) base = 10;
  std::string digits;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_' && i > 0 && i + 1 < s.size() && s[i - 1] != '_') continue;
    digits.push_back(s[i]);
  }
  if (digits.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long value = std::strtoll(digits.c_str(), &end, base);
  if (*end != '\0' || errno == ERANGE || digits[0] == '-' || digits[0] == '+') return std::nullopt;
  return negative ? -value : value;
}

absl::StatusOr<Value> Abs(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("abs", args, {}).status());
  if (v.is_integral()) return v.int_value() < 0 ? UnaryOp("-", v) : Value::Int(v.int_value());
  if (v.is_float()) return Value::Float(std::fabs(v.number_value()));
  return absl::InvalidArgumentError("bad operand type for abs(): '" + v.TypeName() + "'");
}

absl::StatusOr<Value> Attr(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a, Bind("attr", args, {{"name", Value(), true}}));
  std::string name = a[0].ToString();
  if (v.is_namespace()) {
    if (const Value* found = v.Find(name)) return *found;
  }
  if (std::optional<Value> method = LookupMethod(v, name)) return *method;
  return Value::Undefined("'" + v.TypeName() + " object' has no attribute '" + name + "'");
}

absl::StatusOr<Value> Capitalize(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("capitalize", args, {}).status());
  return Value::String(PyCapitalize(v.ToString()));
}

absl::StatusOr<Value> Center(Evaluator& ev, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a, Bind("center", args, {{"width", Value::Int(80)}}));
  CallArgs method_args{{a[0]}, {}};
  return ev.Call(*LookupMethod(Value::String(v.ToString()), "center"), method_args);
}

absl::StatusOr<Value> Length(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("length", args, {}).status());
  if (v.is_undefined()) return Value::Int(0);
  if (v.is_string()) return Value::Int(static_cast<int64_t>(CodePointCount(v.str())));
  if (v.is_list()) return Value::Int(static_cast<int64_t>(v.list().size()));
  if (v.is_dict()) return Value::Int(static_cast<int64_t>(v.dict().size()));
  return absl::InvalidArgumentError("object of type '" + v.TypeName() + "' has no len()");
}

absl::StatusOr<Value> Default(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a,
                   Bind("default", args,
                        {{"default_value", Value::String("")}, {"boolean", Value::Bool(false)}}));
  if (v.is_undefined() || (a[1].Truthy() && !v.Truthy())) return a[0];
  return v;
}

absl::StatusOr<Value> Escape(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("escape", args, {}).status());
  std::string out;
  for (char c : v.ToString()) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> FirstOrLast(Evaluator& ev, const Value& v, CallArgs& args, bool first) {
  RETURN_IF_ERROR(Bind(first ? "first" : "last", args, {}).status());
  ASSIGN_OR_RETURN(ValueList items, ev.Iterate(v));
  if (items.empty()) {
    return Value::Undefined(first ? "No first item, sequence was empty."
                                  : "No last item, sequence was empty.");
  }
  return first ? items.front() : items.back();
}

absl::StatusOr<Value> First(Evaluator& ev, const Value& v, CallArgs& args) {
  return FirstOrLast(ev, v, args, true);
}
absl::StatusOr<Value> Last(Evaluator& ev, const Value& v, CallArgs& args) {
  return FirstOrLast(ev, v, args, false);
}

absl::StatusOr<Value> FloatFilter(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a, Bind("float", args, {{"default", Value::Float(0.0)}}));
  if (v.is_number()) return Value::Float(v.number_value());
  if (v.is_string()) {
    if (std::optional<double> f = ParsePyFloat(v.str())) return Value::Float(*f);
  }
  return a[0];
}

absl::StatusOr<Value> IntFilter(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a,
                   Bind("int", args, {{"default", Value::Int(0)}, {"base", Value::Int(10)}}));
  if (v.is_integral()) return Value::Int(v.int_value());
  std::optional<double> as_float;
  if (v.is_float()) {
    as_float = v.number_value();
  } else if (v.is_string()) {
    int base = a[1].is_integral() ? static_cast<int>(a[1].int_value()) : 10;
    if (std::optional<int64_t> i = ParsePyInt(v.str(), base)) return Value::Int(*i);
    as_float = ParsePyFloat(v.str());
  }
  if (as_float.has_value() && std::isfinite(*as_float) && std::fabs(*as_float) < 9.2e18) {
    return Value::Int(static_cast<int64_t>(*as_float));
  }
  return a[0];
}

absl::StatusOr<Value> Format(Evaluator&, const Value& v, CallArgs& args) {
  if (!args.positional.empty() && !args.keyword.empty()) {
    return absl::InvalidArgumentError(
        "can't handle positional and keyword arguments at the same time");
  }
  Value format_args =
      args.keyword.empty() ? Value::Tuple(args.positional) : Value::Dict(args.keyword);
  ASSIGN_OR_RETURN(std::string out, PercentFormat(v.ToString(), format_args));
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Indent(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a, Bind("indent", args,
                                {{"width", Value::Int(4)},
                                 {"first", Value::Bool(false)},
                                 {"blank", Value::Bool(false)}}));
  std::string indention =
      a[0].is_string() ? a[0].str() : std::string(std::max<int64_t>(0, a[0].int_value()), ' ');
  std::vector<std::string> lines = PySplitLines(v.ToString() + "\n");
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += "\n";
    if (i > 0 && (a[2].Truthy() || !lines[i].empty())) out += indention;
    out += lines[i];
  }
  if (a[1].Truthy()) out = indention + out;
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Items(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("items", args, {}).status());
  if (v.is_undefined()) return Value::List({});
  if (!v.is_dict()) return absl::InvalidArgumentError("Can only get item pairs from a mapping.");
  ValueList items;
  for (const auto& [key, value] : v.dict())
    items.push_back(Value::Tuple({Value::String(key), value}));
  return Value::List(std::move(items));
}

absl::StatusOr<Value> ListFilter(Evaluator& ev, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("list", args, {}).status());
  ASSIGN_OR_RETURN(ValueList items, ev.Iterate(v));
  return Value::List(std::move(items));
}

absl::StatusOr<Value> Lower(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("lower", args, {}).status());
  return Value::String(PyLower(v.ToString()));
}

absl::StatusOr<Value> Upper(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("upper", args, {}).status());
  return Value::String(PyUpper(v.ToString()));
}

absl::StatusOr<Value> Replace(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(
      auto a, Bind("replace", args,
                   {{"old", Value(), true}, {"new", Value(), true}, {"count", Value::None()}}));
  int64_t count = a[2].is_integral() ? a[2].int_value() : -1;
  return Value::String(PyReplace(v.ToString(), a[0].ToString(), a[1].ToString(), count));
}

absl::StatusOr<Value> Reverse(Evaluator& ev, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("reverse", args, {}).status());
  if (v.is_string()) {
    std::u32string chars = DecodeUtf8(v.str());
    std::reverse(chars.begin(), chars.end());
    return Value::String(EncodeUtf8(chars));
  }
  ASSIGN_OR_RETURN(ValueList items, ev.Iterate(v));
  std::reverse(items.begin(), items.end());
  return Value::List(std::move(items));
}

absl::StatusOr<Value> Round(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(
      auto a,
      Bind("round", args, {{"precision", Value::Int(0)}, {"method", Value::String("common")}}));
  std::string method = a[1].ToString();
  if (method != "common" && method != "ceil" && method != "floor") {
    return absl::InvalidArgumentError("method must be common, ceil or floor");
  }
  if (!v.is_number()) {
    return absl::InvalidArgumentError("type " + v.TypeName() + " doesn't define __round__ method");
  }
  if (!a[0].is_integral()) return absl::InvalidArgumentError("round: precision must be an integer");
  int64_t precision = a[0].int_value();
  double x = v.number_value();
  if (method != "common") {
    double scale = std::pow(10.0, static_cast<double>(precision));
    return Value::Float((method == "ceil" ? std::ceil(x * scale) : std::floor(x * scale)) / scale);
  }
  if (v.is_integral() && precision >= 0) return Value::Int(v.int_value());
  if (!std::isfinite(x) || precision > 300) return Value::Float(x);
  if (precision >= 0) {
    // printf rounds the exact binary value half-to-even, as CPython's round() does.
    char buf[400];
    std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(precision), x);
    return Value::Float(std::strtod(buf, nullptr));
  }
  double scale = std::pow(10.0, static_cast<double>(-precision));
  double rounded = std::nearbyint(x / scale) * scale;
  return v.is_integral() ? Value::Int(static_cast<int64_t>(rounded)) : Value::Float(rounded);
}

absl::StatusOr<Value> Safe(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("safe", args, {}).status());
  return Value::String(v.ToString());
}

absl::StatusOr<Value> StringFilter(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("string", args, {}).status());
  return Value::String(v.ToString());
}

absl::StatusOr<Value> Title(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("title", args, {}).status());
  // jinja2 capitalizes each run after a separator in [-\s({[<], not Python's str.title().
  std::string out;
  bool word_start = true;
  for (char32_t c : DecodeUtf8(v.ToString())) {
    bool separator = IsPySpace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    std::string one;
    AppendUtf8(c, &one);
    if (separator) {
      out += one;
      word_start = true;
    } else {
      out += word_start ? PyUpper(one) : PyLower(one);
      word_start = false;
    }
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> ToJson(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a, Bind("tojson", args,
                                {{"ensure_ascii", Value::Bool(false)},
                                 {"indent", Value::None()},
                                 {"separators", Value::None()},
                                 {"sort_keys", Value::Bool(false)}}));
  JsonOptions options;
  options.ensure_ascii = a[0].Truthy();
  if (a[1].is_integral()) {
    options.indent = std::string(std::max<int64_t>(0, a[1].int_value()), ' ');
  } else if (a[1].is_string()) {
    options.indent = a[1].str();
  } else if (!a[1].is_none()) {
    return absl::InvalidArgumentError("tojson: indent must be an int or a string");
  }
  if (!a[2].is_none()) {
    if (!a[2].is_list() || a[2].list().size() != 2 || !a[2].list()[0].is_string() ||
        !a[2].list()[1].is_string()) {
      return absl::InvalidArgumentError("tojson: separators must be a pair of strings");
    }
    options.item_separator = a[2].list()[0].str();
    options.key_separator = a[2].list()[1].str();
  }
  options.sort_keys = a[3].Truthy();
  ASSIGN_OR_RETURN(std::string json, DumpJson(v, options));
  return Value::String(std::move(json));
}

absl::StatusOr<Value> Trim(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a, Bind("trim", args, {{"chars", Value::None()}}));
  std::string chars = a[0].ToString();
  return Value::String(PyStrip(v.ToString(), a[0].is_none() ? nullptr : &chars, true, true));
}

absl::StatusOr<Value> WordCount(Evaluator&, const Value& v, CallArgs& args) {
  RETURN_IF_ERROR(Bind("wordcount", args, {}).status());
  int64_t words = 0;
  bool in_word = false;
  for (char32_t c : DecodeUtf8(v.ToString())) {
    bool word_char = IsAlpha(c) || IsDigit(c) || c == '_';
    if (word_char && !in_word) ++words;
    in_word = word_char;
  }
  return Value::Int(words);
}

}  // namespace

const FilterFunction* FindFilter(const std::string& name) {
  static const auto* const kFilters = [] {
    auto* filters = new std::unordered_map<std::string, FilterFunction>{
        {"abs", Abs},
        {"attr", Attr},
        {"capitalize", Capitalize},
        {"center", Center},
        {"count", Length},
        {"d", Default},
        {"default", Default},
        {"e", Escape},
        {"escape", Escape},
        {"first", First},
        {"float", FloatFilter},
        {"forceescape", Escape},
        {"format", Format},
        {"indent", Indent},
        {"int", IntFilter},
        {"items", Items},
        {"last", Last},
        {"length", Length},
        {"list", ListFilter},
        {"lower", Lower},
        {"replace", Replace},
        {"reverse", Reverse},
        {"round", Round},
        {"safe", Safe},
        {"string", StringFilter},
        {"title", Title},
        {"tojson", ToJson},
        {"trim", Trim},
        {"upper", Upper},
        {"wordcount", WordCount},
    };
    AddSequenceFilters(filters);
    return filters;
  }();
  auto it = kFilters->find(name);
  return it == kFilters->end() ? nullptr : &it->second;
}

}  // namespace jinja
}  // namespace shardserve
