"""The PyTorch Chatbot Tutorial's data pipeline, re-implemented in plain Python as the baseline of bench_data.py.

Faithful to the tutorial's computation, so that timings compare like with like:
- every line of movie_lines.txt becomes a dict of its five fields, held in a dict keyed by line ID;
- every conversation becomes a dict of its fields plus the list of its lines' dicts (IDs found with a regex);
- the pairs are written to a tab-separated file with the csv module, then read back whole and split;
- each text is normalized with `unicodedata` and three `re.sub` calls;
- the length filter, the word count (a `Voc`-like set of dicts), the trim and the pair filter are Python loops.

It is not part of the package: only bench/bench_data.py and the tests use it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import unicodedata
from pathlib import Path

SEPARATOR = " +++$+++ "
LINE_FIELDS = ["lineID", "characterID", "movieID", "character", "text"]
CONVERSATION_FIELDS = ["character1ID", "character2ID", "movieID", "utteranceIDs"]
LINE_ID_PATTERN = re.compile("L[0-9]+")


def load_lines(path: Path) -> dict[str, dict[str, str]]:
    lines = {}
    with open(path, encoding="iso-8859-1") as handle:
        for line in handle:
            values = line.split(SEPARATOR)
            record = {field: values[index] for index, field in enumerate(LINE_FIELDS)}
            lines[record["lineID"]] = record
    return lines


def load_conversations(path: Path, lines: dict[str, dict[str, str]]) -> list[dict]:
    conversations = []
    with open(path, encoding="iso-8859-1") as handle:
        for line in handle:
            values = line.split(SEPARATOR)
            record = {field: values[index] for index, field in enumerate(CONVERSATION_FIELDS)}
            record["lines"] = [lines[line_id] for line_id in LINE_ID_PATTERN.findall(record["utteranceIDs"])]
            conversations.append(record)
    return conversations


def extract_pairs(conversations: list[dict]) -> list[list[str]]:
    pairs = []
    for conversation in conversations:
        for index in range(len(conversation["lines"]) - 1):
            query = conversation["lines"][index]["text"].strip()
            response = conversation["lines"][index + 1]["text"].strip()
            if query and response:
                pairs.append([query, response])
    return pairs


def normalize(text: str) -> str:
    """The tutorial's normalization: lowercase, strip, drop Mn marks after NFD, isolate .!?, keep only letters."""
    text = "".join(c for c in unicodedata.normalize("NFD", text.lower().strip()) if unicodedata.category(c) != "Mn")
    text = re.sub(r"([.!?])", r" \1", text)
    text = re.sub(r"[^a-zA-Z.!?]+", r" ", text)
    return re.sub(r"\s+", r" ", text).strip()


def within_length(pair: list[str], max_length: int) -> bool:
    return len(pair[0].split(" ")) < max_length and len(pair[1].split(" ")) < max_length


def run(corpus_dir: str | os.PathLike, work_dir: str | os.PathLike, max_length: int = 10, min_count: int = 3) -> dict:
    """Runs the whole pipeline; returns the tutorial's printed counts and its vocabulary in index order."""
    corpus_dir, work_dir = Path(corpus_dir), Path(work_dir)
    lines = load_lines(corpus_dir / "movie_lines.txt")
    conversations = load_conversations(corpus_dir / "movie_conversations.txt", lines)
    formatted = work_dir / "formatted_movie_lines.txt"
    with open(formatted, "w", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        for pair in extract_pairs(conversations):
            writer.writerow(pair)
    with open(formatted, encoding="utf-8") as handle:
        raw_pairs = handle.read().strip().split("\n")
    pairs = [[normalize(text) for text in line.split("\t")] for line in raw_pairs]
    pairs_read = len(pairs)
    pairs = [pair for pair in pairs if within_length(pair, max_length)]
    word2count: dict[str, int] = {}
    for pair in pairs:
        for sentence in pair[:2]:
            for word in sentence.split(" "):
                word2count[word] = word2count.get(word, 0) + 1
    keep_words = [word for word, count in word2count.items() if count >= min_count]
    kept = set(keep_words)
    keep_pairs = [
        pair
        for pair in pairs
        if all(w in kept for w in pair[0].split(" ")) and all(w in kept for w in pair[1].split(" "))
    ]
    return {
        "pairs_read": pairs_read,
        "pairs_within_max_length": len(pairs),
        "words_counted": len(word2count),
        "words_kept": len(keep_words),
        "pairs_kept": len(keep_pairs),
        "vocabulary": keep_words,
    }


def main(argv: list[str] | None = None) -> int:
    """`python bench/tutorial_data_pipeline.py CORPUS_DIR WORK_DIR`: runs the pipeline, prints its counts as JSON."""
    corpus_dir, work_dir = sys.argv[1:] if argv is None else argv
    counts = run(corpus_dir, work_dir)
    counts.pop("vocabulary")
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
