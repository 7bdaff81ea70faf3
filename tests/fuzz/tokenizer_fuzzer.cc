// Fuzz target for the tokenizer: arbitrary bytes are encoded, the ids decoded, and the same bytes
// read as token ids are decoded, checking what must hold for every input:
//   - Encode never fails and yields only valid ids, the same ids every time (the BPE cache);
//   - Decode(Encode(s)) == s with ill-formed UTF-8 replaced by U+FFFD (as Python's
//     errors="replace" does), with special tokens allowed or not, when the vocabulary has a
//     token for every byte of that text (SmolLM2 has none for some control characters and for
//     the lead bytes F1, F2; like Hugging Face, Encode drops such bytes);
//   - decoding never fails on valid ids and always yields valid UTF-8;
//   - the streaming detokenizer's deltas add up to Decode of the same ids.
//
// The tokenizer is read from the tokenizer.json named by $SHARDSERVE_FUZZ_TOKENIZER, else from
// tests/tokenizer/smollm2_tokenizer.json relative to the working directory (the repository root,
// or the runfiles root under `bazel test`).
//
// Under Bazel it is a library defining LLVMFuzzerTestOneInput, linked into the regression
// runner; for real fuzzing, compile it and //model:tokenizer's sources with clang's
// -fsanitize=fuzzer,address and link -lonig -licuuc and the Abseil libraries.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "model/bpe_byte_level.h"
#include "model/bpe_utf8.h"
#include "model/incremental_detokenizer.h"
#include "model/tokenizer.h"

namespace {

using shardserve::IncrementalDetokenizer;
using shardserve::Tokenizer;

[[noreturn]] void Fail(const char* what) {
  fprintf(stderr, "tokenizer_fuzzer: %s\n", what);
  abort();
}

const Tokenizer& LoadTokenizer() {
  static const Tokenizer* tokenizer = [] {
    const char* env = std::getenv("SHARDSERVE_FUZZ_TOKENIZER");
    const std::string path = env != nullptr ? env : "tests/tokenizer/smollm2_tokenizer.json";
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      fprintf(stderr, "tokenizer_fuzzer: cannot read %s\n", path.c_str());
      abort();
    }
    std::stringstream text;
    text << in.rdbuf();
    auto created = Tokenizer::FromHfJson(text.str(), path);
    if (!created.ok()) {
      fprintf(stderr, "tokenizer_fuzzer: %s\n", std::string(created.status().message()).c_str());
      abort();
    }
    return created->release();
  }();
  return *tokenizer;
}

std::string Stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
  IncrementalDetokenizer detok(tok, skip_special);
  std::string text;
  for (int32_t id : ids) {
    auto delta = detok.Add(id);
    if (!delta.ok()) Fail("IncrementalDetokenizer rejected a valid id");
    if (!shardserve::IsValidUtf8(*delta)) Fail("a delta is not valid UTF-8");
    text += *delta;
  }
  return text + detok.Finish();
}

// Whether every byte of `text` has a token of its own, so that nothing is dropped.
bool AllBytesHaveTokens(const Tokenizer& tok, const std::string& text) {
  static const std::vector<bool>* has_token = [&tok] {
    auto* table = new std::vector<bool>(256);
    for (int b = 0; b < 256; ++b) {
      const auto chars = shardserve::ByteLevelAlphabet::Get().Utf8(static_cast<uint8_t>(b));
      (*table)[b] = tok.TokenId(chars) >= 0;
    }
    return table;
  }();
  for (char c : text) {
    if (!(*has_token)[static_cast<uint8_t>(c)]) return false;
  }
  return true;
}

void CheckDecode(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  for (bool skip_special : {false, true}) {
    auto text = tok.Decode(ids, skip_special);
    if (!text.ok()) Fail("Decode rejected valid ids");
    if (!shardserve::IsValidUtf8(*text)) Fail("Decode returned invalid UTF-8");
    if (Stream(tok, ids, skip_special) != *text) Fail("streamed text differs from Decode");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tokenizer& tok = LoadTokenizer();
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::string expected = shardserve::Utf8Lossy(input);
  const bool lossless = AllBytesHaveTokens(tok, expected);

  for (bool allow_special : {true, false}) {
    const std::vector<int32_t> ids = tok.Encode(input, /*add_special_tokens=*/false, allow_special);
    for (int32_t id : ids) {
      if (!tok.IsValidId(id)) Fail("Encode produced an invalid id");
    }
    if (tok.Encode(input, false, allow_special) != ids) Fail("Encode is not deterministic");
    auto decoded = tok.Decode(ids, /*skip_special_tokens=*/false);
    if (!decoded.ok()) Fail("Decode rejected the ids of Encode");
    if (lossless && *decoded != expected) Fail("Decode(Encode(s)) != s");
    CheckDecode(tok, ids);
  }

  // The same bytes as little-endian 16-bit token ids, wrapped into the vocabulary.
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < size; i += 2) {
    const int32_t raw = data[i] | (data[i + 1] << 8);
    const int32_t id = raw % tok.vocab_size();
    if (tok.IsValidId(id)) ids.push_back(id);
  }
  CheckDecode(tok, ids);
  return 0;
}
