#include "model/jinja_format.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "common/status_macros.h"
#include "model/jinja_text.h"

namespace shardserve {
namespace jinja {
namespace {

// Pads `body` to `width` code points. align: '<' left, '>' right, '^' centre, '=' after the sign.
std::string Pad(std::string body, int64_t width, char align, const std::string& fill,
                size_t sign_length) {
  int64_t length = static_cast<int64_t>(CodePointCount(body));
  if (width <= length) return body;
  int64_t missing = width - length;
  auto repeat = [&fill](int64_t n) {
    std::string s;
    for (int64_t i = 0; i < n; ++i) s += fill;
    return s;
  };
  switch (align) {
    case '<':
      return body + repeat(missing);
    case '^':
      return repeat(missing / 2) + body + repeat(missing - missing / 2);
    case '=':
      return body.substr(0, sign_length) + repeat(missing) + body.substr(sign_length);
    default:
      return repeat(missing) + body;
  }
}

std::string Digits(uint64_t magnitude, int base, bool upper) {
  const char* symbols = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string digits;
  do {
    digits.insert(digits.begin(), symbols[magnitude % base]);
    magnitude /= base;
  } while (magnitude != 0);
  return digits;
}

struct Spec {
  std::string fill = " ";
  char align = 0;  // 0: the type's default
  char sign = '-';
  bool alternate = false;
  int64_t width = -1;
  int64_t precision = -1;
  char type = 0;
};

// Integer in base 10/16/8/2 with sign and prefix, before padding. Returns the sign length.
std::string FormatInteger(int64_t value, char type, const Spec& spec, size_t* sign_length) {
  int base = type == 'x' || type == 'X' ? 16 : type == 'o' ? 8 : type == 'b' ? 2 : 10;
  uint64_t magnitude = value < 0 ? 0 - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
  std::string digits = Digits(magnitude, base, type == 'X');
  if (spec.precision > static_cast<int64_t>(digits.size())) {
    digits.insert(0, spec.precision - digits.size(), '0');
  }
  std::string prefix;
  if (spec.alternate && base != 10) {
    prefix = type == 'X' ? "0X" : type == 'x' ? "0x" : type == 'o' ? "0o" : "0b";
  }
  std::string sign = value < 0 ? "-" : spec.sign == '+' ? "+" : spec.sign == ' ' ? " " : "";
  *sign_length = sign.size() + prefix.size();
  return sign + prefix + digits;
}

std::string FormatDouble(double value, char type, int64_t precision, bool alternate, char sign) {
  std::string format = "%";
  if (sign == '+' || sign == ' ') format.push_back(sign);
  if (alternate) format.push_back('#');
  format += "." + std::to_string(precision < 0 ? 6 : precision) + type;
  char buf[512];
  std::snprintf(buf, sizeof(buf), format.c_str(), value);
  return buf;
}

absl::StatusOr<int64_t> ToInteger(const Value& v, char conversion) {
  if (v.is_integral()) return v.int_value();
  if (v.is_float() && conversion != 'x' && conversion != 'X' && conversion != 'o') {
    if (!std::isfinite(v.number_value())) {
      return absl::InvalidArgumentError("cannot convert float infinity or NaN to integer");
    }
    return static_cast<int64_t>(v.number_value());
  }
  return absl::InvalidArgumentError(std::string("%") + conversion +
                                    " format: " + (v.is_float() ? "an integer" : "a real number") +
                                    " is required, not " + v.TypeName());
}

absl::StatusOr<double> ToDouble(const Value& v, char conversion) {
  if (v.is_number()) return v.number_value();
  return absl::InvalidArgumentError(std::string("%") + conversion +
                                    " format: a real number is required, not " + v.TypeName());
}

std::string TruncateCodePoints(const std::string& s, int64_t n) {
  if (n < 0) return s;
  std::u32string cps = DecodeUtf8(s);
  if (static_cast<int64_t>(cps.size()) <= n) return s;
  return EncodeUtf8(std::u32string_view(cps).substr(0, n));
}

// One %-conversion of `arg`.
absl::StatusOr<std::string> ConvertPercent(const Value& arg, char conversion, const Spec& spec,
                                           bool left, bool zero) {
  size_t sign_length = 0;
  std::string body;
  bool numeric = true;
  switch (conversion) {
    case 's':
    case 'r':
    case 'a':
      body = TruncateCodePoints(conversion == 's' ? arg.ToString() : arg.Repr(), spec.precision);
      numeric = false;
      break;
    case 'c':
      if (arg.is_string() && CodePointCount(arg.str()) == 1) {
        body = arg.str();
      } else if (arg.is_integral()) {
        AppendUtf8(static_cast<char32_t>(arg.int_value()), &body);
      } else {
        return absl::InvalidArgumentError("%c requires int or char");
      }
      numeric = false;
      break;
    case 'd':
    case 'i':
    case 'u':
    case 'x':
    case 'X':
    case 'o': {
      ASSIGN_OR_RETURN(int64_t i, ToInteger(arg, conversion));
      body = FormatInteger(i, conversion == 'i' || conversion == 'u' ? 'd' : conversion, spec,
                           &sign_length);
      break;
    }
    case 'e':
    case 'E':
    case 'f':
    case 'F':
    case 'g':
    case 'G': {
      ASSIGN_OR_RETURN(double d, ToDouble(arg, conversion));
      body = FormatDouble(d, conversion, spec.precision, spec.alternate, spec.sign);
      sign_length = (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) ? 1 : 0;
      break;
    }
    default:
      return absl::InvalidArgumentError(std::string("unsupported format character '") + conversion +
                                        "'");
  }
  if (left) return Pad(body, spec.width, '<', " ", 0);
  if (zero && numeric) return Pad(body, spec.width, '=', "0", sign_length);
  return Pad(body, spec.width, '>', " ", 0);
}

absl::StatusOr<Spec> ParseSpec(const std::string& text) {
  Spec spec;
  std::u32string s = DecodeUtf8(text);
  size_t i = 0;
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (s.size() >= 2 && is_align(s[1])) {
    spec.fill = EncodeUtf8(s.substr(0, 1));
    spec.align = static_cast<char>(s[1]);
    i = 2;
  } else if (!s.empty() && is_align(s[0])) {
    spec.align = static_cast<char>(s[0]);
    i = 1;
  }
  if (i < s.size() && (s[i] == '+' || s[i] == '-' || s[i] == ' '))
    spec.sign = static_cast<char>(s[i++]);
  if (i < s.size() && s[i] == '#') {
    spec.alternate = true;
    ++i;
  }
  if (i < s.size() && s[i] == '0') {
    if (spec.align == 0) {
      spec.fill = "0";
      spec.align = '=';
    }
    ++i;
  }
  auto number = [&s, &i]() {
    int64_t n = 0;
    while (i < s.size() && IsDigit(s[i])) n = n * 10 + (s[i++] - '0');
    return n;
  };
  if (i < s.size() && IsDigit(s[i])) spec.width = number();
  if (i < s.size() && s[i] == '.') {
    ++i;
    spec.precision = number();
  }
  if (i < s.size()) spec.type = static_cast<char>(s[i++]);
  if (i != s.size()) return absl::InvalidArgumentError("Invalid format specifier '" + text + "'");
  return spec;
}

absl::StatusOr<std::string> ApplySpec(const Value& value, const std::string& text) {
  if (text.empty()) return value.ToString();
  ASSIGN_OR_RETURN(Spec spec, ParseSpec(text));
  size_t sign_length = 0;
  std::string body;
  char default_align = '>';
  char type = spec.type;
  if (value.is_string()) {
    if (type != 0 && type != 's') {
      return absl::InvalidArgumentError(std::string("Unknown format code '") + type +
                                        "' for object of type 'str'");
    }
    body = TruncateCodePoints(value.str(), spec.precision);
    default_align = '<';
  } else if (value.is_integral() &&
             (type == 0 || std::string("dxXobc").find(type) != std::string::npos)) {
    if (type == 'c') {
      AppendUtf8(static_cast<char32_t>(value.int_value()), &body);
    } else if (type == 0 && value.is_bool()) {
      body = value.ToString();
    } else {
      Spec no_precision = spec;
      no_precision.precision = -1;
      body = FormatInteger(value.int_value(), type == 0 ? 'd' : type, no_precision, &sign_length);
    }
  } else if (value.is_number()) {
    double d = value.number_value();
    if (type == 0 && spec.precision < 0) {
      body = PyFloatRepr(d);
      if (spec.sign != '-' && d >= 0) body.insert(0, 1, spec.sign);
    } else if (type == '%') {
      body = FormatDouble(d * 100, 'f', spec.precision, spec.alternate, spec.sign) + "%";
    } else if (type == 0 || std::string("eEfFgG").find(type) != std::string::npos) {
      body = FormatDouble(d, type == 0 ? 'g' : type, spec.precision, spec.alternate, spec.sign);
    } else {
      return absl::InvalidArgumentError(std::string("Unknown format code '") + type +
                                        "' for object of type '" + value.TypeName() + "'");
    }
    sign_length = (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) ? 1 : 0;
  } else {
    return absl::InvalidArgumentError("unsupported format string passed to " + value.TypeName() +
                                      ".__format__");
  }
  return Pad(body, spec.width, spec.align == 0 ? default_align : spec.align, spec.fill,
             sign_length);
}

}  // namespace

absl::StatusOr<std::string> PercentFormat(const std::string& format, const Value& args) {
  std::vector<Value> positional;
  const Value* mapping = nullptr;
  if (args.is_tuple()) {
    positional = args.list();
  } else if (args.is_dict()) {
    mapping = &args;
  } else {
    positional.push_back(args);
  }
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    if (++i >= format.size()) return absl::InvalidArgumentError("incomplete format");
    Value keyed;
    const Value* arg = nullptr;
    if (format[i] == '(') {
      size_t close = format.find(')', i);
      if (close == std::string::npos) return absl::InvalidArgumentError("incomplete format key");
      if (mapping == nullptr) return absl::InvalidArgumentError("format requires a mapping");
      const Value* found = mapping->Find(format.substr(i + 1, close - i - 1));
      if (found == nullptr) {
        return absl::InvalidArgumentError("KeyError: " + format.substr(i + 1, close - i - 1));
      }
      arg = found;
      i = close + 1;
    }
    Spec spec;
    bool left = false, zero = false;
    for (; i < format.size() && std::string("-+ #0").find(format[i]) != std::string::npos; ++i) {
      char flag = format[i];
      if (flag == '-') left = true;
      if (flag == '0') zero = true;
      if (flag == '#') spec.alternate = true;
      if (flag == '+' || (flag == ' ' && spec.sign != '+')) spec.sign = flag;
    }
    auto read_number = [&](int64_t* target) -> absl::Status {
      if (i < format.size() && format[i] == '*') {
        if (next >= positional.size() || !positional[next].is_integral()) {
          return absl::InvalidArgumentError("* wants int");
        }
        *target = positional[next++].int_value();
        ++i;
        return absl::OkStatus();
      }
      int64_t n = 0;
      bool any = false;
      while (i < format.size() && absl::ascii_isdigit(static_cast<unsigned char>(format[i]))) {
        n = n * 10 + (format[i++] - '0');
        any = true;
      }
      if (any) *target = n;
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(read_number(&spec.width));
    if (i < format.size() && format[i] == '.') {
      ++i;
      spec.precision = 0;
      RETURN_IF_ERROR(read_number(&spec.precision));
    }
    while (i < format.size() && (format[i] == 'h' || format[i] == 'l' || format[i] == 'L')) ++i;
    if (i >= format.size()) return absl::InvalidArgumentError("incomplete format");
    char conversion = format[i];
    if (conversion == '%') {
      out.push_back('%');
      continue;
    }
    if (arg == nullptr) {
      if (mapping != nullptr) {
        arg = mapping;
      } else if (next < positional.size()) {
        arg = &positional[next++];
      } else {
        return absl::InvalidArgumentError("not enough arguments for format string");
      }
    }
    ASSIGN_OR_RETURN(std::string piece, ConvertPercent(*arg, conversion, spec, left, zero));
    out += piece;
  }
  if (mapping == nullptr && next < positional.size()) {
    return absl::InvalidArgumentError("not all arguments converted during string formatting");
  }
  return out;
}

absl::StatusOr<std::string> BraceFormat(const std::string& format, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    char c = format[i];
    if (c == '}') {
      if (i + 1 < format.size() && format[i + 1] == '}') {
        out.push_back('}');
        ++i;
        continue;
      }
      return absl::InvalidArgumentError("Single '}' encountered in format string");
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < format.size() && format[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    size_t close = format.find('}', i);
    if (close == std::string::npos) {
      return absl::InvalidArgumentError("Single '{' encountered in format string");
    }
    std::string field = format.substr(i + 1, close - i - 1);
    i = close;
    std::string spec;
    size_t colon = field.find(':');
    if (colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field.resize(colon);
    }
    char conversion = 0;
    size_t bang = field.find('!');
    if (bang != std::string::npos) {
      if (bang + 2 != field.size()) return absl::InvalidArgumentError("invalid conversion");
      conversion = field[bang + 1];
      field.resize(bang);
    }
    if (field.find_first_of(".[{") != std::string::npos) {
      return absl::UnimplementedError("str.format: attribute and index fields are not supported");
    }
    const Value* value = nullptr;
    if (field.empty() || absl::ascii_isdigit(static_cast<unsigned char>(field[0]))) {
      size_t index = field.empty() ? auto_index++ : std::strtoul(field.c_str(), nullptr, 10);
      if (index >= args.positional.size()) {
        return absl::InvalidArgumentError("Replacement index " + std::to_string(index) +
                                          " out of range for positional args tuple");
      }
      value = &args.positional[index];
    } else {
      for (const auto& [name, v] : args.keyword) {
        if (name == field) value = &v;
      }
      if (value == nullptr) return absl::InvalidArgumentError("KeyError: '" + field + "'");
    }
    Value converted = *value;
    if (conversion == 'r' || conversion == 'a') {
      converted = Value::String(value->Repr());
    } else if (conversion == 's') {
      converted = Value::String(value->ToString());
    } else if (conversion != 0) {
      return absl::InvalidArgumentError(std::string("Unknown conversion specifier ") + conversion);
    }
    ASSIGN_OR_RETURN(std::string piece, ApplySpec(converted, spec));
    out += piece;
  }
  return out;
}

}  // namespace jinja
}  // namespace shardserve
