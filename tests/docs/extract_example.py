#!/usr/bin/python3
"""Writes the first fenced code block of a language from a Markdown file.

Usage: extract_example.py README.md c OUT.c

The test suite compiles (C) or runs (Python) the README's examples exactly
as they stand there, so the README cannot drift from the code.
"""
import re
import sys


def extract(markdown: str, language: str) -> str:
    match = re.search(r"^```" + re.escape(language) + r"\n(.*?)^```", markdown, re.M | re.S)
    if match is None:
        raise SystemExit(f"no ```{language} block found")
    return match.group(1)


def main() -> int:
    path, language, out = sys.argv[1:4]
    with open(path, encoding="utf-8") as f:
        code = extract(f.read(), language)
    with open(out, "w", encoding="utf-8") as f:
        f.write(code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
