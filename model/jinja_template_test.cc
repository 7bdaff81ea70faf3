// The interpreter against Python's jinja2: every case in tests/chat_template/jinja_cases.json
// (made by make_fixtures.py) must render byte for byte as jinja2 rendered it, or fail where
// jinja2 failed. The remaining tests cover the limits that keep a render bounded.
#include "model/jinja_template.h"

#include <fstream>
#include <sstream>
#include <string>

#include "common/testing/test_env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace shardserve {
namespace jinja {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using json = nlohmann::ordered_json;

std::string FixturePath(const std::string& name) {
  return TestRunfile("tests/chat_template/" + name);
}

json ReadJson(const std::string& name) {
  std::ifstream in(FixturePath(name), std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << FixturePath(name);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return json::parse(buffer.str());
}

absl::StatusOr<std::string> Render(const std::string& source, const json& variables = nullptr,
                                   const RenderLimits& limits = RenderLimits()) {
  absl::StatusOr<JinjaTemplate> t = JinjaTemplate::Parse(source);
  if (!t.ok()) return t.status();
  return t->Render(variables, limits);
}

TEST(JinjaTemplateTest, MatchesJinja2OnEveryFixtureCase) {
  json fixture = ReadJson("jinja_cases.json");
  const json& variables = fixture["variables"];
  ASSERT_GT(fixture["cases"].size(), 150u);
  int checked = 0;
  for (const json& c : fixture["cases"]) {
    const std::string source = c["template"].get<std::string>();
    SCOPED_TRACE("template: " + source);
    absl::StatusOr<std::string> out = Render(source, variables);
    if (c.contains("expected")) {
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(*out, c["expected"].get<std::string>());
    } else {
      EXPECT_FALSE(out.ok()) << "jinja2 failed with " << c["error"] << " but we rendered: " << *out;
    }
    ++checked;
  }
  EXPECT_EQ(checked, static_cast<int>(fixture["cases"].size()));
}

TEST(JinjaTemplateTest, RaiseExceptionKeepsTheMessage) {
  absl::StatusOr<std::string> out = Render("a\n{{ raise_exception('Roles must alternate') }}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(), "line 2: Roles must alternate");
}

TEST(JinjaTemplateTest, SyntaxErrorsNameTheLine) {
  absl::StatusOr<std::string> out = Render("line1\nline2\n{{ 1 +* 2 }}");
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), StartsWith("line 3: "));
  out = Render("{% for x in xs %}\n\n{% endif %}");
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), StartsWith("line 3: "));
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("endif"));
}

TEST(JinjaTemplateTest, RuntimeErrorsNameTheLine) {
  absl::StatusOr<std::string> out = Render("{% if true %}\n  {{ 'a' + 1 }}\n{% endif %}");
  ASSERT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.status().message()), StartsWith("line 2: "));
}

TEST(JinjaTemplateTest, KeepsObjectKeyOrderOfOrderedJson) {
  json variables = json::parse(R"({"tool": {"name": "f", "description": "d", "args": {}}})");
  EXPECT_EQ(*Render("{{ tool | tojson }}", variables),
            R"({"name": "f", "description": "d", "args": {}})");
}

TEST(JinjaTemplateTest, LoopIterationsAreBounded) {
  RenderLimits limits;
  limits.max_loop_iterations = 1000;
  absl::StatusOr<std::string> out =
      Render("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}", nullptr,
             limits);
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Render("{{ range(1000000)|length }}").status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(JinjaTemplateTest, OutputIsBounded) {
  RenderLimits limits;
  limits.max_output_bytes = 100;
  EXPECT_EQ(Render("{{ 'x' * 1000 }}", nullptr, limits).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Render("{{ 'x' * 1000000000000 }}").status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(JinjaTemplateTest, RecursionIsBounded) {
  absl::StatusOr<std::string> out =
      Render("{% macro r(k) %}{{ r(k + 1) }}{% endmacro %}{{ r(0) }}");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  EXPECT_FALSE(Render(deep).ok());
  std::string nested;
  for (int i = 0; i < 1000; ++i) nested += "{% if true %}";
  EXPECT_FALSE(Render(nested).ok());
  EXPECT_FALSE(Render("{{ " + std::string(5000, '-') + "1 }}").ok());
  EXPECT_FALSE(Render("{{ " + std::string(5000, '[') + std::string(5000, ']') + " }}").ok());
}

TEST(JinjaTemplateTest, ValueNestingIsBounded) {
  absl::StatusOr<std::string> out = Render(
      "{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}"
      "{% endfor %}{{ ns.x|length }}");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  out = Render("{% set ns = namespace() %}{% set ns.me = [ns] %}{{ ns }}");
  EXPECT_FALSE(out.ok());
}

TEST(JinjaTemplateTest, VariablesShadowBuiltinsAndRejectNonObjects) {
  EXPECT_EQ(*Render("{{ range }}", json{{"range", 3}}), "3");
  absl::StatusOr<JinjaTemplate> t = JinjaTemplate::Parse("x");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->Render(json::array()).ok());
}

TEST(JinjaTemplateTest, InvalidUtf8PassesThroughUnchanged) {
  std::string bytes =
      "a\xff\xfe"
      "b";
  EXPECT_EQ(*Render("{{ s }}|{{ s|length }}|{{ s[::-1][::-1] }}", json{{"s", bytes}}),
            bytes + "|4|" + bytes);
  absl::StatusOr<std::string> out = Render(bytes + "{{ 1 }}");
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, bytes + "1");
}

TEST(JinjaTemplateTest, StrftimeNowUsesTheFormat) {
  absl::StatusOr<std::string> out = Render("{{ strftime_now('%Y-%m-%d') }}");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->size(), 10u);
  EXPECT_EQ((*out)[4], '-');
}

}  // namespace
}  // namespace jinja
}  // namespace shardserve
