// Python `str` semantics over UTF-8 std::strings, for the Jinja interpreter.
//
// Jinja templates index, slice, strip, split and case-map strings as Python does: by code point,
// with Unicode whitespace. These helpers give the same results on UTF-8 bytes. Bytes that are not
// valid UTF-8 decode to U+DC80..U+DCFF and encode back to the same byte, so nothing is lost.
//
// Case mapping covers Latin (with Extended-A and Additional), Greek, Cyrillic, Armenian and
// fullwidth Latin, plus Python's special cases that matter in practice (ß -> SS, final sigma);
// other scripts are left unchanged.
#ifndef SHARDSERVE_MODEL_JINJA_TEXT_H_
#define SHARDSERVE_MODEL_JINJA_TEXT_H_

#include <string>
#include <string_view>
#include <vector>

namespace shardserve {
namespace jinja {

std::u32string DecodeUtf8(std::string_view text);
std::string EncodeUtf8(std::u32string_view code_points);
void AppendUtf8(char32_t code_point, std::string* out);
size_t CodePointCount(std::string_view text);

// Python's str.isspace() for one code point.
bool IsPySpace(char32_t c);
// Python's str.isprintable() for one code point (approximate outside the BMP's common blocks).
bool IsPyPrintable(char32_t c);
bool IsCased(char32_t c);
bool IsUpperCase(char32_t c);
bool IsLowerCase(char32_t c);
bool IsAlpha(char32_t c);
bool IsDigit(char32_t c);

// str.isupper() / str.islower(): some cased character and none of the other case.
bool PyIsUpper(std::string_view text);
bool PyIsLower(std::string_view text);

std::string PyUpper(std::string_view text);
std::string PyLower(std::string_view text);
std::string PyCapitalize(std::string_view text);
std::string PyTitle(std::string_view text);
std::string PySwapCase(std::string_view text);

// str.strip/lstrip/rstrip. `chars` null strips Unicode whitespace, else the code points given.
std::string PyStrip(std::string_view text, const std::string* chars, bool left, bool right);
// str.split / str.rsplit. `sep` null splits on runs of whitespace. max_split < 0: no limit.
std::vector<std::string> PySplit(std::string_view text, const std::string* sep, int64_t max_split,
                                 bool from_right);
std::vector<std::string> PySplitLines(std::string_view text);
// str.replace; an empty `old` inserts `replacement` around every code point, as Python does.
std::string PyReplace(std::string_view text, std::string_view old, std::string_view replacement,
                      int64_t count);
// str.find / str.rfind as a code point index, -1 when absent.
int64_t PyFind(std::string_view text, std::string_view needle, bool from_right);
int64_t PyCount(std::string_view text, std::string_view needle);

// repr() of a str: quotes and escapes chosen as CPython chooses them.
std::string PyStrRepr(std::string_view text);
// repr() of a float: the shortest string that round-trips, in CPython's layout ("1.0", "1e+16").
std::string PyFloatRepr(double value);

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_TEXT_H_
