// Writes the seed corpora under corpus/: small well-formed GGUF and safetensors files that
// reach deep into the readers (model configs of each architecture family, every metadata type,
// every tensor dtype). Regenerate with
//   bazel run //tests/fuzz:make_fuzz_seeds -- "$PWD/tests/fuzz/corpus"
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "model/gguf_builder.h"
#include "model/safetensors_builder.h"

namespace shardserve {
namespace {

void AddTokenizer(GgufBuilder& b, int vocab) {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int i = 0; i < vocab; ++i) {
    tokens.push_back(std::string(1, static_cast<char>('a' + i % 26)) + std::to_string(i));
    scores.push_back(-static_cast<float>(i));
    types.push_back(i < 3 ? 3 : 1);
  }
  b.AddString("tokenizer.ggml.model", "gpt2")
      .AddStringArray("tokenizer.ggml.tokens", tokens)
      .AddFloat32Array("tokenizer.ggml.scores", scores)
      .AddInt32Array("tokenizer.ggml.token_type", types)
      .AddStringArray("tokenizer.ggml.merges", {"a b", "c d"})
      .AddUint32("tokenizer.ggml.bos_token_id", 1)
      .AddUint32("tokenizer.ggml.eos_token_id", 2)
      .AddBool("tokenizer.ggml.add_bos_token", false);
}

// One-layer dense llama, hidden 32, 2 heads, untied output.
GgufBuilder Llama() {
  GgufBuilder b;
  b.AddString("general.architecture", "llama")
      .AddUint32("llama.block_count", 1)
      .AddUint32("llama.context_length", 64)
      .AddUint32("llama.embedding_length", 32)
      .AddUint32("llama.feed_forward_length", 64)
      .AddUint32("llama.attention.head_count", 2)
      .AddUint32("llama.attention.head_count_kv", 1)
      .AddFloat32("llama.rope.freq_base", 10000.0f)
      .AddFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .AddUint32("llama.vocab_size", 8);
  AddTokenizer(b, 8);
  b.AddTensor("token_embd.weight", DType::kQ8_0, {8, 32});
  b.AddTensor("output_norm.weight", DType::kF32, {32});
  b.AddTensor("output.weight", DType::kQ4_0, {8, 32});
  b.AddTensor("blk.0.attn_norm.weight", DType::kF32, {32});
  b.AddTensor("blk.0.attn_q.weight", DType::kQ4_1, {32, 32});
  b.AddTensor("blk.0.attn_k.weight", DType::kF16, {16, 32});
  b.AddTensor("blk.0.attn_v.weight", DType::kBF16, {16, 32});
  b.AddTensor("blk.0.attn_output.weight", DType::kQ8_0, {32, 32});
  b.AddTensor("blk.0.ffn_norm.weight", DType::kF32, {32});
  b.AddTensor("blk.0.ffn_gate.weight", DType::kQ8_0, {64, 32});
  b.AddTensor("blk.0.ffn_up.weight", DType::kQ8_0, {64, 32});
  b.AddTensor("blk.0.ffn_down.weight", DType::kQ8_0, {32, 64});
  return b;
}

// One-layer Qwen2-MoE: biases, stacked experts, shared expert, tied embeddings.
GgufBuilder Qwen2Moe() {
  GgufBuilder b;
  b.AddString("general.architecture", "qwen2moe")
      .AddUint32("qwen2moe.block_count", 1)
      .AddUint32("qwen2moe.context_length", 64)
      .AddUint32("qwen2moe.embedding_length", 32)
      .AddUint32("qwen2moe.attention.head_count", 2)
      .AddUint32("qwen2moe.attention.head_count_kv", 2)
      .AddFloat32("qwen2moe.attention.layer_norm_rms_epsilon", 1e-6f)
      .AddUint32("qwen2moe.expert_count", 2)
      .AddUint32("qwen2moe.expert_used_count", 1)
      .AddUint32("qwen2moe.expert_feed_forward_length", 32)
      .AddUint32("qwen2moe.expert_shared_feed_forward_length", 32);
  AddTokenizer(b, 4);
  b.AddTensor("token_embd.weight", DType::kF16, {4, 32});
  b.AddTensor("output_norm.weight", DType::kF32, {32});
  b.AddTensor("blk.0.attn_norm.weight", DType::kF32, {32});
  b.AddTensor("blk.0.attn_q.weight", DType::kF16, {32, 32});
  b.AddTensor("blk.0.attn_k.weight", DType::kF16, {32, 32});
  b.AddTensor("blk.0.attn_v.weight", DType::kF16, {32, 32});
  b.AddTensor("blk.0.attn_q.bias", DType::kF32, {32});
  b.AddTensor("blk.0.attn_k.bias", DType::kF32, {32});
  b.AddTensor("blk.0.attn_v.bias", DType::kF32, {32});
  b.AddTensor("blk.0.attn_output.weight", DType::kF16, {32, 32});
  b.AddTensor("blk.0.ffn_norm.weight", DType::kF32, {32});
  b.AddTensor("blk.0.ffn_gate_inp.weight", DType::kF32, {2, 32});
  b.AddTensor("blk.0.ffn_gate_exps.weight", DType::kQ8_0, {2, 32, 32});
  b.AddTensor("blk.0.ffn_up_exps.weight", DType::kQ8_0, {2, 32, 32});
  b.AddTensor("blk.0.ffn_down_exps.weight", DType::kQ8_0, {2, 32, 32});
  b.AddTensor("blk.0.ffn_gate_shexp.weight", DType::kF16, {32, 32});
  b.AddTensor("blk.0.ffn_up_shexp.weight", DType::kF16, {32, 32});
  b.AddTensor("blk.0.ffn_down_shexp.weight", DType::kF16, {32, 32});
  b.AddTensor("blk.0.ffn_gate_inp_shexp.weight", DType::kF32, {32});
  return b;
}

// One-layer Qwen3 with an explicit head dimension and per-head q/k norms.
GgufBuilder Qwen3() {
  GgufBuilder b;
  b.SetVersion(2);
  b.AddString("general.architecture", "qwen3")
      .AddUint32("qwen3.block_count", 1)
      .AddUint32("qwen3.context_length", 32)
      .AddUint32("qwen3.embedding_length", 16)
      .AddUint32("qwen3.feed_forward_length", 24)
      .AddUint32("qwen3.attention.head_count", 2)
      .AddUint32("qwen3.attention.head_count_kv", 1)
      .AddUint32("qwen3.attention.key_length", 8)
      .AddUint32("qwen3.attention.value_length", 8)
      .AddFloat32("qwen3.attention.layer_norm_rms_epsilon", 1e-6f)
      .AddString("qwen3.rope.scaling.type", "linear")
      .AddFloat32("qwen3.rope.scaling.factor", 2.0f)
      .AddUint32("qwen3.vocab_size", 4);
  b.AddTensor("token_embd.weight", DType::kBF16, {4, 16});
  b.AddTensor("output_norm.weight", DType::kF32, {16});
  b.AddTensor("blk.0.attn_norm.weight", DType::kF32, {16});
  b.AddTensor("blk.0.attn_q.weight", DType::kF32, {16, 16});
  b.AddTensor("blk.0.attn_k.weight", DType::kF32, {8, 16});
  b.AddTensor("blk.0.attn_v.weight", DType::kF32, {8, 16});
  b.AddTensor("blk.0.attn_q_norm.weight", DType::kF32, {8});
  b.AddTensor("blk.0.attn_k_norm.weight", DType::kF32, {8});
  b.AddTensor("blk.0.attn_output.weight", DType::kF32, {16, 16});
  b.AddTensor("blk.0.ffn_norm.weight", DType::kF32, {16});
  b.AddTensor("blk.0.ffn_gate.weight", DType::kF16, {24, 16});
  b.AddTensor("blk.0.ffn_up.weight", DType::kF16, {24, 16});
  b.AddTensor("blk.0.ffn_down.weight", DType::kF16, {16, 24});
  return b;
}

// Every metadata type and the K-quant and integer tensor types, no model.
GgufBuilder Everything() {
  GgufBuilder b;
  b.SetAlignment(64);
  b.AddUint8("u8", 1).AddInt8("i8", -1).AddUint16("u16", 2).AddInt16("i16", -2);
  b.AddUint32("u32", 3).AddInt32("i32", -3).AddUint64("u64", 4).AddInt64("i64", -4);
  b.AddFloat32("f32", 0.5f).AddFloat64("f64", 0.25).AddBool("b", true).AddString("s", "str");
  b.AddUint8Array("au8", {1, 2}).AddInt32Array("ai32", {3}).AddFloat32Array("af32", {1.5f});
  b.AddStringArray("as", {"x", "yz"});
  b.AddTensor("k4", DType::kQ4_K, {1, 256});
  b.AddTensor("k6", DType::kQ6_K, {1, 256});
  b.AddTensor("q81", DType::kQ8_1, {1, 32});
  b.AddTensor("i32", DType::kI32, {2, 2});
  b.AddTensor("f64", DType::kF64, {1, 1, 1, 2});
  return b;
}

bool Write(const std::string& path, const std::vector<uint8_t>& bytes) {
  if (!WriteBytesToFile(path, bytes).ok()) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return false;
  }
  std::printf("%s: %zu bytes\n", path.c_str(), bytes.size());
  return true;
}

}  // namespace
}  // namespace shardserve

int main(int argc, char** argv) {
  using namespace shardserve;
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_fuzz_seeds <corpus dir>\n");
    return 2;
  }
  const std::string gguf = std::string(argv[1]) + "/gguf/";
  const std::string st = std::string(argv[1]) + "/safetensors/";
  bool ok = Write(gguf + "llama.gguf", Llama().Build()) &&
            Write(gguf + "qwen2moe.gguf", Qwen2Moe().Build()) &&
            Write(gguf + "qwen3.gguf", Qwen3().Build()) &&
            Write(gguf + "everything.gguf", Everything().Build());
  SafetensorsBuilder dtypes;
  dtypes.AddTensor("f32", "F32", {2, 3})
      .AddTensor("f16", "F16", {3})
      .AddTensor("bf16", "BF16", {1, 2, 2})
      .AddTensor("i32", "I32", {2})
      .AddTensor("i64", "I64", {1})
      .AddTensor("f64", "F64", {1, 1})
      .AddTensor("scalar", "F32", {})
      .AddTensor("empty", "F16", {0, 2})
      .SetMetadata({{"format", "pt"}});
  SafetensorsBuilder model;
  model.AddTensor("model.embed_tokens.weight", "BF16", {4, 8})
      .AddTensor("model.norm.weight", "F32", {8})
      .AddTensor("model.layers.0.self_attn.q_proj.weight", "F16", {8, 8});
  ok = ok && Write(st + "dtypes.safetensors", dtypes.Build()) &&
       Write(st + "model.safetensors", model.Build()) &&
       Write(st + "handwritten.safetensors",
             SafetensorsBuilder::Assemble(
                 R"({ "__metadata__" : { "a" : "b" } , "t" : { "data_offsets" : [ 0 , 8 ] ,)"
                 R"( "shape" : [ 2 ] , "dtype" : "F32" } })",
                 std::vector<uint8_t>(8, 0x3f)));
  return ok ? 0 : 1;
}
