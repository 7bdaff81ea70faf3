#include "model/bpe_added_token_matcher.h"

#include <oniguruma.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/bpe_utf8.h"

namespace shardserve {
namespace {

// Unicode White_Space, which is what `\s` means in the Rust regexes Hugging Face uses here.
bool IsWhitespace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Start of the last character of `text` (REQUIRES: non-empty, valid UTF-8).
size_t LastCharStart(absl::string_view text) {
  size_t pos = text.size() - 1;
  while (pos > 0 && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80) --pos;
  return pos;
}

// Where the run of whitespace that ends `text` begins.
size_t TrailingWhitespaceStart(absl::string_view text) {
  size_t pos = text.size();
  while (pos > 0) {
    const size_t start = LastCharStart(text.substr(0, pos));
    size_t length;
    if (!IsWhitespace(DecodeUtf8At(text.substr(start), &length))) break;
    pos = start;
  }
  return pos;
}

// Length of the run of whitespace that starts `text`.
size_t LeadingWhitespaceBytes(absl::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t length;
    if (!IsWhitespace(DecodeUtf8At(text.substr(pos), &length))) break;
    pos += length;
  }
  return pos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AddedTokenMatcher>> AddedTokenMatcher::Create(
    const std::vector<AddedToken>& tokens, bool normalized) {
  std::unique_ptr<AddedTokenMatcher> matcher(new AddedTokenMatcher());
  matcher->nodes_.emplace_back();
  bool any_single_word = false;
  for (const AddedToken& token : tokens) {
    if (token.normalized != normalized || token.content.empty()) continue;
    if (!IsValidUtf8(token.content)) {
      return absl::InvalidArgumentError(
          absl::StrCat("added token ", token.id, " is not valid UTF-8"));
    }
    const auto index = static_cast<int32_t>(matcher->tokens_.size());
    matcher->tokens_.push_back(token);
    any_single_word |= token.single_word;
    int32_t node = 0;
    for (char c : token.content) {
      const auto byte = static_cast<uint8_t>(c);
      int32_t next = matcher->Child(node, byte);
      if (next < 0) {
        next = static_cast<int32_t>(matcher->nodes_.size());
        auto& children = matcher->nodes_[node].children;
        children.insert(
            std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{-1})),
            {byte, next});
        matcher->nodes_.emplace_back();
      }
      node = next;
    }
    // The first of two tokens with the same content wins, as the first pattern does in
    // Hugging Face's trie.
    if (matcher->nodes_[node].token < 0) matcher->nodes_[node].token = index;
    matcher->first_bytes_.set(static_cast<uint8_t>(token.content[0]));
  }
  if (any_single_word) {
    static const char kWord[] = "\\A\\w";
    OnigErrorInfo error_info;
    regex_t* regex = nullptr;
    const auto* pattern = reinterpret_cast<const OnigUChar*>(kWord);
    if (onig_new(&regex, pattern, pattern + sizeof(kWord) - 1, ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                 ONIG_SYNTAX_RUBY, &error_info) != ONIG_NORMAL) {
      return absl::InternalError("cannot compile the word-character pattern");
    }
    matcher->word_regex_ = regex;
  }
  return matcher;
}

AddedTokenMatcher::~AddedTokenMatcher() {
  if (word_regex_ != nullptr) onig_free(static_cast<regex_t*>(word_regex_));
}

int32_t AddedTokenMatcher::Child(int32_t node, uint8_t byte) const {
  const auto& children = nodes_[node].children;
  auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{-1}));
  return it != children.end() && it->first == byte ? it->second : -1;
}

bool AddedTokenMatcher::IsWordChar(absl::string_view character) const {
  const auto* str = reinterpret_cast<const OnigUChar*>(character.data());
  const OnigUChar* end = str + character.size();
  return onig_match(static_cast<regex_t*>(word_regex_), str, end, str, nullptr, ONIG_OPTION_NONE) >
         0;
}

void AddedTokenMatcher::Split(absl::string_view text, bool allow_special,
                              std::vector<Segment>* segments) const {
  if (text.empty()) return;
  if (tokens_.empty()) {
    segments->push_back({0, text.size(), -1});
    return;
  }
  size_t done = 0;  // text before this is already in `segments`
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_bytes_.test(static_cast<uint8_t>(text[pos]))) {
      ++pos;
      continue;
    }
    int32_t node = 0;
    int32_t best = -1;
    size_t best_end = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      node = Child(node, static_cast<uint8_t>(text[i]));
      if (node < 0) break;
      if (nodes_[node].token >= 0) {
        best = nodes_[node].token;
        best_end = i + 1;
      }
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[best];
    size_t start = pos;
    size_t stop = best_end;
    // A rejected match still consumes its text: the search resumes after it.
    pos = best_end;
    if (token.special && !allow_special) continue;
    if (token.single_word) {
      const bool word_before =
          start > 0 && IsWordChar(text.substr(LastCharStart(text.substr(0, start))));
      const bool word_after = stop < text.size() && IsWordChar(text.substr(stop));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) start = std::max(TrailingWhitespaceStart(text.substr(0, start)), done);
    if (token.rstrip) stop += LeadingWhitespaceBytes(text.substr(stop));
    if (done < start) segments->push_back({done, start, -1});
    segments->push_back({start, stop, token.id});
    done = stop;
    pos = stop;
  }
  if (done < text.size()) segments->push_back({done, text.size(), -1});
}

}  // namespace shardserve
