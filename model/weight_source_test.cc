#include "model/weight_source.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf_builder.h"
#include "model/gguf_weight_source.h"
#include "model/hf_weight_source.h"
#include "model/safetensors_builder.h"

namespace shardserve {
namespace {

using ::testing::HasSubstr;

std::string TempPath(const std::string& name) { return testing::TempDir() + "/" + name; }

// A fresh empty directory.
std::string MakeDir(const std::string& name) {
  const std::string dir = TempPath(name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

void WriteText(const std::string& path, const std::string& text) {
  ASSERT_TRUE(WriteBytesToFile(path, std::vector<uint8_t>(text.begin(), text.end())).ok());
}

// True when `v` points at the pattern bytes the builders write for tensor `stored_name`,
// starting `offset` bytes into it.
bool HoldsPattern(const TensorView& v, const std::string& stored_name, size_t offset = 0) {
  const std::vector<uint8_t> expected = PatternBytes(stored_name, offset + v.nbytes());
  return std::memcmp(v.data, expected.data() + offset, v.nbytes()) == 0;
}

std::string ErrorOf(const absl::Status& s) { return std::string(s.message()); }

// ---- GGUF ----

// A 2-layer llama model with hidden 256 (so K-quants fit), 4 heads of 64, 2 KV heads, MLP 512,
// vocab 40, untied output, and a different dtype on each kind of weight.
GgufBuilder TinyLlamaGguf(bool skip_last_v = false, bool wrong_q_shape = false) {
  GgufBuilder b;
  b.AddString("general.architecture", "llama")
      .AddUint32("llama.block_count", 2)
      .AddUint32("llama.context_length", 128)
      .AddUint32("llama.embedding_length", 256)
      .AddUint32("llama.feed_forward_length", 512)
      .AddUint32("llama.attention.head_count", 4)
      .AddUint32("llama.attention.head_count_kv", 2)
      .AddFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .AddUint32("llama.vocab_size", 40);
  b.AddTensor("token_embd.weight", DType::kF16, {40, 256});
  b.AddTensor("output_norm.weight", DType::kF32, {256});
  b.AddTensor("output.weight", DType::kBF16, {40, 256});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    b.AddTensor(p + "attn_norm.weight", DType::kF32, {256});
    b.AddTensor(p + "attn_q.weight", DType::kQ8_0, {wrong_q_shape ? 128 : 256, 256});
    b.AddTensor(p + "attn_k.weight", DType::kQ8_0, {128, 256});
    if (!(skip_last_v && l == 1)) b.AddTensor(p + "attn_v.weight", DType::kQ4_0, {128, 256});
    b.AddTensor(p + "attn_output.weight", DType::kQ4_1, {256, 256});
    b.AddTensor(p + "ffn_norm.weight", DType::kF32, {256});
    b.AddTensor(p + "ffn_gate.weight", DType::kQ4_K, {512, 256});
    b.AddTensor(p + "ffn_up.weight", DType::kQ4_K, {512, 256});
    b.AddTensor(p + "ffn_down.weight", DType::kQ6_K, {256, 512});
  }
  return b;
}

TEST(GgufWeightSourceTest, ServesDenseWeightsInPlace) {
  const std::string path = TempPath("tiny_llama.gguf");
  ASSERT_TRUE(TinyLlamaGguf().WriteFile(path).ok());
  auto source = OpenWeightSource(path);
  ASSERT_TRUE(source.ok()) << source.status();
  const WeightSource& w = **source;
  EXPECT_EQ(w.path(), path);
  ASSERT_NE(w.gguf(), nullptr);
  EXPECT_EQ(w.gguf()->tensors().size(), 21u);
  EXPECT_EQ(w.config().arch, Architecture::kLlama);
  EXPECT_EQ(w.config().num_layers, 2);
  EXPECT_FALSE(w.config().tie_word_embeddings);

  struct Case {
    const char* name;
    DType dtype;
    const char* shape;
  };
  const Case cases[] = {
      {"token_embd", DType::kF16, "[40, 256]"},
      {"output", DType::kBF16, "[40, 256]"},
      {"output_norm", DType::kF32, "[256]"},
      {"blk.1.attn_q", DType::kQ8_0, "[256, 256]"},
      {"blk.1.attn_v", DType::kQ4_0, "[128, 256]"},
      {"blk.0.attn_output", DType::kQ4_1, "[256, 256]"},
      {"blk.0.ffn_up", DType::kQ4_K, "[512, 256]"},
      {"blk.1.ffn_down", DType::kQ6_K, "[256, 512]"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<TensorView> v = w.Get(c.name);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->dtype, c.dtype) << c.name;
    EXPECT_EQ(v->ShapeString(), c.shape) << c.name;
    EXPECT_EQ(v->device, Device::Cpu());
    EXPECT_TRUE(HoldsPattern(*v, std::string(c.name) + ".weight")) << c.name;
  }
  EXPECT_TRUE(w.Has("blk.0.attn_k"));
  EXPECT_FALSE(w.Has("blk.0.attn_q.bias"));
  EXPECT_FALSE(w.Has("blk.2.attn_q"));
  absl::Status missing = w.Get("blk.7.attn_q").status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ErrorOf(missing), HasSubstr(path));
  EXPECT_THAT(ErrorOf(missing), HasSubstr("'blk.7.attn_q'"));
}

TEST(GgufWeightSourceTest, RejectsMissingOrMisshapenTensors) {
  const std::string path = TempPath("broken.gguf");
  ASSERT_TRUE(TinyLlamaGguf(/*skip_last_v=*/true).WriteFile(path).ok());
  auto source = OpenWeightSource(path);
  ASSERT_FALSE(source.ok());
  EXPECT_THAT(ErrorOf(source.status()), HasSubstr(path));
  EXPECT_THAT(ErrorOf(source.status()), HasSubstr("'blk.1.attn_v'"));

  ASSERT_TRUE(TinyLlamaGguf(false, /*wrong_q_shape=*/true).WriteFile(path).ok());
  source = OpenWeightSource(path);
  ASSERT_FALSE(source.ok());
  EXPECT_THAT(ErrorOf(source.status()),
              HasSubstr("tensor 'blk.0.attn_q' has shape [128, 256], expected [256, 256]"));

  GgufBuilder quantized_norm = TinyLlamaGguf();
  quantized_norm.AddTensor("rope_freqs.weight", DType::kF32, {32});
  ASSERT_TRUE(quantized_norm.WriteFile(path).ok());
  EXPECT_TRUE(OpenWeightSource(path).ok());  // extra tensors are fine
}

TEST(GgufWeightSourceTest, RejectsUnsupportedDtypes) {
  GgufBuilder b;
  b.AddString("general.architecture", "llama")
      .AddUint32("llama.block_count", 1)
      .AddUint32("llama.context_length", 16)
      .AddUint32("llama.embedding_length", 32)
      .AddUint32("llama.feed_forward_length", 32)
      .AddUint32("llama.attention.head_count", 2)
      .AddFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .AddUint32("llama.vocab_size", 8);
  b.AddTensor("token_embd.weight", DType::kF32, {8, 32});
  b.AddTensor("output_norm.weight", DType::kF32, {32});
  b.AddTensor("blk.0.attn_norm.weight", DType::kQ8_0, {32});  // a quantized norm
  std::vector<uint8_t> bytes = b.Build();
  auto file = GgufFile::Parse("q.gguf", absl::MakeConstSpan(bytes));
  ASSERT_TRUE(file.ok()) << file.status();
  auto source = GgufWeightSource::FromFile(std::move(*file));
  ASSERT_FALSE(source.ok());
  EXPECT_THAT(ErrorOf(source.status()), HasSubstr("'blk.0.attn_norm' has dtype q8_0"));
  EXPECT_THAT(ErrorOf(source.status()), HasSubstr("supported here: f32, f16, bf16"));
}

// Qwen2-MoE in llama.cpp's layout: stacked experts, q/k/v biases, a shared expert whose gate is
// stored as a vector.
GgufBuilder TinyQwen2MoeGguf() {
  GgufBuilder b;
  b.AddString("general.architecture", "qwen2moe")
      .AddUint32("qwen2moe.block_count", 1)
      .AddUint32("qwen2moe.context_length", 64)
      .AddUint32("qwen2moe.embedding_length", 64)
      .AddUint32("qwen2moe.attention.head_count", 4)
      .AddUint32("qwen2moe.attention.head_count_kv", 2)
      .AddFloat32("qwen2moe.attention.layer_norm_rms_epsilon", 1e-6f)
      .AddUint32("qwen2moe.expert_count", 4)
      .AddUint32("qwen2moe.expert_used_count", 2)
      .AddUint32("qwen2moe.expert_feed_forward_length", 32)
      .AddUint32("qwen2moe.expert_shared_feed_forward_length", 96)
      .AddStringArray("tokenizer.ggml.tokens", std::vector<std::string>(16, "x"));
  b.AddTensor("token_embd.weight", DType::kQ8_0, {16, 64});
  b.AddTensor("output_norm.weight", DType::kF32, {64});
  b.AddTensor("blk.0.attn_norm.weight", DType::kF32, {64});
  b.AddTensor("blk.0.attn_q.weight", DType::kF16, {64, 64});
  b.AddTensor("blk.0.attn_k.weight", DType::kF16, {32, 64});
  b.AddTensor("blk.0.attn_v.weight", DType::kF16, {32, 64});
  b.AddTensor("blk.0.attn_q.bias", DType::kF32, {64});
  b.AddTensor("blk.0.attn_k.bias", DType::kF32, {32});
  b.AddTensor("blk.0.attn_v.bias", DType::kF32, {32});
  b.AddTensor("blk.0.attn_output.weight", DType::kF16, {64, 64});
  b.AddTensor("blk.0.ffn_norm.weight", DType::kF32, {64});
  b.AddTensor("blk.0.ffn_gate_inp.weight", DType::kF32, {4, 64});
  b.AddTensor("blk.0.ffn_gate_exps.weight", DType::kQ8_0, {4, 32, 64});
  b.AddTensor("blk.0.ffn_up_exps.weight", DType::kQ8_0, {4, 32, 64});
  b.AddTensor("blk.0.ffn_down_exps.weight", DType::kQ8_0, {4, 64, 32});
  b.AddTensor("blk.0.ffn_gate_shexp.weight", DType::kF16, {96, 64});
  b.AddTensor("blk.0.ffn_up_shexp.weight", DType::kF16, {96, 64});
  b.AddTensor("blk.0.ffn_down_shexp.weight", DType::kF16, {64, 96});
  b.AddTensor("blk.0.ffn_gate_inp_shexp.weight", DType::kF32, {64});
  return b;
}

TEST(GgufWeightSourceTest, SlicesStackedExperts) {
  const std::vector<uint8_t> bytes = TinyQwen2MoeGguf().Build();
  auto file = GgufFile::Parse("moe.gguf", absl::MakeConstSpan(bytes));
  ASSERT_TRUE(file.ok()) << file.status();
  auto source = GgufWeightSource::FromFile(std::move(*file));
  ASSERT_TRUE(source.ok()) << source.status();
  const WeightSource& w = **source;
  EXPECT_EQ(w.config().arch, Architecture::kQwen2Moe);
  EXPECT_TRUE(w.config().tie_word_embeddings);
  EXPECT_FALSE(w.Has("output"));

  // Expert 2 of [4, 32, 64] Q8_0: rows of 2 blocks x 34 bytes, 32 rows per expert.
  absl::StatusOr<TensorView> gate2 = w.Get("blk.0.ffn_gate.2");
  ASSERT_TRUE(gate2.ok()) << gate2.status();
  EXPECT_EQ(gate2->ShapeString(), "[32, 64]");
  EXPECT_EQ(gate2->dtype, DType::kQ8_0);
  EXPECT_TRUE(HoldsPattern(*gate2, "blk.0.ffn_gate_exps.weight", 2 * 32 * 68));
  absl::StatusOr<TensorView> down3 = w.Get("blk.0.ffn_down.3");
  ASSERT_TRUE(down3.ok()) << down3.status();
  EXPECT_EQ(down3->ShapeString(), "[64, 32]");
  EXPECT_TRUE(HoldsPattern(*down3, "blk.0.ffn_down_exps.weight", 3 * 64 * 34));

  EXPECT_FALSE(w.Has("blk.0.ffn_gate.4"));
  EXPECT_THAT(ErrorOf(w.Get("blk.0.ffn_up.9").status()), HasSubstr("holds 4 experts"));
  EXPECT_EQ(w.Get("blk.0.ffn_gate_inp_shexp")->ShapeString(), "[1, 64]");
  EXPECT_EQ(w.Get("blk.0.attn_k.bias")->ShapeString(), "[32]");
  EXPECT_TRUE(HoldsPattern(*w.Get("blk.0.attn_k.bias"), "blk.0.attn_k.bias"));
}

// ---- Hugging Face ----

constexpr char kQwen3Config[] = R"({
  "architectures": ["Qwen3ForCausalLM"], "hidden_size": 32, "intermediate_size": 48,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
  "vocab_size": 24, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
  "tie_word_embeddings": true, "eos_token_id": 3})";

// Writes the Qwen3 tensors over two shards with an index; `drop` is left out.
void WriteQwen3Checkpoint(const std::string& dir, const std::string& drop = "",
                          const std::string& f32_shape_override = "") {
  WriteText(dir + "/config.json", kQwen3Config);
  SafetensorsBuilder shards[2];
  std::string weight_map;
  auto add = [&](int shard, const std::string& name, const std::string& dtype,
                 std::vector<int64_t> shape) {
    if (name == drop) return;
    if (name == f32_shape_override) shape = {shape[0] + 1};
    shards[shard].AddTensor(name, dtype, shape);
    if (!weight_map.empty()) weight_map += ",";
    weight_map +=
        "\"" + name + "\": \"model-0000" + std::to_string(shard + 1) + "-of-00002.safetensors\"";
  };
  add(0, "model.embed_tokens.weight", "BF16", {24, 32});
  add(1, "model.norm.weight", "F32", {32});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(l, p + "input_layernorm.weight", "F32", {32});
    add(l, p + "self_attn.q_proj.weight", "BF16", {64, 32});
    add(l, p + "self_attn.k_proj.weight", "BF16", {32, 32});
    add(l, p + "self_attn.v_proj.weight", "F16", {32, 32});
    add(l, p + "self_attn.o_proj.weight", "BF16", {32, 64});
    add(l, p + "self_attn.q_norm.weight", "F32", {16});
    add(l, p + "self_attn.k_norm.weight", "F32", {16});
    add(l, p + "post_attention_layernorm.weight", "F32", {32});
    add(l, p + "mlp.gate_proj.weight", "F32", {48, 32});
    add(l, p + "mlp.up_proj.weight", "F32", {48, 32});
    add(l, p + "mlp.down_proj.weight", "F32", {32, 48});
  }
  ASSERT_TRUE(shards[0].WriteFile(dir + "/model-00001-of-00002.safetensors").ok());
  ASSERT_TRUE(shards[1].WriteFile(dir + "/model-00002-of-00002.safetensors").ok());
  WriteText(dir + "/model.safetensors.index.json", "{\"weight_map\": {" + weight_map + "}}");
}

TEST(HfWeightSourceTest, ServesShardedQwen3ByCanonicalName) {
  const std::string dir = MakeDir("qwen3");
  WriteQwen3Checkpoint(dir);
  auto source = OpenWeightSource(dir);
  ASSERT_TRUE(source.ok()) << source.status();
  const WeightSource& w = **source;
  EXPECT_EQ(w.path(), dir);
  EXPECT_EQ(w.gguf(), nullptr);
  EXPECT_EQ(w.config().arch, Architecture::kQwen3);
  EXPECT_EQ(w.config().rope_style, RopeStyle::kNeox);

  struct Case {
    const char* canonical;
    const char* hf;
    const char* shape;
  };
  const Case cases[] = {
      {"token_embd", "model.embed_tokens.weight", "[24, 32]"},
      {"output_norm", "model.norm.weight", "[32]"},
      {"blk.1.attn_norm", "model.layers.1.input_layernorm.weight", "[32]"},
      {"blk.1.attn_q", "model.layers.1.self_attn.q_proj.weight", "[64, 32]"},
      {"blk.0.attn_v", "model.layers.0.self_attn.v_proj.weight", "[32, 32]"},
      {"blk.0.attn_output", "model.layers.0.self_attn.o_proj.weight", "[32, 64]"},
      {"blk.1.attn_k_norm", "model.layers.1.self_attn.k_norm.weight", "[16]"},
      {"blk.0.ffn_norm", "model.layers.0.post_attention_layernorm.weight", "[32]"},
      {"blk.1.ffn_gate", "model.layers.1.mlp.gate_proj.weight", "[48, 32]"},
      {"blk.1.ffn_down", "model.layers.1.mlp.down_proj.weight", "[32, 48]"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<TensorView> v = w.Get(c.canonical);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->ShapeString(), c.shape) << c.canonical;
    EXPECT_TRUE(HoldsPattern(*v, c.hf)) << c.canonical;
  }
  EXPECT_EQ(w.Get("blk.0.attn_v")->dtype, DType::kF16);
  EXPECT_EQ(w.Get("token_embd")->dtype, DType::kBF16);
  EXPECT_FALSE(w.Has("output"));
  EXPECT_THAT(ErrorOf(w.Get("output").status()), HasSubstr("tied"));
  EXPECT_FALSE(w.Has("blk.0.attn_q.bias"));
  EXPECT_THAT(ErrorOf(w.Get("blk.0.attn_q.bias").status()),
              HasSubstr("'model.layers.0.self_attn.q_proj.bias'"));
  EXPECT_FALSE(w.Has("nonsense"));
}

TEST(HfWeightSourceTest, RejectsMissingAndMisshapenTensors) {
  std::string dir = MakeDir("qwen3_missing");
  WriteQwen3Checkpoint(dir, /*drop=*/"model.layers.1.self_attn.q_norm.weight");
  auto source = OpenWeightSource(dir);
  ASSERT_FALSE(source.ok());
  EXPECT_EQ(source.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ErrorOf(source.status()), HasSubstr(dir));
  EXPECT_THAT(ErrorOf(source.status()), HasSubstr("'blk.1.attn_q_norm'"));
  EXPECT_THAT(ErrorOf(source.status()), HasSubstr("model.layers.1.self_attn.q_norm.weight"));

  dir = MakeDir("qwen3_shape");
  WriteQwen3Checkpoint(dir, "", /*f32_shape_override=*/"model.norm.weight");
  source = OpenWeightSource(dir);
  ASSERT_FALSE(source.ok());
  EXPECT_THAT(ErrorOf(source.status()),
              HasSubstr("tensor 'output_norm' has shape [33], expected [32]"));

  dir = MakeDir("no_config");
  source = OpenWeightSource(dir);
  ASSERT_FALSE(source.ok());
  EXPECT_THAT(ErrorOf(source.status()), HasSubstr("config.json"));
}

TEST(HfWeightSourceTest, MapsMixtralExperts) {
  const std::string dir = MakeDir("mixtral");
  WriteText(dir + "/config.json", R"({
    "architectures": ["MixtralForCausalLM"], "hidden_size": 16, "intermediate_size": 24,
    "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
    "num_local_experts": 3, "num_experts_per_tok": 2, "vocab_size": 10,
    "max_position_embeddings": 32})");
  SafetensorsBuilder b;
  b.AddTensor("model.embed_tokens.weight", "F32", {10, 16})
      .AddTensor("model.norm.weight", "F32", {16})
      .AddTensor("lm_head.weight", "F32", {10, 16});
  const std::string p = "model.layers.0.";
  b.AddTensor(p + "input_layernorm.weight", "F32", {16})
      .AddTensor(p + "self_attn.q_proj.weight", "F32", {16, 16})
      .AddTensor(p + "self_attn.k_proj.weight", "F32", {8, 16})
      .AddTensor(p + "self_attn.v_proj.weight", "F32", {8, 16})
      .AddTensor(p + "self_attn.o_proj.weight", "F32", {16, 16})
      .AddTensor(p + "post_attention_layernorm.weight", "F32", {16})
      .AddTensor(p + "block_sparse_moe.gate.weight", "F32", {3, 16});
  for (int e = 0; e < 3; ++e) {
    const std::string ep = p + "block_sparse_moe.experts." + std::to_string(e) + ".";
    b.AddTensor(ep + "w1.weight", "BF16", {24, 16})
        .AddTensor(ep + "w3.weight", "BF16", {24, 16})
        .AddTensor(ep + "w2.weight", "BF16", {16, 24});
  }
  ASSERT_TRUE(b.WriteFile(dir + "/model.safetensors").ok());
  auto source = OpenWeightSource(dir);
  ASSERT_TRUE(source.ok()) << source.status();
  const WeightSource& w = **source;
  EXPECT_EQ(w.config().arch, Architecture::kMixtral);
  EXPECT_TRUE(HoldsPattern(*w.Get("output"), "lm_head.weight"));
  EXPECT_TRUE(
      HoldsPattern(*w.Get("blk.0.ffn_gate_inp"), "model.layers.0.block_sparse_moe.gate.weight"));
  EXPECT_TRUE(HoldsPattern(*w.Get("blk.0.ffn_gate.1"),
                           "model.layers.0.block_sparse_moe.experts.1.w1.weight"));
  EXPECT_TRUE(HoldsPattern(*w.Get("blk.0.ffn_up.2"),
                           "model.layers.0.block_sparse_moe.experts.2.w3.weight"));
  EXPECT_TRUE(HoldsPattern(*w.Get("blk.0.ffn_down.0"),
                           "model.layers.0.block_sparse_moe.experts.0.w2.weight"));
  EXPECT_EQ(w.Get("blk.0.ffn_down.0")->ShapeString(), "[16, 24]");
  EXPECT_FALSE(w.Has("blk.0.ffn_gate.3"));
}

TEST(HfWeightSourceTest, MapsQwenMoeAndOlmoeNames) {
  ModelConfig qwen2moe;
  qwen2moe.arch = Architecture::kQwen2Moe;
  qwen2moe.num_experts = 4;
  EXPECT_EQ(HfWeightSource::HfName("blk.3.ffn_gate_inp", qwen2moe),
            "model.layers.3.mlp.gate.weight");
  EXPECT_EQ(HfWeightSource::HfName("blk.3.ffn_up.11", qwen2moe),
            "model.layers.3.mlp.experts.11.up_proj.weight");
  EXPECT_EQ(HfWeightSource::HfName("blk.0.ffn_down_shexp", qwen2moe),
            "model.layers.0.mlp.shared_expert.down_proj.weight");
  EXPECT_EQ(HfWeightSource::HfName("blk.0.ffn_gate_inp_shexp", qwen2moe),
            "model.layers.0.mlp.shared_expert_gate.weight");
  EXPECT_EQ(HfWeightSource::HfName("blk.12.attn_v.bias", qwen2moe),
            "model.layers.12.self_attn.v_proj.bias");
  EXPECT_EQ(HfWeightSource::HfName("blk.x.attn_q", qwen2moe), "");
  EXPECT_EQ(HfWeightSource::HfName("blk.1.ffn_sideways.2", qwen2moe), "");
  ModelConfig olmoe;
  olmoe.arch = Architecture::kOlmoe;
  olmoe.num_experts = 64;
  EXPECT_EQ(HfWeightSource::HfName("blk.2.ffn_gate.63", olmoe),
            "model.layers.2.mlp.experts.63.gate_proj.weight");
  EXPECT_EQ(HfWeightSource::HfName("blk.2.attn_q_norm", olmoe),
            "model.layers.2.self_attn.q_norm.weight");
}

TEST(WeightSourceTest, ReportsMissingAndForeignPaths) {
  auto missing = OpenWeightSource(TempPath("nowhere/model.gguf"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ErrorOf(missing.status()), HasSubstr("nowhere/model.gguf"));
  const std::string text_file = TempPath("notes.txt");
  WriteText(text_file, "hello, not a model");
  auto foreign = OpenWeightSource(text_file);
  ASSERT_FALSE(foreign.ok());
  EXPECT_THAT(ErrorOf(foreign.status()), HasSubstr("not a GGUF file"));
}

TEST(WeightSourceTest, RequiredTensorsCoverEveryLayer) {
  ModelConfig c;
  c.vocab_size = 10;
  c.hidden_size = 8;
  c.num_layers = 2;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 4;
  c.num_experts = 3;
  c.moe_intermediate_size = 6;
  c.shared_expert_intermediate_size = 5;
  c.attention_bias = true;
  c.qk_norm = QkNorm::kFull;
  c.tie_word_embeddings = true;
  const std::vector<ExpectedTensor> t = RequiredTensors(c);
  // 2 globals; per layer 5 attention + 3 biases + 2 qk norms + ffn_norm + router
  // + 3 x 3 experts + 4 shared.
  EXPECT_EQ(t.size(), 2u + 2u * (5 + 3 + 2 + 1 + 1 + 9 + 4));
  auto find = [&t](const std::string& name) -> std::vector<int64_t> {
    for (const ExpectedTensor& e : t) {
      if (e.name == name) return e.shape;
    }
    return {};
  };
  EXPECT_EQ(find("blk.1.attn_k_norm"), (std::vector<int64_t>{4}));
  EXPECT_EQ(find("blk.1.attn_q_norm"), (std::vector<int64_t>{8}));
  EXPECT_EQ(find("blk.0.ffn_down.2"), (std::vector<int64_t>{8, 6}));
  EXPECT_EQ(find("blk.0.ffn_gate_inp_shexp"), (std::vector<int64_t>{1, 8}));
  EXPECT_TRUE(find("output").empty());
}

// The default model, when the environment provides it.
TEST(WeightSourceTest, OpensTheDefaultModel) {
  const char* path = std::getenv("SHARDSERVE_TEST_GGUF");
  if (path == nullptr)
    FAIL() << "SHARDSERVE_TEST_GGUF must name the default model (tools/test.sh sets it)";
  auto source = OpenWeightSource(path);
  ASSERT_TRUE(source.ok()) << source.status();
  const WeightSource& w = **source;
  EXPECT_EQ(w.config().num_layers, 30);
  EXPECT_EQ(w.config().num_heads, 9);
  EXPECT_EQ(w.config().num_kv_heads, 3);
  ASSERT_NE(w.gguf(), nullptr);
  EXPECT_EQ(w.gguf()->tensors().size(), 272u);
  absl::StatusOr<TensorView> embd = w.Get("token_embd");
  ASSERT_TRUE(embd.ok()) << embd.status();
  EXPECT_EQ(embd->dtype, DType::kQ8_0);
  EXPECT_EQ(embd->ShapeString(), "[49152, 576]");
  EXPECT_FALSE(w.Has("output"));
  EXPECT_EQ(w.Get("blk.29.ffn_down")->ShapeString(), "[576, 1536]");
  EXPECT_EQ(w.Get("blk.0.attn_q")->dtype, DType::kQ4_1);
}

}  // namespace
}  // namespace shardserve
