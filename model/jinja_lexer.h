// Splits Jinja template source into tokens, applying whitespace control the way jinja2's lexer
// does with the settings transformers uses for chat templates:
//   - trim_blocks: the first newline after a block tag (`%}`) or comment (`#}`) is removed;
//   - lstrip_blocks: spaces and tabs from the start of a line up to a block tag or comment are
//     removed (`{%+` keeps them);
//   - `{%-`, `{{-`, `{#-` strip all whitespace before the tag, `-%}`, `-}}`, `-#}` all after it;
//   - a single trailing newline of the template is dropped (keep_trailing_newline=False);
//   - \r\n and \r become \n.
// Comments are dropped and `{% raw %}...{% endraw %}` becomes text. Inside tags it produces names,
// literals and operators; keywords (and, in, if, ...) stay names for the parser to interpret.
#ifndef SHARDSERVE_MODEL_JINJA_LEXER_H_
#define SHARDSERVE_MODEL_JINJA_LEXER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace shardserve {
namespace jinja {

struct Token {
  enum class Type {
    kText,           // template text between tags
    kVariableBegin,  // {{
    kVariableEnd,    // }}
    kBlockBegin,     // {%
    kBlockEnd,       // %}
    kName,
    kString,    // value: the unescaped string
    kInteger,   // int_value
    kFloat,     // float_value
    kOperator,  // value: one of + - * / // % ** ~ ( ) [ ] { } == != < <= > >= = . : | , ;
    kEnd,
  };
  Type type;
  std::string value;
  int64_t int_value = 0;
  double float_value = 0;
  int line = 1;
};

class JinjaLexer {
 public:
  // Fails with "line N: ..." on unterminated tags, comments and strings and on characters that
  // cannot start a token.
  static absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source);
};

}  // namespace jinja
}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_JINJA_LEXER_H_
