"""Writes a synthetic Cornell corpus of any size from a real one (the sample), in the corpus's exact format.

Each copy of the source renumbers every line, character, movie and conversation with fresh IDs, so the result has
the structure of a bigger corpus (no ID repeats, conversations still point at their own lines) while its texts
keep the real distribution. `--scale 10` gives ten times the full corpus's 304,713 lines.

    python bench/make_synthetic_corpus.py --source ../shared/data/cornell-sample --output /tmp/cornell-10x --scale 10
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

SEPARATOR = " +++$+++ "
ENCODING = "iso-8859-1"
FULL_CORPUS_LINES = 304_713
ID_PATTERN = re.compile(r"([a-zA-Z]+)(\d{1,6})")  # the corpus's IDs (L666618, u9034, m616) stay below STRIDE
STRIDE = 1_000_000


def _fresh(identifier: str, copy: int) -> str:
    """`L194` in copy 3 -> `L3000194`: unique across copies."""
    prefix, number = ID_PATTERN.fullmatch(identifier).groups()
    return f"{prefix}{copy * STRIDE + int(number)}"


def make_corpus(source: Path, output: Path, copies: int, max_conversations: int | None = None) -> dict[str, int]:
    """Writes `copies` renumbered copies of `source`'s two dialogue files into `output`; returns the line counts.

    With `max_conversations`, each copy holds only the source's first conversations and the lines they use.
    """
    lines = (source / "movie_lines.txt").read_bytes().decode(ENCODING).split("\n")[:-1]
    conversations = (source / "movie_conversations.txt").read_bytes().decode(ENCODING).split("\n")[:-1]
    if max_conversations is not None:
        conversations = conversations[:max_conversations]
        used = set(re.findall(r"'([^']+)'", "\n".join(conversations)))
        lines = [line for line in lines if line.split(SEPARATOR, 1)[0] in used]
    output.mkdir(parents=True, exist_ok=True)
    with open(output / "movie_lines.txt", "w", encoding=ENCODING, newline="\n") as out:
        for copy in range(copies):
            for line in lines:
                line_id, character, movie, name, text = line.split(SEPARATOR)
                fields = [_fresh(line_id, copy), _fresh(character, copy), _fresh(movie, copy)]
                out.write(SEPARATOR.join([*fields, name, text]) + "\n")
    with open(output / "movie_conversations.txt", "w", encoding=ENCODING, newline="\n") as out:
        for copy in range(copies):
            for line in conversations:
                first, second, movie, ids = line.split(SEPARATOR)
                fresh_ids = [_fresh(i, copy) for i in re.findall(r"'([^']+)'", ids)]
                fields = [_fresh(first, copy), _fresh(second, copy), _fresh(movie, copy)]
                out.write(SEPARATOR.join([*fields, str(fresh_ids)]) + "\n")
    return {"copies": copies, "lines": copies * len(lines), "conversations": copies * len(conversations)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="A corpus folder (the sample).")
    parser.add_argument("--output", type=Path, required=True, help="The folder to write.")
    parser.add_argument(
        "--scale", type=float, default=10.0, help="Size in full corpora (304,713 lines each); default 10."
    )
    args = parser.parse_args(argv)
    source_lines = (args.source / "movie_lines.txt").read_bytes().count(b"\n")
    copies = max(1, math.ceil(args.scale * FULL_CORPUS_LINES / source_lines))
    print(json.dumps(make_corpus(args.source, args.output, copies)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
