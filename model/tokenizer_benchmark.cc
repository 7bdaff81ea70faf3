// Encode and decode throughput on the SmolLM2 tokenizer.
//
//   bazel run -c opt //model:tokenizer_benchmark
//
// Inputs: the tokenizer test corpus (many scripts, emoji, code, long words) and generated
// English prose, each repeated to about 1 MB.
#include <benchmark/benchmark.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "model/tokenizer.h"

namespace shardserve {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

const Tokenizer& SmolLm2() {
  static const Tokenizer* tok = [] {
    auto created = Tokenizer::FromHfJson(ReadFile("tests/tokenizer/smollm2_tokenizer.json"),
                                         "smollm2_tokenizer.json");
    if (!created.ok()) {
      fprintf(stderr, "%s\n", std::string(created.status().message()).c_str());
      abort();
    }
    return created->release();
  }();
  return *tok;
}

std::string Repeat(const std::string& text, size_t bytes) {
  std::string out;
  while (out.size() < bytes) out += text;
  return out;
}

std::string CorpusText() {
  const auto corpus = nlohmann::json::parse(ReadFile("tests/tokenizer/corpus.json"));
  std::string text;
  for (const auto& entry : corpus) {
    if (entry.contains("text")) text += entry["text"].get<std::string>() + "\n";
  }
  return Repeat(text, 1 << 20);
}

std::string EnglishText() {
  const std::vector<std::string> words = {
      "the",         "of",      "and",       "to",        "in",        "is",      "was",
      "that",        "for",     "on",        "are",       "with",      "as",      "they",
      "be",          "at",      "one",       "have",      "this",      "from",    "or",
      "had",         "by",      "word",      "but",       "what",      "some",    "we",
      "can",         "out",     "other",     "were",      "all",       "there",   "when",
      "up",          "use",     "your",      "how",       "said",      "each",    "which",
      "their",       "time",    "will",      "about",     "many",      "then",    "them",
      "write",       "would",   "like",      "these",     "long",      "make",    "thing",
      "see",         "model",   "server",    "request",   "token",     "latency", "throughput",
      "distributed", "cluster", "inference", "tokenizer", "scheduler", "prefill", "decode",
      "cache"};
  std::mt19937 rng(1);
  std::string text;
  while (text.size() < (1 << 20)) {
    const int n = 5 + rng() % 15;
    for (int i = 0; i < n; ++i) {
      std::string w = words[rng() % words.size()];
      if (i == 0) w[0] = static_cast<char>(toupper(w[0]));
      text += w;
      text += i + 1 == n ? ". " : " ";
    }
    if (rng() % 6 == 0) text += std::to_string(rng() % 100000) + "\n";
  }
  return text;
}

void Encode(benchmark::State& state, const std::string& text) {
  const Tokenizer& tok = SmolLm2();
  size_t num_tokens = 0;
  for (auto _ : state) {
    std::vector<int32_t> ids = tok.Encode(text, false);
    num_tokens = ids.size();
    benchmark::DoNotOptimize(ids);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(num_tokens);
}

void BM_EncodeCorpus(benchmark::State& state) {
  static const std::string text = CorpusText();
  Encode(state, text);
}
BENCHMARK(BM_EncodeCorpus)->Unit(benchmark::kMillisecond);

void BM_EncodeEnglish(benchmark::State& state) {
  static const std::string text = EnglishText();
  Encode(state, text);
}
BENCHMARK(BM_EncodeEnglish)->Unit(benchmark::kMillisecond);

void BM_DecodeEnglish(benchmark::State& state) {
  static const std::string text = EnglishText();
  const Tokenizer& tok = SmolLm2();
  const std::vector<int32_t> ids = tok.Encode(text, false);
  for (auto _ : state) {
    auto decoded = tok.Decode(ids, false);
    benchmark::DoNotOptimize(decoded);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_DecodeEnglish)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace shardserve

BENCHMARK_MAIN();
