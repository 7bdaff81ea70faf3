#include "model/jinja_text.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace shardserve {
namespace jinja {
namespace {

constexpr char32_t kEscapedByteBase = 0xDC00;  // lone bytes map to U+DC80..U+DCFF

// Pairs where upper and lower case differ by one and alternate (upper even or odd as given).
struct AlternatingRange {
  char32_t first;
  char32_t last;
  bool upper_is_even;
};
constexpr AlternatingRange kAlternating[] = {
    {0x0100, 0x0137, true},  {0x0139, 0x0148, false}, {0x014A, 0x0177, true},
    {0x0179, 0x017E, false}, {0x01DE, 0x01EF, true},  {0x01F8, 0x021F, true},
    {0x0460, 0x0481, true},  {0x048A, 0x04BF, true},  {0x04D0, 0x052F, true},
    {0x1E00, 0x1E95, true},  {0x1EA0, 0x1EFF, true},
};

// Ranges where lower = upper + delta.
struct OffsetRange {
  char32_t upper_first;
  char32_t upper_last;
  int delta;
};
constexpr OffsetRange kOffsets[] = {
    {0x0041, 0x005A, 32}, {0x00C0, 0x00D6, 32}, {0x00D8, 0x00DE, 32}, {0x0391, 0x03A1, 32},
    {0x03A3, 0x03AB, 32}, {0x0388, 0x038A, 37}, {0x038E, 0x038F, 63}, {0x0410, 0x042F, 32},
    {0x0400, 0x040F, 80}, {0x0531, 0x0556, 48}, {0xFF21, 0xFF3A, 32},
};

// The Latin digraphs DŽ/Dž/dž, LJ/Lj/lj, NJ/Nj/nj, DZ/Dz/dz: upper, title and lower forms.
bool IsDigraph(char32_t c) { return (c >= 0x01C4 && c <= 0x01CC) || (c >= 0x01F1 && c <= 0x01F3); }
char32_t DigraphBase(char32_t c) { return c >= 0x01F1 ? 0x01F1 : 0x01C4 + (c - 0x01C4) / 3 * 3; }
bool IsTitleCase(char32_t c) { return IsDigraph(c) && c == DigraphBase(c) + 1; }

char32_t SimpleLower(char32_t c) {
  if (IsDigraph(c)) return DigraphBase(c) + 2;
  for (const auto& r : kOffsets) {
    if (c >= r.upper_first && c <= r.upper_last) return c + r.delta;
  }
  for (const auto& r : kAlternating) {
    if (c >= r.first && c <= r.last && ((c % 2 == 0) == r.upper_is_even)) return c + 1;
  }
  switch (c) {
    case 0x0178:
      return 0x00FF;
    case 0x0386:
      return 0x03AC;
    case 0x038C:
      return 0x03CC;
    case 0x0130:
      return 'i';
    default:
      return c;
  }
}

char32_t SimpleUpper(char32_t c) {
  if (IsDigraph(c)) return DigraphBase(c);
  for (const auto& r : kOffsets) {
    if (c >= r.upper_first + r.delta && c <= r.upper_last + r.delta) return c - r.delta;
  }
  for (const auto& r : kAlternating) {
    if (c >= r.first && c <= r.last && ((c % 2 == 0) != r.upper_is_even)) return c - 1;
  }
  switch (c) {
    case 0x00FF:
      return 0x0178;
    case 0x00B5:
      return 0x039C;
    case 0x03AC:
      return 0x0386;
    case 0x03CC:
      return 0x038C;
    case 0x03C2:
      return 0x03A3;
    case 0x0131:
      return 'I';
    case 0x017F:
      return 'S';
    default:
      return c;
  }
}

void AppendUpper(char32_t c, std::u32string* out) {
  if (c == 0x00DF) {  // ß has no single upper-case letter
    out->append(U"SS");
  } else {
    out->push_back(SimpleUpper(c));
  }
}

// Title case (str.title, str.capitalize) differs from upper case for ß and the digraphs.
void AppendTitle(char32_t c, std::u32string* out) {
  if (c == 0x00DF) {
    out->append(U"Ss");
  } else if (IsDigraph(c)) {
    out->push_back(DigraphBase(c) + 1);
  } else {
    out->push_back(SimpleUpper(c));
  }
}

// Python lowers a capital sigma to final sigma at the end of a word.
char32_t LowerAt(const std::u32string& s, size_t i) {
  if (s[i] != 0x03A3) return SimpleLower(s[i]);
  bool cased_before = i > 0 && IsCased(s[i - 1]);
  bool cased_after = i + 1 < s.size() && IsCased(s[i + 1]);
  return cased_before && !cased_after ? 0x03C2 : 0x03C3;
}

bool InSet(char32_t c, const std::u32string& set) { return set.find(c) != std::u32string::npos; }

std::u32string StripSet(const std::string* chars) {
  return chars == nullptr ? std::u32string() : DecodeUtf8(*chars);
}

bool IsStripped(char32_t c, const std::string* chars, const std::u32string& set) {
  return chars == nullptr ? IsPySpace(c) : InSet(c, set);
}

}  // namespace

std::u32string DecodeUtf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    unsigned char b = static_cast<unsigned char>(text[i]);
    int extra = b < 0x80           ? 0
                : (b >> 5) == 0x6  ? 1
                : (b >> 4) == 0xE  ? 2
                : (b >> 3) == 0x1E ? 3
                                   : -1;
    char32_t cp = extra == 0 ? b : extra == 1 ? (b & 0x1F) : extra == 2 ? (b & 0x0F) : (b & 0x07);
    bool ok = extra >= 0 && i + extra < text.size();
    for (int k = 1; ok && k <= extra; ++k) {
      unsigned char c = static_cast<unsigned char>(text[i + k]);
      if ((c & 0xC0) != 0x80) ok = false;
      cp = (cp << 6) | (c & 0x3F);
    }
    // Reject overlong forms, surrogates and out-of-range values, as Python's decoder does.
    if (ok && ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) ||
               (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))) {
      ok = false;
    }
    if (!ok) {
      out.push_back(kEscapedByteBase + b);
      ++i;
      continue;
    }
    out.push_back(cp);
    i += extra + 1;
  }
  return out;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp >= kEscapedByteBase + 0x80 && cp <= kEscapedByteBase + 0xFF) {
    out->push_back(static_cast<char>(cp - kEscapedByteBase));
  } else if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string EncodeUtf8(std::u32string_view code_points) {
  std::string out;
  out.reserve(code_points.size());
  for (char32_t c : code_points) AppendUtf8(c, &out);
  return out;
}

size_t CodePointCount(std::string_view text) {
  bool ascii = true;
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      ascii = false;
      break;
    }
  }
  return ascii ? text.size() : DecodeUtf8(text).size();
}

bool IsPySpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

bool IsPyPrintable(char32_t c) {
  if (c == ' ') return true;
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if (IsPySpace(c)) return false;
  if ((c >= 0x0600 && c <= 0x0605) || c == 0x061C || c == 0x06DD || c == 0x070F) return false;
  if (c == 0x180E || (c >= 0x200B && c <= 0x200F) || (c >= 0x202A && c <= 0x202E)) return false;
  if ((c >= 0x2060 && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB)) return false;
  if ((c >= 0xD800 && c <= 0xF8FF) || (c >= 0xE0000 && c <= 0xE007F) || c >= 0xF0000) return false;
  return true;
}

bool IsUpperCase(char32_t c) { return SimpleLower(c) != c && !IsTitleCase(c); }
bool IsLowerCase(char32_t c) { return (SimpleUpper(c) != c && !IsTitleCase(c)) || c == 0x00DF; }
bool IsCased(char32_t c) { return IsUpperCase(c) || IsLowerCase(c) || IsTitleCase(c); }
bool IsDigit(char32_t c) { return c >= '0' && c <= '9'; }

bool IsAlpha(char32_t c) {
  if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
  if (IsCased(c)) return true;
  // Scripts without case: CJK, kana, hangul, Hebrew, Arabic, Indic and Thai letters.
  return (c >= 0x05D0 && c <= 0x05EA) || (c >= 0x0620 && c <= 0x064A) ||
         (c >= 0x0904 && c <= 0x0939) || (c >= 0x0E01 && c <= 0x0E30) ||
         (c >= 0x3041 && c <= 0x30FF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xAC00 && c <= 0xD7A3);
}

namespace {
bool CaseIs(std::string_view s, bool upper) {
  bool cased = false;
  for (char32_t c : DecodeUtf8(s)) {
    if (upper ? IsLowerCase(c) : IsUpperCase(c)) return false;
    if (upper ? IsUpperCase(c) : IsLowerCase(c)) cased = true;
  }
  return cased;
}
}  // namespace

bool PyIsUpper(std::string_view text) { return CaseIs(text, true); }
bool PyIsLower(std::string_view text) { return CaseIs(text, false); }

std::string PyUpper(std::string_view text) {
  std::u32string in = DecodeUtf8(text), out;
  out.reserve(in.size());
  for (char32_t c : in) AppendUpper(c, &out);
  return EncodeUtf8(out);
}

std::string PyLower(std::string_view text) {
  std::u32string in = DecodeUtf8(text), out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) out.push_back(LowerAt(in, i));
  return EncodeUtf8(out);
}

std::string PyCapitalize(std::string_view text) {
  std::u32string in = DecodeUtf8(text), out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (i == 0) {
      AppendTitle(in[i], &out);
    } else {
      out.push_back(LowerAt(in, i));
    }
  }
  return EncodeUtf8(out);
}

std::string PyTitle(std::string_view text) {
  std::u32string in = DecodeUtf8(text), out;
  bool previous_cased = false;
  for (size_t i = 0; i < in.size(); ++i) {
    char32_t c = in[i];
    if (previous_cased) {
      out.push_back(LowerAt(in, i));
    } else {
      AppendTitle(c, &out);
    }
    previous_cased = IsCased(c);
  }
  return EncodeUtf8(out);
}

std::string PySwapCase(std::string_view text) {
  std::u32string in = DecodeUtf8(text), out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (IsUpperCase(in[i])) {
      out.push_back(LowerAt(in, i));
    } else if (IsLowerCase(in[i])) {
      AppendUpper(in[i], &out);
    } else {
      out.push_back(in[i]);
    }
  }
  return EncodeUtf8(out);
}

std::string PyStrip(std::string_view text, const std::string* chars, bool left, bool right) {
  std::u32string s = DecodeUtf8(text);
  std::u32string set = StripSet(chars);
  size_t begin = 0, end = s.size();
  while (left && begin < end && IsStripped(s[begin], chars, set)) ++begin;
  while (right && end > begin && IsStripped(s[end - 1], chars, set)) --end;
  return EncodeUtf8(std::u32string_view(s).substr(begin, end - begin));
}

std::vector<std::string> PySplit(std::string_view text, const std::string* sep, int64_t max_split,
                                 bool from_right) {
  std::vector<std::string> parts;
  if (sep != nullptr) {
    // Exact separator: work on bytes, since UTF-8 matching is byte-exact.
    if (sep->empty()) return parts;
    if (!from_right) {
      size_t start = 0;
      while (max_split < 0 || static_cast<int64_t>(parts.size()) < max_split) {
        size_t hit = text.find(*sep, start);
        if (hit == std::string_view::npos) break;
        parts.emplace_back(text.substr(start, hit - start));
        start = hit + sep->size();
      }
      parts.emplace_back(text.substr(start));
    } else {
      size_t end = text.size();
      while (max_split < 0 || static_cast<int64_t>(parts.size()) < max_split) {
        if (end < sep->size()) break;
        size_t hit = text.rfind(*sep, end - sep->size());
        if (hit == std::string_view::npos) break;
        parts.emplace_back(text.substr(hit + sep->size(), end - hit - sep->size()));
        end = hit;
      }
      parts.emplace_back(text.substr(0, end));
      std::reverse(parts.begin(), parts.end());
    }
    return parts;
  }
  std::u32string s = DecodeUtf8(text);
  if (!from_right) {
    size_t i = 0;
    while (true) {
      while (i < s.size() && IsPySpace(s[i])) ++i;
      if (i == s.size()) break;
      if (max_split >= 0 && static_cast<int64_t>(parts.size()) == max_split) {
        size_t end = s.size();
        while (end > i && IsPySpace(s[end - 1])) --end;
        parts.push_back(EncodeUtf8(std::u32string_view(s).substr(i, end - i)));
        break;
      }
      size_t start = i;
      while (i < s.size() && !IsPySpace(s[i])) ++i;
      parts.push_back(EncodeUtf8(std::u32string_view(s).substr(start, i - start)));
    }
  } else {
    size_t i = s.size();
    while (true) {
      while (i > 0 && IsPySpace(s[i - 1])) --i;
      if (i == 0) break;
      if (max_split >= 0 && static_cast<int64_t>(parts.size()) == max_split) {
        size_t begin = 0;
        while (begin < i && IsPySpace(s[begin])) ++begin;
        parts.push_back(EncodeUtf8(std::u32string_view(s).substr(begin, i - begin)));
        break;
      }
      size_t end = i;
      while (i > 0 && !IsPySpace(s[i - 1])) --i;
      parts.push_back(EncodeUtf8(std::u32string_view(s).substr(i, end - i)));
    }
    std::reverse(parts.begin(), parts.end());
  }
  return parts;
}

std::vector<std::string> PySplitLines(std::string_view text) {
  std::u32string s = DecodeUtf8(text);
  std::vector<std::string> lines;
  size_t start = 0, i = 0;
  auto is_break = [](char32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) ||
           c == 0x85 || c == 0x2028 || c == 0x2029;
  };
  while (i < s.size()) {
    if (is_break(s[i])) {
      lines.push_back(EncodeUtf8(std::u32string_view(s).substr(start, i - start)));
      if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      start = ++i;
    } else {
      ++i;
    }
  }
  if (start < s.size()) lines.push_back(EncodeUtf8(std::u32string_view(s).substr(start)));
  return lines;
}

std::string PyReplace(std::string_view text, std::string_view old, std::string_view replacement,
                      int64_t count) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {
    std::u32string s = DecodeUtf8(text);
    for (size_t i = 0; i <= s.size(); ++i) {
      if (count < 0 || done < count) {
        out.append(replacement);
        ++done;
      }
      if (i < s.size()) AppendUtf8(s[i], &out);
    }
    return out;
  }
  size_t start = 0;
  while (count < 0 || done < count) {
    size_t hit = text.find(old, start);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(start, hit - start));
    out.append(replacement);
    start = hit + old.size();
    ++done;
  }
  out.append(text.substr(start));
  return out;
}

int64_t PyFind(std::string_view text, std::string_view needle, bool from_right) {
  size_t hit = from_right ? text.rfind(needle) : text.find(needle);
  if (hit == std::string_view::npos) return -1;
  return static_cast<int64_t>(CodePointCount(text.substr(0, hit)));
}

int64_t PyCount(std::string_view text, std::string_view needle) {
  if (needle.empty()) return static_cast<int64_t>(CodePointCount(text)) + 1;
  int64_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string_view::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

std::string PyStrRepr(std::string_view text) {
  bool has_single = text.find('\'') != std::string_view::npos;
  bool has_double = text.find('"') != std::string_view::npos;
  char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : DecodeUtf8(text)) {
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out.append("\\t");
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (c >= kEscapedByteBase + 0x80 && c <= kEscapedByteBase + 0xFF) {
      char buf[12];
      std::snprintf(buf, sizeof(buf), "\\udc%02x", static_cast<unsigned>(c & 0xFF));
      out.append(buf);
    } else if (!IsPyPrintable(c)) {
      char buf[12];
      if (c < 0x100) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(c));
      } else if (c < 0x10000) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      } else {
        std::snprintf(buf, sizeof(buf), "\\U%08x", static_cast<unsigned>(c));
      }
      out.append(buf);
    } else {
      AppendUtf8(c, &out);
    }
  }
  out.push_back(quote);
  return out;
}

std::string PyFloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  // Shortest round-tripping precision; "%.*e" rounds correctly, so its digits are CPython's.
  char buf[40];
  int precision = 1;
  for (; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*e", precision - 1, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  std::string mantissa(buf, std::strchr(buf, 'e'));
  int exponent = std::atoi(std::strchr(buf, 'e') + 1);
  bool negative = mantissa[0] == '-';
  std::string digits;
  for (char c : mantissa) {
    if (c >= '0' && c <= '9') digits.push_back(c);
  }
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  int point = exponent + 1;  // digits before the decimal point
  std::string out = negative ? "-" : "";
  if (point > 16 || point < -3) {
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp_buf[16];
    std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exponent < 0 ? '-' : '+',
                  std::abs(exponent));
    return out + exp_buf;
  }
  if (point <= 0) return out + "0." + std::string(-point, '0') + digits;
  if (static_cast<size_t>(point) >= digits.size()) {
    return out + digits + std::string(point - digits.size(), '0') + ".0";
  }
  return out + digits.substr(0, point) + "." + digits.substr(point);
}

}  // namespace jinja
}  // namespace shardserve
