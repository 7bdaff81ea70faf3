#include "model/jinja_lexer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/jinja_text.h"

namespace shardserve {
namespace jinja {
namespace {

bool IsDigitChar(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return absl::ascii_isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsNameChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Whitespace as Python's regex \s and str.strip() see it, on UTF-8 text.
size_t SkipWhitespace(const std::string& s, size_t pos) {
  while (pos < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[pos]);
    if (c < 0x80) {
      if (!IsPySpace(c)) break;
      ++pos;
      continue;
    }
    size_t length = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
    std::u32string cp = DecodeUtf8(std::string_view(s).substr(pos, length));
    if (cp.size() != 1 || !IsPySpace(cp[0])) break;
    pos += length;
  }
  return pos;
}

std::string RStripWhitespace(const std::string& s) {
  std::u32string cps = DecodeUtf8(s);
  size_t end = cps.size();
  while (end > 0 && IsPySpace(cps[end - 1])) --end;
  return EncodeUtf8(std::u32string_view(cps).substr(0, end));
}

// Python's unicode-escape decoding of a string literal's body.
absl::StatusOr<std::string> Unescape(std::string_view raw) {
  std::string out;
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c != '\\' || i + 1 >= raw.size()) {
      out.push_back(c);
      continue;
    }
    char e = raw[++i];
    auto hex = [&](int digits) -> absl::StatusOr<char32_t> {
      char32_t value = 0;
      for (int k = 1; k <= digits; ++k) {
        char h = i + k < raw.size() ? raw[i + k] : '\0';
        if (!absl::ascii_isxdigit(static_cast<unsigned char>(h))) {
          const char* shape = digits == 2 ? "\\xXX" : digits == 4 ? "\\uXXXX" : "\\UXXXXXXXX";
          return absl::InvalidArgumentError(absl::StrCat("truncated ", shape, " escape"));
        }
        value = value * 16 + (IsDigitChar(h) ? h - '0' : (absl::ascii_tolower(h) - 'a' + 10));
      }
      i += digits;
      return value;
    };
    switch (e) {
      case '\n':
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        ASSIGN_OR_RETURN(char32_t value, hex(e == 'x' ? 2 : e == 'u' ? 4 : 8));
        if (value > 0x10FFFF) return absl::InvalidArgumentError("illegal Unicode character");
        AppendUtf8(value, &out);
        break;
      }
      case 'N':
        return absl::UnimplementedError("\\N{...} escapes are not supported");
      default:
        if (e >= '0' && e <= '7') {
          char32_t value = e - '0';
          for (int k = 0; k < 2 && i + 1 < raw.size() && raw[i + 1] >= '0' && raw[i + 1] <= '7';
               ++k) {
            value = value * 8 + (raw[++i] - '0');
          }
          AppendUtf8(value, &out);
        } else if (static_cast<unsigned char>(e) >= 0x80) {
          // Python first writes a non-ASCII character as \xNN / \uNNNN, so the backslash before
          // it escapes only itself.
          size_t length = 1;
          while (i + length < raw.size() &&
                 (static_cast<unsigned char>(raw[i + length]) & 0xC0) == 0x80) {
            ++length;
          }
          char32_t cp = DecodeUtf8(raw.substr(i, length))[0];
          char buf[16];
          std::snprintf(buf, sizeof(buf),
                        cp < 0x100     ? "\\x%02x"
                        : cp < 0x10000 ? "\\u%04x"
                                       : "\\U%08x",
                        static_cast<unsigned>(cp));
          out.append(buf);
          i += length - 1;
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      size_t start = FindTagStart(pos_);
      if (start == std::string::npos) {
        EmitText(src_.substr(pos_));
        pos_ = src_.size();
        break;
      }
      char kind = src_[start + 1];
      size_t after = start + 2;
      char sign =
          after < src_.size() && (src_[after] == '-' || src_[after] == '+') ? src_[after] : 0;
      size_t raw_end = kind == '%' ? MatchRawBegin(after) : std::string::npos;
      std::string text = src_.substr(pos_, start - pos_);
      EmitText(StripBefore(text, sign, kind != '{'));
      line_ += std::count(text.begin(), text.end(), '\n');
      if (raw_end != std::string::npos) {
        line_ += std::count(src_.begin() + start, src_.begin() + raw_end, '\n');
        pos_ = raw_end;
        line_starting_ = src_[raw_end - 1] == '\n';
        RETURN_IF_ERROR(LexRaw());
      } else if (kind == '#') {
        pos_ = after + (sign ? 1 : 0);
        RETURN_IF_ERROR(LexComment());
      } else {
        Push(kind == '{' ? Token::Type::kVariableBegin : Token::Type::kBlockBegin);
        pos_ = after + (sign ? 1 : 0);
        RETURN_IF_ERROR(LexTag(kind));
      }
    }
    Push(Token::Type::kEnd);
    return std::move(tokens_);
  }

 private:
  size_t FindTagStart(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string::npos;
  }

  // `{% raw %}` (with optional -/+): returns the position after it, or npos.
  size_t MatchRawBegin(size_t after) const {
    size_t p = after;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p = SkipWhitespace(src_, p);
    if (src_.compare(p, 3, "raw") != 0) return std::string::npos;
    p = SkipWhitespace(src_, p + 3);
    if (src_.compare(p, 3, "-%}") == 0) return SkipWhitespace(src_, p + 3);
    if (src_.compare(p, 2, "%}") == 0) return p + 2;
    return std::string::npos;
  }

  // The text before a tag, after `-` stripping or lstrip_blocks.
  std::string StripBefore(const std::string& text, char sign, bool lstrip_applies) const {
    if (sign == '-') return RStripWhitespace(text);
    if (sign == '+' || !lstrip_applies) return text;
    size_t line_start = text.rfind('\n');
    line_start = line_start == std::string::npos ? 0 : line_start + 1;
    if (line_start == 0 && !line_starting_) return text;
    if (line_start < text.size() && SkipWhitespace(text, line_start) == text.size()) {
      return text.substr(0, line_start);
    }
    return text;
  }

  void EmitText(std::string text) {
    if (text.empty()) return;
    Token t{Token::Type::kText, std::move(text)};
    t.line = line_;
    tokens_.push_back(std::move(t));
  }

  void Push(Token::Type type, std::string value = "") {
    Token t{type, std::move(value)};
    t.line = line_;
    tokens_.push_back(std::move(t));
  }

  // Consumes a closing tag at pos_ of length `length`: `-` strips what follows, a plain close
  // eats one newline when `trim` (trim_blocks).
  void Close(size_t length, char sign, bool trim) {
    size_t end = pos_ + length;
    if (sign == '-') {
      end = SkipWhitespace(src_, end);
    } else if (sign == 0 && trim && end < src_.size() && src_[end] == '\n') {
      ++end;
    }
    line_ += std::count(src_.begin() + pos_, src_.begin() + end, '\n');
    line_starting_ = end > 0 && src_[end - 1] == '\n';
    pos_ = end;
  }

  absl::Status LexComment() {
    size_t close = src_.find("#}", pos_);
    if (close == std::string::npos) return Error("Missing end of comment tag");
    char sign = 0;
    if (close > pos_ && (src_[close - 1] == '-' || src_[close - 1] == '+')) {
      sign = src_[close - 1];
      --close;
    }
    line_ += std::count(src_.begin() + pos_, src_.begin() + close, '\n');
    pos_ = close;
    Close(sign ? 3 : 2, sign, true);
    return absl::OkStatus();
  }

  absl::Status LexRaw() {
    for (size_t i = src_.find("{%", pos_); i != std::string::npos; i = src_.find("{%", i + 1)) {
      size_t p = i + 2;
      char sign = p < src_.size() && (src_[p] == '-' || src_[p] == '+') ? src_[p] : 0;
      if (sign) ++p;
      p = SkipWhitespace(src_, p);
      if (src_.compare(p, 6, "endraw") != 0) continue;
      p = SkipWhitespace(src_, p + 6);
      char end_sign = p < src_.size() && (src_[p] == '-' || src_[p] == '+') ? src_[p] : 0;
      if (src_.compare(p + (end_sign ? 1 : 0), 2, "%}") != 0) continue;
      std::string text = src_.substr(pos_, i - pos_);
      EmitText(StripBefore(text, sign, true));
      line_ += std::count(src_.begin() + pos_, src_.begin() + p, '\n');
      pos_ = p;
      Close(end_sign ? 3 : 2, end_sign, true);
      return absl::OkStatus();
    }
    return Error("Missing end of raw directive");
  }

  absl::Status LexTag(char kind) {
    std::vector<char> balance;
    while (true) {
      if (pos_ >= src_.size()) {
        return Error(kind == '{' ? "unexpected end of template, expected 'end of print statement'"
                                 : "unexpected end of template, expected 'end of statement block'");
      }
      if (balance.empty()) {
        const char* close = kind == '{' ? "}}" : "%}";
        if ((kind == '%' && src_.compare(pos_, 3, "+%}") == 0) ||
            src_.compare(pos_, 3, std::string("-") + close) == 0) {
          Push(kind == '{' ? Token::Type::kVariableEnd : Token::Type::kBlockEnd);
          Close(3, src_[pos_], kind == '%');
          return absl::OkStatus();
        }
        if (src_.compare(pos_, 2, close) == 0) {
          Push(kind == '{' ? Token::Type::kVariableEnd : Token::Type::kBlockEnd);
          Close(2, 0, kind == '%');
          return absl::OkStatus();
        }
      }
      size_t ws_end = SkipWhitespace(src_, pos_);
      if (ws_end != pos_) {
        line_ += std::count(src_.begin() + pos_, src_.begin() + ws_end, '\n');
        pos_ = ws_end;
        continue;
      }
      char c = src_[pos_];
      if (IsDigitChar(c)) {
        RETURN_IF_ERROR(LexNumber());
      } else if (IsNameStart(c)) {
        size_t end = pos_;
        while (end < src_.size() && IsNameChar(src_[end])) ++end;
        Push(Token::Type::kName, src_.substr(pos_, end - pos_));
        pos_ = end;
      } else if (c == '\'' || c == '"') {
        RETURN_IF_ERROR(LexString(c));
      } else {
        RETURN_IF_ERROR(LexOperator(&balance));
      }
    }
  }

  // Digits with single underscores between them: Python's (\d+_)*\d+.
  size_t ScanDigits(size_t p) const {
    size_t end = p;
    while (end < src_.size() && IsDigitChar(src_[end])) {
      ++end;
      if (end + 1 < src_.size() && src_[end] == '_' && IsDigitChar(src_[end + 1])) ++end;
    }
    return end;
  }

  absl::Status LexNumber() {
    size_t start = pos_;
    size_t int_end = ScanDigits(start);
    bool after_dot = start > 0 && src_[start - 1] == '.';
    size_t end = int_end;
    bool is_float = false;
    if (!after_dot) {
      if (end + 1 < src_.size() && src_[end] == '.' && IsDigitChar(src_[end + 1])) {
        end = ScanDigits(end + 1);
        is_float = true;
      }
      if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
        size_t p = end + 1;
        if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
        if (p < src_.size() && IsDigitChar(src_[p])) {
          end = ScanDigits(p);
          is_float = true;
        }
      }
    }
    std::string text;
    if (is_float) {
      for (size_t i = start; i < end; ++i) {
        if (src_[i] != '_') text.push_back(src_[i]);
      }
      Token t{Token::Type::kFloat, text};
      t.float_value = std::strtod(text.c_str(), nullptr);
      t.line = line_;
      tokens_.push_back(std::move(t));
      pos_ = end;
      return absl::OkStatus();
    }
    int base = 10;
    size_t digits_start = start;
    if (src_[start] == '0' && start + 1 < src_.size()) {
      char p = absl::ascii_tolower(src_[start + 1]);
      base = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 10;
    }
    if (base != 10) {
      digits_start = start + 2;
      end = digits_start;
      auto valid = [base](char ch) {
        int v = IsDigitChar(ch)            ? ch - '0'
                : absl::ascii_isxdigit(ch) ? absl::ascii_tolower(ch) - 'a' + 10
                                           : 99;
        return v < base;
      };
      while (end < src_.size() && (valid(src_[end]) || (src_[end] == '_' && end + 1 < src_.size() &&
                                                        valid(src_[end + 1])))) {
        ++end;
      }
      if (end == digits_start) {
        base = 10;
        digits_start = start;
        end = start + 1;  // a lone 0; the letter after it lexes as a name
      }
    } else if (src_[start] == '0') {
      end = start + 1;  // decimal zero: 0, 0_0, 00
      while (end < src_.size() && (src_[end] == '0' || (src_[end] == '_' && end + 1 < src_.size() &&
                                                        src_[end + 1] == '0'))) {
        ++end;
      }
    }
    for (size_t i = digits_start; i < end; ++i) {
      if (src_[i] != '_') text.push_back(src_[i]);
    }
    errno = 0;
    char* parse_end = nullptr;
    long long value = std::strtoll(text.c_str(), &parse_end, base);
    if (errno == ERANGE) return Error("integer literal out of the supported 64-bit range");
    Token t{Token::Type::kInteger, src_.substr(start, end - start)};
    t.int_value = value;
    t.line = line_;
    tokens_.push_back(std::move(t));
    pos_ = end;
    return absl::OkStatus();
  }

  absl::Status LexString(char quote) {
    size_t i = pos_ + 1;
    while (i < src_.size() && src_[i] != quote) i += src_[i] == '\\' ? 2 : 1;
    if (i >= src_.size())
      return Error(absl::StrCat("unexpected char \"", std::string(1, quote), "\""));
    auto value = Unescape(std::string_view(src_).substr(pos_ + 1, i - pos_ - 1));
    if (!value.ok()) return Error(std::string(value.status().message()));
    Push(Token::Type::kString, std::move(value).value());
    line_ += std::count(src_.begin() + pos_, src_.begin() + i, '\n');
    pos_ = i + 1;
    return absl::OkStatus();
  }

  absl::Status LexOperator(std::vector<char>* balance) {
    static const char* const kTwoChar[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : kTwoChar) {
      if (src_.compare(pos_, 2, op) == 0) {
        Push(Token::Type::kOperator, op);
        pos_ += 2;
        return absl::OkStatus();
      }
    }
    char c = src_[pos_];
    if (std::string("+-/*%~[](){}<>=.:|,;").find(c) == std::string::npos) {
      return Error(absl::StrCat("unexpected char '", std::string(1, c), "'"));
    }
    if (c == '(' || c == '[' || c == '{') {
      balance->push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance->empty()) return Error(absl::StrCat("unexpected '", std::string(1, c), "'"));
      if (balance->back() != c) {
        return Error(absl::StrCat("unexpected '", std::string(1, c), "', expected '",
                                  std::string(1, balance->back()), "'"));
      }
      balance->pop_back();
    }
    Push(Token::Type::kOperator, std::string(1, c));
    ++pos_;
    return absl::OkStatus();
  }

  absl::Status Error(const std::string& message) const {
    return absl::InvalidArgumentError(absl::StrCat("line ", line_, ": ", message));
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

absl::StatusOr<std::vector<Token>> JinjaLexer::Tokenize(std::string_view source) {
  return Lexer(NormalizeNewlines(source)).Run();
}

}  // namespace jinja
}  // namespace shardserve
