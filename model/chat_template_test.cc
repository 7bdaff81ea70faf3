// Chat templates of real models against transformers: every conversation in
// tests/chat_template/chat_template_cases.json was rendered by make_fixtures.py with Python's
// jinja2 configured as transformers' apply_chat_template configures it.
#include "model/chat_template.h"

#include <fstream>
#include <sstream>
#include <string>

#include "common/testing/test_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::ordered_json;

std::string FixturePath(const std::string& name) {
  return TestRunfile("tests/chat_template/" + name);
}

std::string ReadFile(const std::string& name) {
  std::ifstream in(FixturePath(name), std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << FixturePath(name);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The conversation as ChatMessages, when every message is just a string role and content.
bool AsChatMessages(const json& messages, std::vector<ChatMessage>* out) {
  for (const json& m : messages) {
    if (m.size() != 2 || !m.contains("role") || !m.contains("content") ||
        !m["content"].is_string()) {
      return false;
    }
    out->push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return true;
}

TEST(ChatTemplateTest, RendersEveryModelTemplateAsTransformersDoes) {
  json fixture = json::parse(ReadFile("chat_template_cases.json"));
  ASSERT_GE(fixture["templates"].size(), 12u);
  int rendered = 0, rejected = 0;
  for (const json& spec : fixture["templates"]) {
    const std::string name = spec["name"].get<std::string>();
    absl::StatusOr<ChatTemplate> chat = ChatTemplate::Create(
        ReadFile(spec["file"].get<std::string>()), spec["bos_token"].get<std::string>(),
        spec["eos_token"].get<std::string>());
    ASSERT_TRUE(chat.ok()) << name << ": " << chat.status();
    for (const json& c : spec["cases"]) {
      SCOPED_TRACE(name + " / " + c["name"].get<std::string>());
      const bool generation = c["add_generation_prompt"].get<bool>();
      absl::StatusOr<std::string> out = chat->ApplyJson(c["messages"], generation, c["extra"]);
      if (c.contains("error")) {
        ASSERT_FALSE(out.ok()) << "transformers failed with " << c["error"];
        const std::string error = c["error"].get<std::string>();
        const std::string prefix = "TemplateError: ";
        if (error.rfind(prefix, 0) == 0) {  // raise_exception: the message must come through
          EXPECT_THAT(std::string(out.status().message()), HasSubstr(error.substr(prefix.size())));
        }
        ++rejected;
        continue;
      }
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(*out, c["expected"].get<std::string>());
      std::vector<ChatMessage> messages;
      if (c["extra"].empty() && AsChatMessages(c["messages"], &messages)) {
        absl::StatusOr<std::string> plain = chat->Apply(messages, generation);
        ASSERT_TRUE(plain.ok()) << plain.status();
        EXPECT_EQ(*plain, *out);
      }
      ++rendered;
    }
  }
  EXPECT_GT(rendered, 150);
  EXPECT_GT(rejected, 5);
}

TEST(ChatTemplateTest, SmolLM2TemplateFromTheGguf) {
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Create(
      ReadFile("templates/smollm2_instruct.jinja"), "<|im_start|>", "<|im_end|>");
  ASSERT_TRUE(chat.ok()) << chat.status();
  absl::StatusOr<std::string> out = chat->Apply({{"user", "Hi"}}, true);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, ExtraVariablesOverrideDefaults) {
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Create(
      "{{ bos_token }}{{ tools is none }}{{ flag }}{{ messages|length }}", "<s>", "</s>");
  ASSERT_TRUE(chat.ok());
  EXPECT_EQ(*chat->Apply({}, false), "<s>True0");
  EXPECT_EQ(*chat->Apply({{"user", "x"}}, false, json{{"flag", "!"}, {"bos_token", "B"}}),
            "BTrue!1");
  EXPECT_EQ(*chat->Apply({}, false, json{{"tools", json::array({1})}}), "<s>False0");
}

TEST(ChatTemplateTest, InvalidTemplatesAndInputsAreErrors) {
  absl::StatusOr<ChatTemplate> bad = ChatTemplate::Create("{% for m in messages %}", "", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::Create("{{ messages }}", "", "");
  ASSERT_TRUE(chat.ok());
  EXPECT_FALSE(chat->ApplyJson(json::object(), false, nullptr).ok());
  EXPECT_FALSE(chat->ApplyJson(json::array(), false, json::array()).ok());
}

}  // namespace
}  // namespace shardserve
