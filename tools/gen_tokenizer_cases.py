#!/usr/bin/env python3
"""Generates the tokenizer conformance cases in test/data/tokenizer/ (run once, commit the output).

The expected ids come from Hugging Face's `tokenizers` package reading the very tokenizer.json
files the C++ tokenizer reads (shared/models/qwen2-kjv/ and shared/models/llama3-kjv/), so the test
checks our byte-level BPE against the reference implementation, not against itself.

Each output file is JSON lines, one case a line:
  {"text": s, "ids": [...]}               encode(s, add_special_tokens=False)
  {"text": s, "ids": [...], "bos": true}   with add_special_tokens=True (Llama 3 prepends BOS; a text
                                           that already starts with BOS keeps a single one, which is
                                           kuiper's rule, where Hugging Face would double it)
  ... "decoded": d                         present when decode(ids) (special tokens skipped) != s,
                                           e.g. Qwen's NFC normalizer recomposed an accent
  {"hex": h, "fixed": f, "ids": [...]}     invalid UTF-8 bytes h: encoding them must fail;
                                           f = bytes.decode("utf-8", "replace") and ids = encode(f)

It also writes small tokenizers trained here on KJV verses (tiny_*.json, each with its
tiny_*_cases.jsonl), for features the two real files do not use: NFKC, ByteLevel with GPT-2's
regex and a prefix space, added tokens with lstrip / rstrip / single_word / normalized, merges
stored as pairs, TemplateProcessing, and Split with every delimiter behaviour and invert.

The strings are a seeded random mix (same output on every run): KJV verses and fragments, CJK,
emoji (ZWJ sequences, flags, skin tones, keycaps), accents precomposed and decomposed (NFD), other
scripts, digit runs, whitespace runs (tabs, CR/LF, exotic spaces), code, contractions in any case,
special tokens in the middle of text, random mixes of all of these, and edge cases.

Usage: pip install tokenizers
       python3 tools/gen_tokenizer_cases.py [--shared ../shared] [--out test/data/tokenizer]
"""
import argparse
import json
import pathlib
import random
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SEED = 20240611
CASES_PER_KIND = 2400  # valid-UTF-8 strings per tokenizer, plus the BOS and invalid cases

MODELS = {
    # name: (folder under shared/models, its special tokens, BOS or None)
    "qwen2": ("qwen2-kjv", ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>",
                            "<|vision_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
                            "<|file_sep|>", "<|repo_name|>"], None),
    "llama3": ("llama3-kjv", ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                              "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>",
                              "<|reserved_special_token_0|>", "<|reserved_special_token_247|>",
                              "<|finetune_right_pad_id|>"], "<|begin_of_text|>"),
}

CJK = ["中文测试，你好世界！", "我爱北京天安门。", "起初，神创造天地。", "日本語のテキストです。", "ひらがなとカタカナ",
       "東京都渋谷区", "한국어 문장입니다.", "안녕하세요, 세계!", "「引用」と『二重引用』", "（全角括弧）",
       "中華人民共和國", "漢字かな交じり文", "这是一个很长的句子没有任何标点符号用来测试连续的汉字序列"]
CJK_RANGES = [(0x4E00, 0x9FFF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3), (0x3000, 0x303F),
              (0xFF01, 0xFF5E), (0x20000, 0x2A6DF)]
EMOJI = ["😀", "🙂", "👍", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵", "🇬🇧🇫🇷", "1️⃣", "#️⃣", "❤️", "❤",
         "🧑🏿‍🚀", "🐈‍⬛", "✈️", "☺︎", "🤷‍♀️", "🫠", "🎉🎉🎉", "💯", "🔥", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]
ACCENTED = ["café", "naïve", "résumé", "Ångström", "señor", "façade", "Zürich", "Crème brûlée", "São Paulo",
            "Tiếng Việt có dấu", "Dvořák", "Łódź", "Øresund", "ǅemal", "ﬁnance", "Ǆ", "ẞ", "Straße",
            "Ελληνικά κείμενα", "Русский текст", "עברית", "العربية", "हिन्दी", "ภาษาไทย", "ქართული", "Հայերեն",
            "e\u0301\u0302\u0323", "a\u0308\u0304", "\u0301leading combining", "ḱṷṓn"]
CODE = ["def f(x):\n    return x**2  # square\n", "int main() {\n\treturn 0;\n}\n",
        "for (size_t i = 0; i < n; ++i) { a[i] += b[i]; }", "const x = {a: 1, 'b': [2, 3]};",
        "SELECT * FROM t WHERE id >= 42;", "<div class=\"x\">&nbsp;</div>", "if x != y and not z:\n\tpass",
        "$ ls -la | grep '.cpp' > out.txt 2>&1", "{\"key\": [1, 2.5e-3, null, true]}", "x <<= 2; y >>= 3; z ||= w;",
        "#include <vector>\nstd::vector<int> v{1,2,3};", "lambda s: s.strip().split(',')", "a->b::c<d<e>>()",
        "  // indented comment\r\n  return;\r\n", "print(f\"{value!r:>10}\")", "@decorator\nclass A(B, metaclass=M): ..."]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "’s", "'ſ", "'K", "'S'", "''"]
WORDS = ["I", "you", "he", "we", "they", "it", "don", "can", "won", "LORD", "God", "David", "shan"]
SPACES = [" ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\u00a0", "\u3000", "\u2000", "\u2009", "\u200b",
          "\u2028", "\u2029", "\u0085", "\u000b", "\u000c", "\u001c", "\u180e", "\ufeff", "\u202f", "\u205f",
          "\u1680", " \t \t"]
DIGITS = "0123456789"
OTHER_NUMBERS = ["٣٤٥", "३४५", "１２３", "²³", "½", "Ⅻ", "①②", "߀", "𝟘𝟙", "๑๒"]
PUNCT = [".", ",", "!", "?", ";", ":", "...", "—", "–", "-", "(", ")", "[", "]", "{", "}", "\"", "'", "«", "»",
         "“", "”", "‘", "’", "…", "¿", "¡", "@", "#", "$", "%", "^", "&", "*", "+", "=", "|", "\\", "/", "~",
         "`", "<", ">", "§", "¶", "©", "®", "™", "°", "±", "×", "÷", "€", "£", "¥", "∑", "∞", "≠", "√"]


def load_verses(shared):
    rows = (shared / "corpus" / "kjv.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [row.split("\t", 3)[3] for row in rows]


def assigned_char(rng):
    """A random assigned, non-surrogate code point of Unicode 14 (Python's tables)."""
    while True:
        cp = rng.choice([rng.randrange(0x20, 0x3000), rng.randrange(0x3000, 0x10000), rng.randrange(0x10000, 0x2FA20)])
        c = chr(cp)
        if unicodedata.category(c) not in ("Cn", "Cs"):
            return c


class Maker:
    def __init__(self, rng, verses, specials):
        self.rng, self.verses, self.specials = rng, verses, specials

    def verse(self):
        return self.rng.choice(self.verses)

    def fragment(self):
        v = self.verse()
        a = self.rng.randrange(len(v))
        return v[a:a + self.rng.randrange(1, 60)]

    def verses_joined(self):
        sep = self.rng.choice(["\n", " ", "\n\n", "\r\n", "\t"])
        return sep.join(self.verse() for _ in range(self.rng.randrange(2, 5)))

    def cjk(self):
        r = self.rng
        parts = []
        for _ in range(r.randrange(1, 4)):
            if r.random() < 0.5:
                parts.append(r.choice(CJK))
            else:
                lo, hi = r.choice(CJK_RANGES)
                parts.append("".join(chr(r.randrange(lo, hi + 1)) for _ in range(r.randrange(1, 12))))
            if r.random() < 0.3:
                parts.append(r.choice([" ", "abc", "123", " Hello ", "\n"]))
        return "".join(parts)

    def emoji(self):
        r = self.rng
        out = []
        for _ in range(r.randrange(1, 5)):
            out.append(r.choice(EMOJI))
            if r.random() < 0.4:
                out.append(r.choice([" ", "", "text", " and ", "!", "\n", "中"]))
        return "".join(out)

    def accents(self):
        r = self.rng
        s = " ".join(r.choice(ACCENTED) for _ in range(r.randrange(1, 4)))
        form = r.choice(["NFC", "NFD", "NFD", "NFKD", None])  # decomposed forms matter for Qwen's NFC
        return unicodedata.normalize(form, s) if form else s

    def digits(self):
        r = self.rng
        n = r.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 16, 20, 31, 40])
        run = "".join(r.choice(DIGITS) for _ in range(n))
        shape = r.randrange(6)
        if shape == 0:
            return run
        if shape == 1:
            return f"{r.choice(['abc', 'x', 'Year ', ' '])}{run}{r.choice(['', 'th', ' days', '%', '.'])}"
        if shape == 2:
            return f"{run}.{r.randrange(10 ** r.randrange(1, 6))}"
        if shape == 3:
            return f"{int(run or 0):,}"
        if shape == 4:
            return r.choice(OTHER_NUMBERS) + run[:3] + r.choice(OTHER_NUMBERS)
        return f"{r.randrange(1, 32)}:{r.randrange(1, 100)} {run} {run[::-1]}"

    def whitespace(self):
        r = self.rng
        parts = []
        for _ in range(r.randrange(1, 6)):
            parts.append(r.choice(SPACES) * r.randrange(1, 6))
            if r.random() < 0.6:
                parts.append(r.choice(["word", "x", "Hi", "1", ".", "中", "é", "!"]))
        return "".join(parts)

    def code(self):
        r = self.rng
        return "".join(r.choice(CODE) for _ in range(r.randrange(1, 3)))

    def contraction(self):
        r = self.rng
        parts = []
        for _ in range(r.randrange(1, 5)):
            w = r.choice(WORDS) + r.choice(CONTRACTIONS)
            parts.append(r.choice([w, w.upper(), w.lower(), w.title()]))
        return r.choice([" ", "", "\n"]).join(parts)

    def special_mid(self):
        r = self.rng
        pieces = []
        for _ in range(r.randrange(1, 5)):
            pieces.append(r.choice([self.fragment(), self.verse()[:40], "", " ", "\n", "user\n", "中文", "😀"]))
            tok = r.choice(self.specials)
            shape = r.randrange(6)
            if shape == 0:
                tok = tok[:-1]  # an incomplete special token is plain text
            elif shape == 1:
                tok = tok + tok
            elif shape == 2:
                tok = " " + tok + " "
            pieces.append(tok)
        return "".join(pieces)

    def random_mix(self):
        r = self.rng
        pools = [lambda: assigned_char(r), lambda: r.choice(PUNCT), lambda: r.choice(SPACES),
                 lambda: r.choice(DIGITS), lambda: chr(r.randrange(0x21, 0x7F)), lambda: r.choice(EMOJI),
                 lambda: r.choice("aeiouxyzAEZ"), lambda: r.choice(CONTRACTIONS)]
        return "".join(r.choice(pools)() for _ in range(r.randrange(1, 40)))

    def punctuation(self):
        r = self.rng
        return "".join(r.choice(PUNCT) * r.randrange(1, 4) + r.choice(["", " ", "a", "\n"])
                       for _ in range(r.randrange(1, 8)))

    def long_text(self):
        r = self.rng
        makers = [self.verses_joined, self.cjk, self.emoji, self.code, self.digits, self.whitespace,
                  self.special_mid, self.accents]
        return "".join(r.choice(makers)() for _ in range(r.randrange(20, 40)))

    def make(self, count):
        weights = [(self.verse, 12), (self.fragment, 8), (self.verses_joined, 4), (self.cjk, 8), (self.emoji, 8),
                   (self.accents, 8), (self.digits, 7), (self.whitespace, 8), (self.code, 6), (self.contraction, 6),
                   (self.special_mid, 8), (self.random_mix, 9), (self.punctuation, 4), (self.long_text, 0.5)]
        fns, w = zip(*weights)
        return [self.rng.choices(fns, w)[0]() for _ in range(count)]


def edge_cases(specials):
    cases = ["", " ", "  ", "\n", "\t", "\r\n", "a", "A", "'", "'s", "'S", "\u00e9", "e\u0301", "😀",
             "   leading", "trailing   ", " both ", "x" * 300, " " * 100, "\n" * 50, "9" * 100,
             "ab" * 100, "中" * 100, "😀" * 30, "\u0301" * 5, "hello\u0000world", "".join(specials),
             " ".join(specials), specials[0] + "x", "x" + specials[0], "<|", "|>", "<<|>>", "<|<|im_end|>|>"]
    cases += [chr(c) for c in range(0x00, 0x80)]  # every ASCII character alone
    cases += [chr(c) for c in range(0x80, 0x100, 3)]
    return cases


def invalid_cases(rng, verses):
    bad = [b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xed\xbf\xbf",
           b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\xfe", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98",
           b"\xf0\x9f", b"\xe2\x28\xa1", b"\xc3\x28", b"\xf8\x88\x80\x80\x80", b"\x80\x80\x80", b"\xc2\xc2\xa9"]
    cases = list(bad)
    while len(cases) < 100:
        text = rng.choice(verses)[: rng.randrange(5, 60)].encode() + "中😀é".encode()[: rng.randrange(0, 9)]
        pos = rng.randrange(len(text) + 1)
        case = text[:pos] + rng.choice(bad) + text[pos:]
        try:
            case.decode("utf-8")  # a cut character and the inserted bytes can happen to form a valid one
        except UnicodeDecodeError:
            cases.append(case)
    return cases


def text_case(tok, s, bos, bos_token):
    ids = tok.encode(s, add_special_tokens=bos).ids
    if bos and bos_token and s.startswith(bos_token):
        ids = tok.encode(s, add_special_tokens=False).ids  # kuiper never doubles the BOS
    case = {"text": s, "ids": ids}
    if bos:
        case["bos"] = True
    decoded = tok.decode(ids, skip_special_tokens=True)
    if decoded != s:
        case["decoded"] = decoded
    return case


def write_cases(path, tok, texts, bos_texts, invalid, bos_token):
    lines = [text_case(tok, s, False, bos_token) for s in texts]
    lines += [text_case(tok, s, True, bos_token) for s in bos_texts]
    for b in invalid:
        fixed = b.decode("utf-8", "replace")
        lines.append({"hex": b.hex(), "fixed": fixed, "ids": tok.encode(fixed, add_special_tokens=False).ids})
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for case in lines:
            f.write(json.dumps(case, ensure_ascii=False, separators=(",", ":")) + "\n")
    return len(lines)


TINY_SPLITS = {
    # variant: the Split step placed before a plain ByteLevel step
    "removed": pre_tokenizers.Split(Regex(r"[\s,.;:]+"), "removed"),
    "merged_previous": pre_tokenizers.Split(" ", "merged_with_previous"),
    "merged_next": pre_tokenizers.Split(Regex(r"\p{P}|\s"), "merged_with_next"),
    "contiguous": pre_tokenizers.Split(Regex(r"\d|\s"), "contiguous"),
    "inverted": pre_tokenizers.Split(Regex(r"\p{L}+"), "isolated", invert=True),
}
TINY_SPECIALS = ["<s>", "<mask>", "<sep>", "LORD", "\ufb01re", "fire", "[x]"]


def tiny_tokenizer(verses):
    """A GPT-2-style byte-level BPE with every added-token option, trained on the first verses."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=450, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(verses[:3000], trainer)
    tok.add_special_tokens([AddedToken("<s>", special=True, normalized=False),
                            AddedToken("<mask>", special=True, normalized=False, lstrip=True),
                            AddedToken("<sep>", special=True, normalized=False, rstrip=True)])
    tok.add_tokens([AddedToken("LORD", single_word=True),  # matched in the normalized text
                    AddedToken("\ufb01re", normalized=True),  # NFKC turns the pattern into "fire"
                    AddedToken("[x]", normalized=False, single_word=True, lstrip=True, rstrip=True)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return tok


def write_tiny(out, verses):
    base = tiny_tokenizer(verses)
    variants = {"bytelevel": base}
    for name, split in TINY_SPLITS.items():
        tok = Tokenizer.from_str(base.to_str())
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                                     use_regex=False)])
        variants[name] = tok
    for name, tok in variants.items():
        rng = random.Random(f"{SEED}-tiny-{name}")
        maker = Maker(rng, verses, TINY_SPECIALS)
        texts = ["", " ", "a", "  [x]  ", "a [x] b", "a[x]b", "x <mask> y", "a <sep>  b", "the LORD said",
                 "theLORD", "LORD's", "\ufb01re fire", "\uff21\uff22 \u2460 x\u00b2"]
        texts += [t[:120] for t in maker.make(250)]
        tok.save(str(out / f"tiny_{name}.json"))
        n = write_cases(out / f"tiny_{name}_cases.jsonl", tok, texts, [maker.verse()[:80] for _ in range(5)], [], None)
        print(f"tiny_{name}: {n} cases")


def main():
    here = pathlib.Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=pathlib.Path, default=here.parent / "shared")
    parser.add_argument("--out", type=pathlib.Path, default=here / "test" / "data" / "tokenizer")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    verses = load_verses(args.shared)
    for name, (folder, specials, bos) in MODELS.items():
        rng = random.Random(f"{SEED}-{name}")
        tok = Tokenizer.from_file(str(args.shared / "models" / folder / "tokenizer.json"))
        # The other model's special tokens are plain text here: they must be split like text.
        other = [t for n, (_, sp, _) in MODELS.items() if n != name for t in sp[:3]]
        maker = Maker(rng, verses, specials + other[:1])
        texts = edge_cases(specials) + maker.make(CASES_PER_KIND)
        bos_texts = [maker.verse() for _ in range(20)] + ["", " ", "Hi"] + [t + maker.fragment() for t in specials[:3]]
        invalid = invalid_cases(rng, verses)
        n = write_cases(args.out / f"{name}_cases.jsonl", tok, texts, bos_texts, invalid, bos)
        print(f"{name}: {n} cases -> {args.out / f'{name}_cases.jsonl'}")
    write_tiny(args.out, verses)


if __name__ == "__main__":
    main()
