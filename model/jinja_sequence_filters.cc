#include "model/jinja_sequence_filters.h"

#include <algorithm>
#include <functional>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "common/status_macros.h"
#include "model/jinja_evaluator.h"
#include "model/jinja_operators.h"
#include "model/jinja_text.h"

namespace shardserve {
namespace jinja {
namespace {

using KeyFunction = std::function<absl::StatusOr<Value>(const Value&)>;

absl::StatusOr<std::vector<Value>> Bind(const char* filter, CallArgs& args,
                                        const std::vector<Param>& params) {
  return BindArgs(filter, args, params);
}

Value IgnoreCase(const Value& v) { return v.is_string() ? Value::String(PyLower(v.str())) : v; }

// jinja2's make_attrgetter: "a.b.0" looks up a, then b, then item 0.
KeyFunction AttrGetter(Evaluator& ev, const Value& attribute, std::optional<Value> default_value,
                       bool ignore_case) {
  std::vector<Value> parts;
  if (attribute.is_string()) {
    const std::string dot = ".";
    for (const std::string& part : PySplit(attribute.str(), &dot, -1, false)) {
      bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      });
      parts.push_back(digits ? Value::Int(std::strtoll(part.c_str(), nullptr, 10))
                             : Value::String(part));
    }
  } else {
    parts.push_back(attribute);
  }
  return [&ev, parts, default_value, ignore_case](const Value& item) -> absl::StatusOr<Value> {
    Value current = item;
    for (const Value& part : parts) {
      ASSIGN_OR_RETURN(current, ev.GetItem(current, part));
      if (default_value.has_value() && current.is_undefined()) current = *default_value;
    }
    return ignore_case ? IgnoreCase(current) : current;
  };
}

KeyFunction Identity(bool ignore_case) {
  return [ignore_case](const Value& v) -> absl::StatusOr<Value> {
    return ignore_case ? IgnoreCase(v) : v;
  };
}

KeyFunction KeyFor(Evaluator& ev, const Value& attribute, bool case_sensitive) {
  if (attribute.is_none() || attribute.is_undefined()) return Identity(!case_sensitive);
  return AttrGetter(ev, attribute, std::nullopt, !case_sensitive);
}

// Stable sort by key, Python's sorted(reverse=...) included.
absl::Status SortByKey(ValueList* items, const KeyFunction& key, bool reverse) {
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : *items) {
    ASSIGN_OR_RETURN(Value k, key(item));
    keyed.emplace_back(std::move(k), std::move(item));
  }
  absl::Status error;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    if (!error.ok()) return false;
    absl::StatusOr<int> c =
        reverse ? ThreeWayCompare(b.first, a.first) : ThreeWayCompare(a.first, b.first);
    if (!c.ok()) {
      error = c.status();
      return false;
    }
    return *c < 0;
  });
  RETURN_IF_ERROR(error);
  items->clear();
  for (auto& [k, item] : keyed) items->push_back(std::move(item));
  return absl::OkStatus();
}

absl::StatusOr<ValueList> IterateCharged(Evaluator& ev, const Value& v) {
  ASSIGN_OR_RETURN(ValueList items, ev.Iterate(v));
  RETURN_IF_ERROR(ev.ChargeIterations(static_cast<int64_t>(items.size())));
  return items;
}

absl::StatusOr<Value> DictSort(Evaluator&, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a, Bind("dictsort", args,
                                {{"case_sensitive", Value::Bool(false)},
                                 {"by", Value::String("key")},
                                 {"reverse", Value::Bool(false)}}));
  if (!v.is_dict()) return absl::InvalidArgumentError("dictsort: expected a mapping");
  std::string by = a[1].ToString();
  if (by != "key" && by != "value") {
    return absl::InvalidArgumentError("You can only sort by either 'key' or 'value'");
  }
  ValueList items;
  for (const auto& [key, value] : v.dict())
    items.push_back(Value::Tuple({Value::String(key), value}));
  bool ignore_case = !a[0].Truthy();
  size_t position = by == "key" ? 0 : 1;
  RETURN_IF_ERROR(SortByKey(
      &items,
      [&](const Value& item) -> absl::StatusOr<Value> {
        const Value& k = item.list()[position];
        return ignore_case ? IgnoreCase(k) : k;
      },
      a[2].Truthy()));
  return Value::List(std::move(items));
}

absl::StatusOr<Value> Join(Evaluator& ev, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a,
                   Bind("join", args, {{"d", Value::String("")}, {"attribute", Value::None()}}));
  ASSIGN_OR_RETURN(ValueList items, IterateCharged(ev, v));
  KeyFunction key = KeyFor(ev, a[1], true);
  std::string out, separator = a[0].ToString();
  for (size_t i = 0; i < items.size(); ++i) {
    ASSIGN_OR_RETURN(Value item, key(items[i]));
    if (i > 0) out += separator;
    out += item.ToString();
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Map(Evaluator& ev, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(ValueList items, IterateCharged(ev, v));
  ValueList out;
  if (args.positional.empty()) {
    ASSIGN_OR_RETURN(auto a,
                     Bind("map", args, {{"attribute", Value(), true}, {"default", Value::None()}}));
    std::optional<Value> default_value;
    if (!a[1].is_none()) default_value = a[1];
    KeyFunction get = AttrGetter(ev, a[0], default_value, false);
    for (const Value& item : items) {
      ASSIGN_OR_RETURN(Value mapped, get(item));
      out.push_back(std::move(mapped));
    }
    return Value::List(std::move(out));
  }
  std::string filter = args.positional[0].ToString();
  CallArgs rest{ValueList(args.positional.begin() + 1, args.positional.end()), args.keyword};
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value mapped, ev.ApplyFilter(filter, item, rest));
    out.push_back(std::move(mapped));
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> MinOrMax(Evaluator& ev, const Value& v, CallArgs& args, bool max) {
  ASSIGN_OR_RETURN(auto a,
                   Bind(max ? "max" : "min", args,
                        {{"case_sensitive", Value::Bool(false)}, {"attribute", Value::None()}}));
  ASSIGN_OR_RETURN(ValueList items, IterateCharged(ev, v));
  if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  KeyFunction key = KeyFor(ev, a[1], a[0].Truthy());
  size_t best = 0;
  ASSIGN_OR_RETURN(Value best_key, key(items[0]));
  for (size_t i = 1; i < items.size(); ++i) {
    ASSIGN_OR_RETURN(Value k, key(items[i]));
    ASSIGN_OR_RETURN(int c, ThreeWayCompare(k, best_key));
    if (max ? c > 0 : c < 0) {
      best = i;
      best_key = k;
    }
  }
  return items[best];
}

absl::StatusOr<Value> Max(Evaluator& ev, const Value& v, CallArgs& args) {
  return MinOrMax(ev, v, args, true);
}

absl::StatusOr<Value> Min(Evaluator& ev, const Value& v, CallArgs& args) {
  return MinOrMax(ev, v, args, false);
}

// select/reject/selectattr/rejectattr.
absl::StatusOr<Value> Choose(Evaluator& ev, const Value& v, CallArgs& args, bool by_attribute,
                             bool keep) {
  ASSIGN_OR_RETURN(ValueList items, IterateCharged(ev, v));
  ValueList positional = args.positional;
  KeyFunction key = Identity(false);
  if (by_attribute) {
    if (positional.empty())
      return absl::InvalidArgumentError("Missing parameter for attribute name");
    key = AttrGetter(ev, positional[0], std::nullopt, false);
    positional.erase(positional.begin());
  }
  std::string test;
  if (!positional.empty()) {
    test = positional[0].ToString();
    positional.erase(positional.begin());
  }
  CallArgs test_args{positional, args.keyword};
  ValueList out;
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value subject, key(item));
    bool passed;
    if (test.empty()) {
      passed = subject.Truthy();
    } else {
      ASSIGN_OR_RETURN(passed, ev.ApplyTest(test, subject, test_args));
    }
    if (passed == keep) out.push_back(item);
  }
  return Value::List(std::move(out));
}

absl::StatusOr<Value> Select(Evaluator& ev, const Value& v, CallArgs& a) {
  return Choose(ev, v, a, false, true);
}

absl::StatusOr<Value> Reject(Evaluator& ev, const Value& v, CallArgs& a) {
  return Choose(ev, v, a, false, false);
}

absl::StatusOr<Value> SelectAttr(Evaluator& ev, const Value& v, CallArgs& a) {
  return Choose(ev, v, a, true, true);
}

absl::StatusOr<Value> RejectAttr(Evaluator& ev, const Value& v, CallArgs& a) {
  return Choose(ev, v, a, true, false);
}

absl::StatusOr<Value> Sort(Evaluator& ev, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a, Bind("sort", args,
                                {{"reverse", Value::Bool(false)},
                                 {"case_sensitive", Value::Bool(false)},
                                 {"attribute", Value::None()}}));
  ASSIGN_OR_RETURN(ValueList items, IterateCharged(ev, v));
  RETURN_IF_ERROR(SortByKey(&items, KeyFor(ev, a[2], a[1].Truthy()), a[0].Truthy()));
  return Value::List(std::move(items));
}

absl::StatusOr<Value> Sum(Evaluator& ev, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(auto a,
                   Bind("sum", args, {{"attribute", Value::None()}, {"start", Value::Int(0)}}));
  ASSIGN_OR_RETURN(ValueList items, IterateCharged(ev, v));
  KeyFunction key = KeyFor(ev, a[0], true);
  Value total = a[1];
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value term, key(item));
    ASSIGN_OR_RETURN(total, BinaryOp("+", total, term));
  }
  return total;
}

absl::StatusOr<Value> Unique(Evaluator& ev, const Value& v, CallArgs& args) {
  ASSIGN_OR_RETURN(
      auto a,
      Bind("unique", args, {{"case_sensitive", Value::Bool(false)}, {"attribute", Value::None()}}));
  ASSIGN_OR_RETURN(ValueList items, IterateCharged(ev, v));
  KeyFunction key = KeyFor(ev, a[1], a[0].Truthy());
  ValueList seen, out;
  for (const Value& item : items) {
    ASSIGN_OR_RETURN(Value k, key(item));
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return ValuesEqual(s, k); })) {
      continue;
    }
    seen.push_back(std::move(k));
    out.push_back(item);
  }
  return Value::List(std::move(out));
}

}  // namespace

void AddSequenceFilters(std::unordered_map<std::string, FilterFunction>* filters) {
  filters->insert({
      {"dictsort", DictSort},
      {"join", Join},
      {"map", Map},
      {"max", Max},
      {"min", Min},
      {"reject", Reject},
      {"rejectattr", RejectAttr},
      {"select", Select},
      {"selectattr", SelectAttr},
      {"sort", Sort},
      {"sum", Sum},
      {"unique", Unique},
  });
}

}  // namespace jinja
}  // namespace shardserve
