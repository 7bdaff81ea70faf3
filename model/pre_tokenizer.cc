#include "model/pre_tokenizer.h"

#include <oniguruma.h>

#include <algorithm>
#include <mutex>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/bpe_utf8.h"

namespace shardserve {

const char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char kTekkenPattern[] =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

// llama.cpp's fallback for GPT-2-style vocabularies without a known pre-tokenizer name.
const char kDefaultPunctuationPattern[] = R"([\p{P}\$\+<=>\^~\|]+)";
const char kDefaultGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";

PreTokenizerConfig Isolated(std::vector<std::string> patterns) {
  PreTokenizerConfig config;
  for (std::string& p : patterns) config.splits.push_back({std::move(p)});
  return config;
}

bool NameIn(absl::string_view name, std::initializer_list<absl::string_view> names) {
  for (absl::string_view n : names) {
    if (name == n) return true;
  }
  return false;
}

void InitOniguruma() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

struct Part {
  size_t begin;
  size_t end;
  bool is_match;
};

}  // namespace

struct PreTokenizer::CompiledSplit {
  regex_t* regex = nullptr;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

absl::StatusOr<PreTokenizerConfig> PreTokenizer::ConfigForName(absl::string_view name) {
  if (name.empty() || name == "default") {
    return Isolated(
        {kDefaultPunctuationPattern, kDefaultGpt2Pattern, R"(\p{N}+)", "[0-9][0-9][0-9]"});
  }
  if (NameIn(name, {"gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais", "jina-es", "jina-de",
                    "jina-v2-es", "jina-v2-de", "gigachat", "roberta-bpe", "exaone4"})) {
    return Isolated({kGpt2Pattern});
  }
  if (NameIn(name,
             {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"})) {
    // Digits(individual_digits=true) then ByteLevel(use_regex=true).
    return Isolated({R"(\p{N})", kGpt2Pattern});
  }
  if (NameIn(name, {"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "dbrx",
                    "smaug-bpe", "chatglm-bpe", "glm4"})) {
    return Isolated({kLlama3Pattern});
  }
  if (NameIn(name, {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"})) {
    return Isolated({kQwen2Pattern});
  }
  if (name == "tekken") return Isolated({kTekkenPattern});
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported pre-tokenizer name '", name,
      "' (supported: default, gpt-2, smollm, starcoder, llama-bpe, llama3, qwen2, tekken and "
      "their llama.cpp aliases)"));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(
    const PreTokenizerConfig& config) {
  InitOniguruma();
  std::unique_ptr<PreTokenizer> pre(new PreTokenizer());
  pre->add_prefix_space_ = config.add_prefix_space;
  for (const PreTokenizerSplit& split : config.splits) {
    if (!IsValidUtf8(split.pattern)) {
      return absl::InvalidArgumentError("pre-tokenizer pattern is not valid UTF-8");
    }
    CompiledSplit compiled;
    compiled.behavior = split.behavior;
    compiled.invert = split.invert;
    OnigErrorInfo error_info;
    const auto* pattern = reinterpret_cast<const OnigUChar*>(split.pattern.data());
    const int rc = onig_new(&compiled.regex, pattern, pattern + split.pattern.size(),
                            ONIG_OPTION_NONE, ONIG_ENCODING_UTF8, ONIG_SYNTAX_RUBY, &error_info);
    if (rc != ONIG_NORMAL) {
      OnigUChar message[ONIG_MAX_ERROR_MESSAGE_LEN];
      onig_error_code_to_str(message, rc, &error_info);
      return absl::InvalidArgumentError(
          absl::StrCat("bad pre-tokenizer pattern '", split.pattern,
                       "': ", reinterpret_cast<const char*>(message)));
    }
    pre->splits_.push_back(compiled);
  }
  return pre;
}

PreTokenizer::~PreTokenizer() {
  for (CompiledSplit& split : splits_) onig_free(split.regex);
}

namespace {

// The matches of `regex` in `text`, with the gaps between them, covering all of `text`. Empty
// matches follow the Rust `onig` crate's iterator that Hugging Face uses: an empty match right
// where the previous match ended is skipped by moving on one character.
void FindParts(regex_t* regex, absl::string_view text, OnigRegion* region,
               std::vector<Part>* parts) {
  parts->clear();
  const auto* str = reinterpret_cast<const OnigUChar*>(text.data());
  const OnigUChar* end = str + text.size();
  size_t search_from = 0;
  size_t prev = 0;
  bool have_last_match = false;
  size_t last_match_end = 0;
  while (search_from <= text.size()) {
    const int r = onig_search(regex, str, end, str + search_from, end, region, ONIG_OPTION_NONE);
    if (r < 0) break;  // ONIG_MISMATCH, or an engine error: the rest stays one gap
    const auto s = static_cast<size_t>(region->beg[0]);
    const auto e = static_cast<size_t>(region->end[0]);
    if (s == e && have_last_match && last_match_end == e) {
      if (search_from >= text.size()) break;
      size_t length = 1;
      DecodeUtf8At(text.substr(search_from), &length);
      search_from += length;
      continue;
    }
    search_from = e;
    have_last_match = true;
    last_match_end = e;
    if (prev != s) parts->push_back({prev, s, false});
    parts->push_back({s, e, true});
    prev = e;
    if (s == e && e == text.size()) break;
  }
  if (prev != text.size()) parts->push_back({prev, text.size(), false});
}

// Hugging Face's NormalizedString::split: turns the parts into pieces per `behavior`.
void ApplyBehavior(SplitBehavior behavior, std::vector<Part>* parts) {
  std::vector<Part> out;
  out.reserve(parts->size());
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (Part p : *parts) out.push_back({p.begin, p.end, false});
      break;
    case SplitBehavior::kRemoved:
      for (Part p : *parts) out.push_back(p);  // is_match now means "drop"
      break;
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (Part p : *parts) {
        if (p.is_match && !previous_match && !out.empty()) {
          out.back().end = p.end;
        } else {
          out.push_back({p.begin, p.end, false});
        }
        previous_match = p.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = parts->rbegin(); it != parts->rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) {
          out.back().begin = it->begin;
        } else {
          out.push_back({it->begin, it->end, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (Part p : *parts) {
        if (p.is_match == previous_match && !out.empty()) {
          out.back().end = p.end;
        } else {
          out.push_back({p.begin, p.end, false});
        }
        previous_match = p.is_match;
      }
      break;
    }
  }
  parts->swap(out);
}

}  // namespace

void PreTokenizer::Split(absl::string_view text, std::vector<absl::string_view>* pieces) const {
  if (text.empty()) return;
  if (splits_.empty()) {
    pieces->push_back(text);
    return;
  }
  OnigRegion* region = onig_region_new();
  std::vector<absl::string_view> current = {text};
  std::vector<absl::string_view> next;
  std::vector<Part> parts;
  for (size_t i = 0; i < splits_.size(); ++i) {
    const CompiledSplit& split = splits_[i];
    const bool last = i + 1 == splits_.size();
    std::vector<absl::string_view>* target = last ? pieces : &next;
    next.clear();
    for (absl::string_view piece : current) {
      FindParts(split.regex, piece, region, &parts);
      if (split.invert) {
        for (Part& p : parts) p.is_match = !p.is_match;
      }
      if (split.behavior != SplitBehavior::kIsolated) ApplyBehavior(split.behavior, &parts);
      for (const Part& p : parts) {
        if (p.end > p.begin && !(split.behavior == SplitBehavior::kRemoved && p.is_match)) {
          target->push_back(piece.substr(p.begin, p.end - p.begin));
        }
      }
    }
    current.swap(next);
  }
  onig_region_free(region, 1);
}

}  // namespace shardserve
