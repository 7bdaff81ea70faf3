#include "model/jinja_operators.h"

#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "model/jinja_format.h"
#include "model/jinja_text.h"

namespace shardserve {
namespace jinja {
namespace {

// Strings and lists built by `*` and `+` stay below this size.
constexpr size_t kMaxBuiltBytes = 64 << 20;

absl::Status TypeError(const std::string& message) { return absl::InvalidArgumentError(message); }

absl::Status Unsupported(const std::string& op, const Value& a, const Value& b) {
  return TypeError("unsupported operand type(s) for " + op + ": '" + a.TypeName() + "' and '" +
                   b.TypeName() + "'");
}

absl::Status Overflow() { return absl::OutOfRangeError("integer overflow (values are 64-bit)"); }

absl::StatusOr<Value> Repeat(const Value& sequence, int64_t count) {
  if (count <= 0) return sequence.is_string() ? Value::String("") : Value::List({});
  if (sequence.is_string()) {
    if (sequence.str().size() * static_cast<uint64_t>(count) > kMaxBuiltBytes) {
      return absl::ResourceExhaustedError("string repetition result is too large");
    }
    std::string out;
    out.reserve(sequence.str().size() * count);
    for (int64_t i = 0; i < count; ++i) out += sequence.str();
    return Value::String(std::move(out));
  }
  if (sequence.list().size() * static_cast<uint64_t>(count) > kMaxBuiltBytes / 16) {
    return absl::ResourceExhaustedError("list repetition result is too large");
  }
  ValueList items;
  for (int64_t i = 0; i < count; ++i) {
    items.insert(items.end(), sequence.list().begin(), sequence.list().end());
  }
  return sequence.is_tuple() ? Value::Tuple(std::move(items)) : Value::List(std::move(items));
}

absl::StatusOr<Value> IntPow(int64_t base, int64_t exponent) {
  if (exponent < 0) {
    if (base == 0) return absl::InvalidArgumentError("0.0 cannot be raised to a negative power");
    return Value::Float(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
  }
  int64_t result = 1;
  while (exponent > 0) {
    if (exponent & 1) {
      if (__builtin_mul_overflow(result, base, &result)) return Overflow();
    }
    exponent >>= 1;
    if (exponent > 0 && __builtin_mul_overflow(base, base, &base)) return Overflow();
  }
  return Value::Int(result);
}

absl::StatusOr<Value> Arithmetic(const std::string& op, const Value& a, const Value& b) {
  bool floating = a.is_float() || b.is_float();
  if (!floating) {
    int64_t x = a.int_value(), y = b.int_value(), r = 0;
    if (op == "+") {
      if (__builtin_add_overflow(x, y, &r)) return Overflow();
      return Value::Int(r);
    }
    if (op == "-") {
      if (__builtin_sub_overflow(x, y, &r)) return Overflow();
      return Value::Int(r);
    }
    if (op == "*") {
      if (__builtin_mul_overflow(x, y, &r)) return Overflow();
      return Value::Int(r);
    }
    if (op == "//" || op == "%") {
      if (y == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
      if (x == std::numeric_limits<int64_t>::min() && y == -1) return Overflow();
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        --q;
        m += y;
      }
      return Value::Int(op == "//" ? q : m);
    }
    if (op == "**") return IntPow(x, y);
  }
  double x = a.number_value(), y = b.number_value();
  if (op == "+") return Value::Float(x + y);
  if (op == "-") return Value::Float(x - y);
  if (op == "*") return Value::Float(x * y);
  if (op == "/") {
    if (y == 0) return absl::InvalidArgumentError("division by zero");
    return Value::Float(x / y);
  }
  if (op == "//" || op == "%") {
    if (y == 0) return absl::InvalidArgumentError("float floor division by zero");
    // CPython's float_floor_div and float_rem.
    double mod = std::fmod(x, y);
    double div = (x - mod) / y;
    if (mod != 0) {
      if ((y < 0) != (mod < 0)) {
        mod += y;
        div -= 1.0;
      }
    } else {
      mod = std::copysign(0.0, y);
    }
    if (op == "%") return Value::Float(mod);
    double floor_div;
    if (div != 0) {
      floor_div = std::floor(div);
      if (div - floor_div > 0.5) floor_div += 1.0;
    } else {
      floor_div = std::copysign(0.0, x / y);
    }
    return Value::Float(floor_div);
  }
  if (op == "**") {
    if (x == 0 && y < 0)
      return absl::InvalidArgumentError("0.0 cannot be raised to a negative power");
    if (x < 0 && y != std::floor(y)) {
      return absl::InvalidArgumentError("negative number raised to a fractional power");
    }
    return Value::Float(std::pow(x, y));
  }
  return absl::InternalError("unknown arithmetic operator " + op);
}

}  // namespace

absl::StatusOr<Value> BinaryOp(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value::String(a.ToString() + b.ToString());
  if (a.is_undefined()) return absl::InvalidArgumentError(a.undefined_hint());
  if (b.is_undefined()) return absl::InvalidArgumentError(b.undefined_hint());
  if (a.is_number() && b.is_number()) return Arithmetic(op, a, b);
  if (op == "+") {
    if (a.is_string() && b.is_string()) return Value::String(a.str() + b.str());
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      if (a.list().size() + b.list().size() > kMaxBuiltBytes / 16) {
        return absl::ResourceExhaustedError("list concatenation result is too large");
      }
      ValueList items = a.list();
      items.insert(items.end(), b.list().begin(), b.list().end());
      return a.is_tuple() ? Value::Tuple(std::move(items)) : Value::List(std::move(items));
    }
    if (a.is_string() || a.is_list()) {
      return TypeError("can only concatenate " + a.TypeName() + " (not \"" + b.TypeName() +
                       "\") to " + a.TypeName());
    }
  }
  if (op == "*") {
    if ((a.is_string() || a.is_list()) && b.is_integral()) return Repeat(a, b.int_value());
    if (a.is_integral() && (b.is_string() || b.is_list())) return Repeat(b, a.int_value());
  }
  if (op == "%" && a.is_string()) {
    ASSIGN_OR_RETURN(std::string formatted, PercentFormat(a.str(), b));
    return Value::String(std::move(formatted));
  }
  return Unsupported(op, a, b);
}

absl::StatusOr<Value> UnaryOp(const std::string& op, const Value& a) {
  if (a.is_undefined()) return absl::InvalidArgumentError(a.undefined_hint());
  if (a.is_integral()) {
    if (op == "+") return Value::Int(a.int_value());
    if (a.int_value() == std::numeric_limits<int64_t>::min()) return Overflow();
    return Value::Int(-a.int_value());
  }
  if (a.is_float()) return Value::Float(op == "-" ? -a.number_value() : a.number_value());
  return TypeError("bad operand type for unary " + op + ": '" + a.TypeName() + "'");
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string()) {
        return TypeError("'in <string>' requires string as left operand, not " + item.TypeName());
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& v : container.list()) {
        if (ValuesEqual(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      return item.is_string() && container.Find(item.str()) != nullptr;
    default:
      return TypeError("argument of type '" + container.TypeName() + "' is not iterable");
  }
}

absl::StatusOr<int> ThreeWayCompare(const Value& a, const Value& b) {
  if (a.is_undefined()) return absl::InvalidArgumentError(a.undefined_hint());
  if (b.is_undefined()) return absl::InvalidArgumentError(b.undefined_hint());
  if (a.is_number() && b.is_number()) {
    if (!a.is_float() && !b.is_float()) {
      return a.int_value() < b.int_value() ? -1 : a.int_value() > b.int_value() ? 1 : 0;
    }
    double x = a.number_value(), y = b.number_value();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    int c = a.str().compare(b.str());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const ValueList& x = a.list();
    const ValueList& y = b.list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (ValuesEqual(x[i], y[i])) continue;
      return ThreeWayCompare(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  return TypeError("'<' not supported between instances of '" + a.TypeName() + "' and '" +
                   b.TypeName() + "'");
}

absl::StatusOr<bool> CompareOp(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return ValuesEqual(a, b);
  if (op == "!=") return !ValuesEqual(a, b);
  if (op == "in") return Contains(b, a);
  if (op == "notin") {
    ASSIGN_OR_RETURN(bool in, Contains(b, a));
    return !in;
  }
  auto ordered = ThreeWayCompare(a, b);
  if (!ordered.ok()) {
    std::string message(ordered.status().message());
    size_t quote = message.find("'<'");
    if (quote != std::string::npos) message.replace(quote, 3, "'" + op + "'");
    return absl::Status(ordered.status().code(), message);
  }
  int c = *ordered;
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  if (op == ">=") return c >= 0;
  return absl::InternalError("unknown comparison " + op);
}

absl::StatusOr<Value> Slice(const Value& object, std::optional<int64_t> start,
                            std::optional<int64_t> stop, std::optional<int64_t> step) {
  int64_t s = step.value_or(1);
  if (s == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  std::u32string chars;
  int64_t n;
  if (object.is_string()) {
    chars = DecodeUtf8(object.str());
    n = static_cast<int64_t>(chars.size());
  } else if (object.is_list()) {
    n = static_cast<int64_t>(object.list().size());
  } else {
    return Value::Undefined("'" + object.TypeName() + " object' is not subscriptable");
  }
  auto clamp = [n, s](std::optional<int64_t> index, int64_t fallback) {
    if (!index.has_value()) return fallback;
    int64_t i = *index;
    if (i < 0) {
      i += n;
      if (i < 0) i = s > 0 ? 0 : -1;
    } else if (i >= n) {
      i = s > 0 ? n : n - 1;
    }
    return i;
  };
  int64_t first = clamp(start, s > 0 ? 0 : n - 1);
  int64_t last = clamp(stop, s > 0 ? n : -1);
  std::vector<int64_t> indices;
  for (int64_t i = first; s > 0 ? i < last : i > last; i += s) indices.push_back(i);
  if (object.is_string()) {
    std::u32string out;
    for (int64_t i : indices) out.push_back(chars[i]);
    return Value::String(EncodeUtf8(out));
  }
  ValueList items;
  for (int64_t i : indices) items.push_back(object.list()[i]);
  return object.is_tuple() ? Value::Tuple(std::move(items)) : Value::List(std::move(items));
}

}  // namespace jinja
}  // namespace shardserve
