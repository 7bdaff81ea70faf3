// Parity of the tokenizer with Hugging Face `tokenizers` on the fixtures made by
// tests/tokenizer/make_fixtures.py, through both construction paths (tokenizer.json and GGUF
// metadata), plus the streaming detokenizer and the error cases.
#include "model/tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "common/testing/test_env.h"
#include "model/bpe_byte_level.h"
#include "model/bpe_utf8.h"
#include "model/incremental_detokenizer.h"
#include "model/tokenizer_gguf.h"
#include "model/tokenizer_hf_json.h"

namespace shardserve {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

std::string FixturePath(const std::string& name) { return TestRunfile("tests/tokenizer/" + name); }

std::string ReadFixture(const std::string& name) {
  std::ifstream in(FixturePath(name), std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << FixturePath(name);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

json ReadJson(const std::string& name) { return json::parse(ReadFixture(name)); }

struct CorpusEntry {
  std::string name;
  std::string bytes;  // may be invalid UTF-8
};

const std::vector<CorpusEntry>& Corpus() {
  static const auto* corpus = [] {
    auto* entries = new std::vector<CorpusEntry>();
    for (const json& entry : ReadJson("corpus.json")) {
      CorpusEntry e;
      e.name = entry["name"].get<std::string>();
      e.bytes = entry.contains("hex") ? absl::HexStringToBytes(entry["hex"].get<std::string>())
                                      : entry["text"].get<std::string>();
      entries->push_back(std::move(e));
    }
    return entries;
  }();
  return *corpus;
}

std::unique_ptr<Tokenizer> LoadHf(const std::string& name) {
  auto tok = Tokenizer::FromHfJson(ReadFixture(name), name);
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

GgufTokenizerMetadata SmolLm2GgufMetadata() {
  const json meta = ReadJson("smollm2_gguf_tokenizer.json");
  GgufTokenizerMetadata m;
  m.model = meta["model"].get<std::string>();
  m.pre = meta["pre"].get<std::string>();
  m.tokens = meta["tokens"].get<std::vector<std::string>>();
  m.merges = meta["merges"].get<std::vector<std::string>>();
  m.token_types = meta["token_types"].get<std::vector<int32_t>>();
  m.bos_id = meta["bos_id"].get<int64_t>();
  m.eos_id = meta["eos_id"].get<int64_t>();
  m.add_bos = meta["add_bos"].get<bool>();
  return m;
}

std::unique_ptr<Tokenizer> LoadSmolLm2Gguf() {
  auto spec = TokenizerSpecFromGguf(SmolLm2GgufMetadata(), "SmolLM2 GGUF");
  EXPECT_TRUE(spec.ok()) << spec.status();
  if (!spec.ok()) return nullptr;
  auto tok = Tokenizer::Create(std::move(spec).value());
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

// The concatenated deltas of an IncrementalDetokenizer fed `ids` one by one.
std::string StreamDecode(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  IncrementalDetokenizer detok(tok, skip);
  std::string text;
  for (int32_t id : ids) {
    auto delta = detok.Add(id);
    EXPECT_TRUE(delta.ok()) << delta.status();
    if (!delta.ok()) return text;
    // Every delta is whole characters.
    EXPECT_TRUE(IsValidUtf8(*delta));
    EXPECT_LE(detok.pending_bytes(), 3u);
    text += *delta;
  }
  text += detok.Finish();
  EXPECT_EQ(detok.pending_bytes(), 0u);
  return text;
}

void ExpectParity(const Tokenizer& tok, const std::string& expected_file) {
  const json expected = ReadJson(expected_file);
  const std::vector<CorpusEntry>& corpus = Corpus();
  ASSERT_EQ(expected["cases"].size(), corpus.size());
  for (size_t i = 0; i < corpus.size(); ++i) {
    const json& c = expected["cases"][i];
    const CorpusEntry& entry = corpus[i];
    SCOPED_TRACE(entry.name);
    ASSERT_EQ(c["name"].get<std::string>(), entry.name);
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(tok.Encode(entry.bytes, /*add_special_tokens=*/false), ids);
    EXPECT_EQ(tok.Encode(entry.bytes, /*add_special_tokens=*/true),
              c["ids_add_special"].get<std::vector<int32_t>>());
    EXPECT_EQ(tok.Encode(entry.bytes, /*add_special_tokens=*/false, /*allow_special=*/false),
              c["ids_no_special"].get<std::vector<int32_t>>());
    auto decoded = tok.Decode(ids, /*skip_special_tokens=*/false);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, c["decoded"].get<std::string>());
    auto skipped = tok.Decode(ids, /*skip_special_tokens=*/true);
    ASSERT_TRUE(skipped.ok()) << skipped.status();
    EXPECT_EQ(*skipped, c["decoded_skip_special"].get<std::string>());
    EXPECT_EQ(StreamDecode(tok, ids, false), *decoded);
    EXPECT_EQ(StreamDecode(tok, ids, true), *skipped);
  }
  for (const json& c : expected["decode_cases"]) {
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE(::testing::PrintToString(ids));
    auto text = tok.Decode(ids, false);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, c["text"].get<std::string>());
    auto skipped = tok.Decode(ids, true);
    ASSERT_TRUE(skipped.ok()) << skipped.status();
    EXPECT_EQ(*skipped, c["text_skip_special"].get<std::string>());
    EXPECT_EQ(StreamDecode(tok, ids, false), *text);
    EXPECT_EQ(StreamDecode(tok, ids, true), *skipped);
  }
}

TEST(TokenizerParityTest, SmolLm2FromHfJson) {
  auto tok = LoadHf("smollm2_tokenizer.json");
  ASSERT_NE(tok, nullptr);
  ExpectParity(*tok, "smollm2_expected.json");
}

TEST(TokenizerParityTest, SmolLm2FromGgufMetadata) {
  auto tok = LoadSmolLm2Gguf();
  ASSERT_NE(tok, nullptr);
  ExpectParity(*tok, "smollm2_expected.json");
}

TEST(TokenizerParityTest, Qwen2PipelineWithNfc) {
  auto tok = LoadHf("qwen2_tiny_tokenizer.json");
  ASSERT_NE(tok, nullptr);
  ExpectParity(*tok, "qwen2_tiny_expected.json");
}

TEST(TokenizerParityTest, Llama3PipelineWithBosAndAddedTokenOptions) {
  auto tok = LoadHf("llama3_tiny_tokenizer.json");
  ASSERT_NE(tok, nullptr);
  ExpectParity(*tok, "llama3_tiny_expected.json");
}

TEST(TokenizerTest, SmolLm2Properties) {
  auto tok = LoadSmolLm2Gguf();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 49152);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_FALSE(tok->add_bos());
  EXPECT_EQ(tok->TokenId("<|im_start|>"), 1);
  EXPECT_EQ(tok->TokenId("Ġthe"), tok->Encode(" the", false).at(0));
  EXPECT_EQ(tok->TokenId("no such token"), -1);
  EXPECT_TRUE(tok->IsSpecial(0));
  EXPECT_TRUE(tok->IsSpecial(16));
  EXPECT_FALSE(tok->IsSpecial(17));
  EXPECT_FALSE(tok->IsSpecial(-1));
  EXPECT_FALSE(tok->IsSpecial(49152));
  auto piece = tok->TokenToPiece(tok->TokenId("Ġthe"));
  ASSERT_TRUE(piece.ok());
  EXPECT_EQ(*piece, " the");
  EXPECT_TRUE(tok->Encode("", true).empty());
}

TEST(TokenizerTest, ByteLevelPrefixSpace) {
  // Expected ids: SmolLM2's tokenizer.json with its pre-tokenizer replaced by
  // ByteLevel(add_prefix_space=True), in Hugging Face `tokenizers` 0.23. The space is added to
  // each run of text between special tokens that does not start with one.
  auto spec = TokenizerSpecFromHfJson(ReadFixture("smollm2_tokenizer.json"), "smollm2");
  ASSERT_TRUE(spec.ok()) << spec.status();
  PreTokenizerConfig config;
  config.add_prefix_space = true;
  config.splits.push_back({kGpt2Pattern});
  spec->pre_tokenizer_config = config;
  auto tok = Tokenizer::Create(*std::move(spec));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("Hello  there\n", false), (std::vector<int32_t>{38699, 216, 665, 198}));
  EXPECT_EQ((*tok)->Encode(" leading", false), (std::vector<int32_t>{2899}));
  EXPECT_EQ((*tok)->Encode("<|im_start|>user\nhi<|im_end|>x", false),
            (std::vector<int32_t>{1, 2914, 198, 6004, 2, 1792}));
  EXPECT_TRUE((*tok)->Encode("", false).empty());
}

TEST(TokenizerTest, TokenizerConfigSetsBosAndEos) {
  auto spec = TokenizerSpecFromHfJson(ReadFixture("smollm2_tokenizer.json"), "smollm2");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->eos_id, -1);
  ASSERT_TRUE(ApplyHfTokenizerConfig(R"({"bos_token": "<|im_start|>",
                                         "eos_token": {"content": "<|im_end|>"},
                                         "add_bos_token": true})",
                                     &*spec)
                  .ok());
  EXPECT_EQ(spec->bos_id, 1);
  EXPECT_EQ(spec->eos_id, 2);
  auto tok = Tokenizer::Create(*std::move(spec));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("x", true), (std::vector<int32_t>{1, 104}));
  EXPECT_EQ((*tok)->eos_id(), 2);
  TokenizerSpec unused;
  EXPECT_FALSE(ApplyHfTokenizerConfig("[1, 2]", &unused).ok());
}

TEST(TokenizerTest, DecodeRejectsBadIds) {
  auto tok = LoadHf("qwen2_tiny_tokenizer.json");
  ASSERT_NE(tok, nullptr);
  for (int32_t bad : {-1, tok->vocab_size(), 1 << 30}) {
    auto text = tok->Decode({5, bad}, false);
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(tok->TokenToPiece(bad).status().code(), absl::StatusCode::kInvalidArgument);
    IncrementalDetokenizer detok(*tok, false);
    EXPECT_FALSE(detok.Add(bad).ok());
  }
}

TEST(TokenizerTest, DecodeRoundTripsValidText) {
  auto tok = LoadHf("smollm2_tokenizer.json");
  ASSERT_NE(tok, nullptr);
  for (const CorpusEntry& entry : Corpus()) {
    if (!IsValidUtf8(entry.bytes)) continue;
    auto text = tok->Decode(tok->Encode(entry.bytes, false, false), false);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, entry.bytes) << entry.name;
  }
}

// The id of the token made of the single byte `b`.
int32_t ByteToken(const Tokenizer& tok, uint8_t b) {
  return tok.TokenId(ByteLevelAlphabet::Get().Utf8(b));
}

TEST(IncrementalDetokenizerTest, HoldsBackPartialCharacters) {
  auto tok = LoadSmolLm2Gguf();
  ASSERT_NE(tok, nullptr);
  // "€" is E2 82 AC: fed as three single-byte tokens, it comes out whole with the last one.
  IncrementalDetokenizer detok(*tok, false);
  auto first = detok.Add(ByteToken(*tok, 0xE2));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, "");
  EXPECT_EQ(detok.pending_bytes(), 1u);
  auto second = detok.Add(ByteToken(*tok, 0x82));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, "");
  auto third = detok.Add(ByteToken(*tok, 0xAC));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(*third, "\xE2\x82\xAC");
  // A byte that cannot continue the held-back ones releases them as U+FFFD at once.
  ASSERT_TRUE(detok.Add(ByteToken(*tok, 0xF0)).ok());
  auto broken = detok.Add(ByteToken(*tok, 'a'));
  ASSERT_TRUE(broken.ok());
  EXPECT_EQ(*broken,
            "\xEF\xBF\xBD"
            "a");
  // A character that never completes becomes U+FFFD at Finish, as Decode does.
  ASSERT_TRUE(detok.Add(ByteToken(*tok, 0xE2)).ok());
  EXPECT_EQ(detok.Finish(), "\xEF\xBF\xBD");
}

TEST(IncrementalDetokenizerTest, RandomByteTokensMatchDecode) {
  auto tok = LoadSmolLm2Gguf();
  ASSERT_NE(tok, nullptr);
  // Lead, continuation and ASCII bytes: every way a sequence can be cut or broken. (SmolLM2
  // has no token for the bytes that never occur in UTF-8, C0, C1 and F5-FF.)
  std::vector<int32_t> ids_pool;
  for (uint8_t b : {0x41, 0x20, 0x80, 0x82, 0x9F, 0xA0, 0xAC, 0xBF, 0xC2, 0xC3, 0xDF, 0xE0, 0xE2,
                    0xED, 0xEF, 0xF0, 0xF3, 0xF4}) {
    const int32_t id = ByteToken(*tok, b);
    ASSERT_GE(id, 0) << int{b};
    ids_pool.push_back(id);
  }
  ids_pool.push_back(tok->TokenId("<|im_start|>"));
  std::mt19937 rng(7);
  for (int round = 0; round < 2000; ++round) {
    std::vector<int32_t> ids;
    const int n = 1 + static_cast<int>(rng() % 16);
    for (int i = 0; i < n; ++i) ids.push_back(ids_pool[rng() % ids_pool.size()]);
    for (bool skip : {false, true}) {
      auto text = tok->Decode(ids, skip);
      ASSERT_TRUE(text.ok());
      EXPECT_EQ(StreamDecode(*tok, ids, skip), *text);
    }
  }
}

TEST(TokenizerErrorsTest, HfJsonErrors) {
  EXPECT_THAT(Tokenizer::FromHfJson("{not json", "x.json").status().message(),
              HasSubstr("not valid JSON"));
  const std::string word_piece = R"({"model": {"type": "WordPiece", "vocab": {}}})";
  auto status = Tokenizer::FromHfJson(word_piece, "wp.json").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("WordPiece"));

  json j = ReadJson("qwen2_tiny_tokenizer.json");
  j["normalizer"] = {{"type", "NFKC"}};
  EXPECT_THAT(Tokenizer::FromHfJson(j.dump(), "q").status().message(), HasSubstr("NFKC"));

  j = ReadJson("qwen2_tiny_tokenizer.json");
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_THAT(Tokenizer::FromHfJson(j.dump(), "q").status().message(), HasSubstr("Whitespace"));

  j = ReadJson("qwen2_tiny_tokenizer.json");
  j["model"]["merges"].push_back("no_such_token x");
  EXPECT_THAT(Tokenizer::FromHfJson(j.dump(), "q").status().message(),
              HasSubstr("missing from the vocabulary"));

  j = ReadJson("qwen2_tiny_tokenizer.json");
  j["model"]["byte_fallback"] = true;
  EXPECT_THAT(Tokenizer::FromHfJson(j.dump(), "q").status().message(), HasSubstr("byte_fallback"));

  j = ReadJson("qwen2_tiny_tokenizer.json");
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  EXPECT_THAT(Tokenizer::FromHfJson(j.dump(), "q").status().message(),
              HasSubstr("bad pre-tokenizer pattern"));

  j = ReadJson("qwen2_tiny_tokenizer.json");
  j["decoder"] = {{"type", "WordPiece"}};
  EXPECT_THAT(Tokenizer::FromHfJson(j.dump(), "q").status().message(), HasSubstr("decoder"));
}

TEST(TokenizerErrorsTest, GgufErrors) {
  GgufTokenizerMetadata meta = SmolLm2GgufMetadata();
  meta.model = "llama";
  auto spec = TokenizerSpecFromGguf(meta, "spm.gguf");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(spec.status().message(), HasSubstr("not supported yet"));

  meta = SmolLm2GgufMetadata();
  meta.pre = "no-such-pre";
  spec = TokenizerSpecFromGguf(meta, "x.gguf");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("no-such-pre"));

  meta = SmolLm2GgufMetadata();
  meta.token_types.pop_back();
  EXPECT_FALSE(TokenizerSpecFromGguf(meta, "x.gguf").ok());

  meta = SmolLm2GgufMetadata();
  meta.bos_id = 49152;
  spec = TokenizerSpecFromGguf(meta, "x.gguf");
  ASSERT_TRUE(spec.ok());
  EXPECT_THAT(Tokenizer::Create(*spec).status().message(), HasSubstr("BOS id 49152"));
}

TEST(TokenizerErrorsTest, SpecErrors) {
  TokenizerSpec spec;
  EXPECT_THAT(Tokenizer::Create(spec).status().message(), HasSubstr("empty vocabulary"));
  spec.tokens = {"a", "b", "ab"};
  spec.merges = {"a b"};
  spec.pre_tokenizer = "gpt2";
  spec.add_bos = true;
  EXPECT_THAT(Tokenizer::Create(spec).status().message(), HasSubstr("no BOS"));
  spec.add_bos = false;
  spec.merges = {"ab"};
  EXPECT_THAT(Tokenizer::Create(spec).status().message(), HasSubstr("left right"));
  spec.merges = {"a b"};
  auto tok = Tokenizer::Create(spec);
  ASSERT_TRUE(tok.ok()) << tok.status();
  // Bytes outside the vocabulary are dropped, as Hugging Face does without an unk token.
  EXPECT_EQ((*tok)->Encode("abcab", false), (std::vector<int32_t>{2, 2}));
}

TEST(TokenizerTest, ConcurrentEncodeAgrees) {
  auto tok = LoadSmolLm2Gguf();
  ASSERT_NE(tok, nullptr);
  const std::string text = Corpus()[3].bytes + Corpus()[20].bytes;
  const std::vector<int32_t> expected = tok->Encode(text, false);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        if (tok->Encode(text, false) != expected) ++mismatches;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace shardserve
