#include "coordinator/test_model_frontend.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "common/testing/test_env.h"
#include "glog/logging.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"

namespace shardserve {

std::string ReadRunfile(const std::string& path) {
  const std::string full = TestRunfile(path);
  std::ifstream in(full, std::ios::binary);
  CHECK(in.good()) << "cannot read " << full;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::unique_ptr<ModelFrontend> LoadSmolLm2Frontend(int64_t max_model_len) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromHfJson(
      ReadRunfile("tests/tokenizer/smollm2_tokenizer.json"), "smollm2_tokenizer.json");
  CHECK(tokenizer.ok()) << tokenizer.status();
  absl::StatusOr<ChatTemplate> chat =
      ChatTemplate::Create(ReadRunfile("tests/chat_template/templates/smollm2_instruct.jinja"),
                           "<|im_start|>", "<|im_end|>");
  CHECK(chat.ok()) << chat.status();
  ModelFrontend::Info info;
  info.arch = "llama";
  info.fingerprint = "0123abcd";
  info.vocab_size = (*tokenizer)->vocab_size();
  info.max_model_len = max_model_len;
  info.eos_token_ids = {(*tokenizer)->TokenId("<|im_end|>")};
  return std::make_unique<ModelFrontend>(std::move(info), *std::move(tokenizer), *std::move(chat));
}

}  // namespace shardserve
