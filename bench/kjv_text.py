#!/usr/bin/env python3
"""Prints verses of ../shared/corpus/kjv.tsv, one verse a line: the texts that llama_perplexity
scores for quantization quality.  kjv_text.py BOOK [FIRST_CHAPTER [LAST_CHAPTER]] [--tsv PATH]
e.g. `kjv_text.py Ge 1 4` (Genesis 1-4), `kjv_text.py Rev` (Revelation, the held-out book)."""
import argparse
import os
import sys


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("book", help="book code as kjv.tsv spells it (Ge, Exo, ..., Rev)")
    p.add_argument("first", type=int, nargs="?", help="first chapter (default: the whole book)")
    p.add_argument("last", type=int, nargs="?", help="last chapter (default: first)")
    shared = os.environ.get("KUIPER_SHARED_DIR", os.path.join(os.path.dirname(__file__), "../../shared"))
    p.add_argument("--tsv", default=os.path.join(shared, "corpus/kjv.tsv"))
    a = p.parse_args()
    last = a.last if a.last is not None else a.first
    found = 0
    with open(a.tsv, encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            book, chapter, _, text = line.rstrip("\n").split("\t", 3)
            if book != a.book or (a.first is not None and not a.first <= int(chapter) <= last):
                continue
            print(text)
            found += 1
    if found == 0:
        print(f"kjv_text.py: no verses of book {a.book!r} chapters {a.first}-{last} in {a.tsv}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
