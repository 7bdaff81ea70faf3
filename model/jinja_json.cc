#include "model/jinja_json.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/status/status.h"
#include "common/status_macros.h"
#include "model/jinja_text.h"

namespace shardserve {
namespace jinja {
namespace {

// Deep structures are rejected before they can exhaust the stack.
constexpr int kMaxDepth = 512;

void AppendEscapedUnit(unsigned unit, std::string* out) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "\\u%04x", unit);
  out->append(buf);
}

void AppendString(const std::string& s, bool ensure_ascii, std::string* out) {
  out->push_back('"');
  for (char32_t c : DecodeUtf8(s)) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (c < 0x20) {
          AppendEscapedUnit(c, out);
        } else if (ensure_ascii && c >= 0x80) {
          if (c >= 0x10000) {
            char32_t v = c - 0x10000;
            AppendEscapedUnit(0xD800 + (v >> 10), out);
            AppendEscapedUnit(0xDC00 + (v & 0x3FF), out);
          } else {
            AppendEscapedUnit(c, out);
          }
        } else {
          AppendUtf8(c, out);
        }
    }
  }
  out->push_back('"');
}

class Dumper {
 public:
  explicit Dumper(const JsonOptions& options) : options_(options) {
    bool indenting = options.indent.has_value();
    item_separator_ = options.item_separator.value_or(indenting ? "," : ", ");
    key_separator_ = options.key_separator.value_or(": ");
  }

  absl::Status Dump(const Value& value, int depth, std::string* out) {
    if (depth > kMaxDepth) return absl::InvalidArgumentError("tojson: structure nested too deeply");
    switch (value.kind()) {
      case Value::Kind::kNone:
        out->append("null");
        return absl::OkStatus();
      case Value::Kind::kBool:
        out->append(value.bool_value() ? "true" : "false");
        return absl::OkStatus();
      case Value::Kind::kInt:
        out->append(std::to_string(value.int_value()));
        return absl::OkStatus();
      case Value::Kind::kFloat: {
        double f = value.number_value();
        if (std::isnan(f)) {
          out->append("NaN");
        } else if (std::isinf(f)) {
          out->append(f > 0 ? "Infinity" : "-Infinity");
        } else {
          out->append(PyFloatRepr(f));
        }
        return absl::OkStatus();
      }
      case Value::Kind::kString:
        AppendString(value.str(), options_.ensure_ascii, out);
        return absl::OkStatus();
      case Value::Kind::kList: {
        if (value.list().empty()) {
          out->append("[]");
          return absl::OkStatus();
        }
        out->push_back('[');
        for (size_t i = 0; i < value.list().size(); ++i) {
          if (i > 0) out->append(item_separator_);
          NewLine(depth + 1, out);
          RETURN_IF_ERROR(Dump(value.list()[i], depth + 1, out));
        }
        NewLine(depth, out);
        out->push_back(']');
        return absl::OkStatus();
      }
      case Value::Kind::kDict: {
        if (value.dict().empty()) {
          out->append("{}");
          return absl::OkStatus();
        }
        std::vector<const std::pair<std::string, Value>*> items;
        for (const auto& item : value.dict()) items.push_back(&item);
        if (options_.sort_keys) {
          // Python orders str keys by code point, which is UTF-8 byte order.
          std::stable_sort(items.begin(), items.end(),
                           [](const auto* a, const auto* b) { return a->first < b->first; });
        }
        out->push_back('{');
        for (size_t i = 0; i < items.size(); ++i) {
          if (i > 0) out->append(item_separator_);
          NewLine(depth + 1, out);
          AppendString(items[i]->first, options_.ensure_ascii, out);
          out->append(key_separator_);
          RETURN_IF_ERROR(Dump(items[i]->second, depth + 1, out));
        }
        NewLine(depth, out);
        out->push_back('}');
        return absl::OkStatus();
      }
      default:
        return absl::InvalidArgumentError("Object of type " + value.TypeName() +
                                          " is not JSON serializable");
    }
  }

 private:
  void NewLine(int depth, std::string* out) const {
    if (!options_.indent.has_value()) return;
    out->push_back('\n');
    for (int i = 0; i < depth; ++i) out->append(*options_.indent);
  }

  const JsonOptions& options_;
  std::string item_separator_;
  std::string key_separator_;
};

}  // namespace

absl::StatusOr<std::string> DumpJson(const Value& value, const JsonOptions& options) {
  std::string out;
  Dumper dumper(options);
  RETURN_IF_ERROR(dumper.Dump(value, 0, &out));
  return out;
}

}  // namespace jinja
}  // namespace shardserve
