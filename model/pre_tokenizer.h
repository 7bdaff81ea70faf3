// Pre-tokenization: cutting text into the pieces ("words") that BPE then encodes one by one.
//
// A pre-tokenizer is a sequence of regex splits run by Oniguruma, the engine Hugging Face
// `tokenizers` uses, so the models' published patterns give the same pieces here. Each split
// runs on every piece the previous one produced, each piece seen as a whole string (so `$` and
// lookaheads stop at the piece's end), exactly like `pre_tokenizers.Sequence([Split, ...])`.
// ByteLevel(use_regex=true) is a split with GPT-2's pattern, Digits is a split on \p{N}.
//
//   ASSIGN_OR_RETURN(PreTokenizerConfig config, PreTokenizer::ConfigForName("llama-bpe"));
//   ASSIGN_OR_RETURN(std::unique_ptr<PreTokenizer> pre, PreTokenizer::Create(config));
//   std::vector<absl::string_view> pieces;
//   pre->Split("Hello world", &pieces);  // {"Hello", " world"}
//
// A PreTokenizer is immutable after Create and safe to use from many threads at once.
#ifndef SHARDSERVE_MODEL_PRE_TOKENIZER_H_
#define SHARDSERVE_MODEL_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace shardserve {

// What happens to the text a pattern matches (Hugging Face's SplitDelimiterBehavior).
enum class SplitBehavior {
  kRemoved,             // matches are dropped
  kIsolated,            // matches become pieces of their own
  kMergedWithPrevious,  // a match joins the piece before it
  kMergedWithNext,      // a match joins the piece after it
  kContiguous,          // consecutive matches form one piece
};

struct PreTokenizerSplit {
  std::string pattern;  // Oniguruma (Ruby syntax) regular expression
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;  // split on what the pattern does not match
};

struct PreTokenizerConfig {
  // Prepend " " to text that does not start with one, before any split (ByteLevel's option;
  // only supported when ByteLevel comes first).
  bool add_prefix_space = false;
  std::vector<PreTokenizerSplit> splits;  // applied in order; empty: the text is one piece
};

// The patterns the supported models publish in their tokenizer.json.
// GPT-2's, as used by Hugging Face's ByteLevel pre-tokenizer.
extern const char kGpt2Pattern[];
// Llama 3's Split pattern (numbers in groups of up to three digits).
extern const char kLlama3Pattern[];
// Qwen2's Split pattern (one digit per piece).
extern const char kQwen2Pattern[];
// Mistral's Tekken pattern.
extern const char kTekkenPattern[];

class PreTokenizer {
 public:
  // The pipeline named by GGUF's `tokenizer.ggml.pre` (llama.cpp's names: "gpt-2", "smollm",
  // "llama-bpe", "qwen2", "tekken", "default", and their aliases). "" means "default".
  // Unknown names fail with INVALID_ARGUMENT naming the value.
  static absl::StatusOr<PreTokenizerConfig> ConfigForName(absl::string_view name);

  // Compiles the patterns; a pattern Oniguruma rejects fails with INVALID_ARGUMENT.
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> Create(const PreTokenizerConfig& config);
  ~PreTokenizer();

  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  bool add_prefix_space() const { return add_prefix_space_; }

  // Appends to `*pieces` the non-empty pieces of `text`, in order, as views into `text`.
  // REQUIRES: `text` is valid UTF-8 (already prefixed with " " if add_prefix_space() calls
  // for it). A regex engine failure (never seen with the models' patterns) leaves the rest of
  // the current piece unsplit rather than losing text.
  void Split(absl::string_view text, std::vector<absl::string_view>* pieces) const;

 private:
  struct CompiledSplit;

  PreTokenizer() = default;

  bool add_prefix_space_ = false;
  std::vector<CompiledSplit> splits_;
};

}  // namespace shardserve

#endif  // SHARDSERVE_MODEL_PRE_TOKENIZER_H_
