"""Cornell Movie-Dialogs Corpus -> the tutorial's filtered (query, response) pairs as a `datasets.DatasetDict`.

    python -m data_scripts.build_dataset --corpus-dir DIR|ZIP --output-dir OUT [--max-length 10] [--min-count 3]
        [--validation-size 0.05] [--test-size 0.05] [--seed 0] [--num-proc N] [--push-to-hub REPO_ID]

The steps and their counts are the tutorial's (its printed figures come out of `OUT/stats.json`):

1. `pairs_read`: consecutive utterances of each conversation, both non-blank (`cornell.iter_pairs`);
2. normalization of every utterance, as the tokenizer's normalizer does it (the tutorial's `normalizeString`);
3. `pairs_within_max_length`: both sides have fewer than `max_length` words, split on single spaces;
4. `words_counted`: distinct words over both sides of those pairs; `words_kept`: those seen `min_count` times or more;
5. `pairs_kept`: the pairs whose words were all kept.

Optionally (`--train-max-length`, `--train-max-unknown`: the package's default recipe uses them), the train split
also gets the pairs that the tutorial's filter drops but that are within a looser one: sides of fewer than
`train_max_length` words, at most `train_max_unknown` words outside the vocabulary (read as `<unk>`). The vocabulary,
the validation and the test splits stay exactly the tutorial's, so models trained either way are compared on the same
held-out pairs with the same tokenizer. Those extra pairs come from every conversation outside validation and test.

A side that normalizes to the empty string counts, as in the tutorial, as one empty word: such pairs pass the length
filter and the empty word is counted (and kept if frequent). They are then dropped (`pairs_empty_dropped`), so the
dataset holds `pairs_kept - pairs_empty_dropped` pairs, split by conversation into train, validation and test.

The work runs on Arrow data through `datasets`: `from_generator` over the parsed conversations, then batched `map`s
vectorized with pyarrow, the filtering ones returning fewer rows. Everything is written under a temporary folder
inside `OUT` and moved into place only once complete.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_scripts.cornell import (
    CONVERSATIONS_FILE,
    CORPUS_FOLDER,
    CORPUS_URL,
    LINES_FILE,
    CorpusFormatError,
    download_corpus,
    iter_conversations,
)
from data_scripts.output_dir import claim_output_dir, output_dir_lock, remove_created_folders
from modeling_seq2seq.tokenization_luong_gru import EOS_TOKEN, SPECIAL_TOKENS, LuongGruTokenizer, build_normalizer

CONVERSATIONS_PER_CHUNK = 5_000  # about 13,000 pairs
ARROW_BATCH_SIZE = 100_000  # rows per batch of the vectorized (pyarrow) steps
CONVERSATION_COLUMNS = ("conversation_id", "movie_id", "line_ids", "texts")
EOS_ID = SPECIAL_TOKENS.index(EOS_TOKEN)
SPLITS = ("train", "validation", "test")
BUILD_FOLDERS = ("dataset", "tokenizer")
BUILD_ID_FILE = ".build-id"  # in each of BUILD_FOLDERS: the `build_id` of the stats.json they were built with
COLUMNS = [
    "query",
    "response",
    "input_ids",
    "labels",
    "movie_id",
    "conversation_id",
    "query_line_id",
    "response_line_id",
]


def default_corpus_cache() -> Path:
    """Where the official corpus is downloaded when no corpus is given: `$XDG_CACHE_HOME/luong-chatbot`."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "luong-chatbot")


def _conversation_chunks(corpus: str, chunk_size: int) -> Iterator[dict[str, list]]:
    """`cornell.iter_conversations` in chunks of `chunk_size` conversations, one record of columns per chunk."""
    conversations = iter_conversations(corpus)
    # The records hold no reference cycles, yet keeping thousands alive makes the cyclic collector sweep the whole
    # heap again and again: that tripled the parse time on a 3M-line corpus.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while chunk := list(itertools.islice(conversations, chunk_size)):
            yield {column: [conversation[column] for conversation in chunk] for column in CONVERSATION_COLUMNS}
    finally:
        if gc_was_enabled:
            gc.enable()


def _read_conversations(corpus: str, cache_dir: str):
    """The corpus's conversations as a `Dataset` of chunks, re-raising corpus errors as they are.

    One row per chunk of conversations rather than per conversation: `from_generator` costs some microseconds of
    Python per row, which a row per pair would spend millions of times on a big corpus.
    """
    from datasets import Dataset, Features, List, Value
    from datasets.exceptions import DatasetGenerationError

    string_lists = List(List(Value("string")))
    features = Features(
        {"conversation_id": List(Value("int64")), "movie_id": List(Value("string")), "line_ids": string_lists}
    )
    features["texts"] = string_lists
    try:
        return Dataset.from_generator(
            _conversation_chunks,
            gen_kwargs={"corpus": corpus, "chunk_size": CONVERSATIONS_PER_CHUNK},
            features=features,
            cache_dir=cache_dir,
            writer_batch_size=1,  # a row is already a chunk of thousands of conversations
        )
    except DatasetGenerationError as error:
        if isinstance(error.__cause__, CorpusFormatError):
            raise error.__cause__ from None
        raise


def _normalize_ascii(texts: pa.Array) -> pa.Array:
    """The tutorial's normalization for ASCII texts, vectorized: there NFD and the Mn marks change nothing."""
    texts = pc.ascii_lower(texts)
    texts = pc.replace_substring_regex(texts, r"([.!?])", r" \1")
    texts = pc.replace_substring_regex(texts, r"[^a-zA-Z.!?]+", " ")
    return pc.utf8_trim(texts, " ")  # only single spaces are left: the final collapse has nothing to do


def normalize_texts(texts: pa.Array | pa.ChunkedArray, normalizer) -> pa.Array:
    """Normalizes an Arrow array of texts exactly as `normalizer` (the tokenizer's) does, text by text.

    ASCII texts (all but about 0.2% of the corpus) take a vectorized pyarrow path, about four times faster than a
    call per text; the others go through `normalizer.normalize_str`. The tests check both against the tutorial's
    function.
    """
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    normalized = _normalize_ascii(texts)
    non_ascii = pc.invert(pc.string_is_ascii(texts))
    others = texts.filter(non_ascii).to_pylist()
    if not others:
        return normalized
    return pc.replace_with_mask(normalized, non_ascii, pa.array([normalizer.normalize_str(t) for t in others]))


def _pairs(chunks: pa.Table, normalizer) -> pa.Table:
    """Batched map: chunks of conversations -> one row per pair, each utterance normalized once.

    The pairs are each utterance and the next one in its conversation, both non-blank: `cornell.iter_pairs`'s pairs.
    """
    conversations = pc.list_flatten(chunks["texts"])  # a batch holds chunks (rows) of conversations (lists)
    texts = pc.list_flatten(conversations)  # every utterance, conversation after conversation
    lengths = pc.list_value_length(conversations).to_numpy(zero_copy_only=False)
    has_next = np.ones(len(texts), dtype=bool)
    has_next[np.cumsum(lengths)[lengths > 0] - 1] = False  # the last utterance of a conversation gets no reply
    blank = pc.equal(texts, "").to_numpy(zero_copy_only=False)
    first = np.flatnonzero(has_next & ~blank & ~np.append(blank[1:], True))  # the query's position; reply at +1
    normalized = normalize_texts(texts, normalizer)
    line_ids = pc.list_flatten(pc.list_flatten(chunks["line_ids"]))
    conversation = np.repeat(np.arange(len(conversations)), lengths)[first]
    return pa.table(
        {
            "query": normalized.take(first),
            "response": normalized.take(first + 1),
            "movie_id": pc.list_flatten(chunks["movie_id"]).take(conversation),
            "conversation_id": pc.list_flatten(chunks["conversation_id"]).take(conversation),
            "query_line_id": line_ids.take(first),
            "response_line_id": line_ids.take(first + 1),
        }
    )


def _words(texts: pa.Array | pa.ChunkedArray) -> pa.ListArray:
    """Each text's words, split on single spaces as the tutorial does: "" gives one empty word."""
    return pc.split_pattern(texts, " ")


def _within_length(table: pa.Table, max_length: int) -> pa.Array:
    # A text has one word more than it has spaces (split on " ", "" is one empty word).
    short = [pc.less(pc.count_substring(table[side], " "), max_length - 1) for side in ("query", "response")]
    return pc.and_(*short)


def _both_non_empty(table: pa.Table) -> pa.Array:
    return pc.and_(pc.not_equal(table["query"], ""), pc.not_equal(table["response"], ""))


def _words_in_order(table: pa.Table) -> pa.Array:
    """All words of the pairs, in the tutorial's counting order: the query's then the response's, pair by pair."""
    return pc.list_flatten(_words(pc.binary_join_element_wise(table["query"], table["response"], " ")))


def _word_ids(texts: pa.Array | pa.ChunkedArray, vocabulary: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Per text, the words' positions in `vocabulary` (-1 where absent), flat, with the (N + 1,) list offsets."""
    words = _words(texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts)
    positions = pc.fill_null(pc.index_in(words.flatten(), value_set=vocabulary), -1)
    return positions.to_numpy(zero_copy_only=False), words.offsets.to_numpy()


def _unknown_counts(table: pa.Table, vocabulary: pa.Array) -> np.ndarray:
    """Per pair, how many words of both sides are not in `vocabulary` (every text has at least one word)."""
    counts = np.zeros(table.num_rows, dtype=np.int64)
    for side in ("query", "response"):
        positions, offsets = _word_ids(table[side], vocabulary)
        counts += np.add.reduceat(positions < 0, offsets[:-1])
    return counts


def _all_known(table: pa.Table, vocabulary: pa.Array) -> np.ndarray:
    """Whether every word of both sides is in `vocabulary`."""
    return _unknown_counts(table, vocabulary) == 0


def _extra_for_training(table: pa.Table, vocabulary: pa.Array, filters: PairFilters) -> np.ndarray:
    """Whether a pair passes the looser training filter but not the tutorial's (so it is not kept already)."""
    unknown = _unknown_counts(table, vocabulary)
    tutorial = np.asarray(_within_length(table, filters.max_length)) & (unknown == 0)
    looser = np.asarray(_within_length(table, filters.train_max_length)) & (unknown <= filters.train_max_unknown)
    return looser & ~tutorial & np.asarray(_both_non_empty(table))


def _token_ids(table: pa.Table, vocabulary: pa.Array) -> pa.Table:
    """Adds `input_ids` and `labels`: each side's word ids (vocabulary position + 4) followed by EOS, unpadded."""
    for side, column in (("query", "input_ids"), ("response", "labels")):
        positions, offsets = _word_ids(table[side], vocabulary)
        # Row r's words shift right by r to make room for the EOS closing each earlier row.
        new_offsets = offsets + np.arange(len(offsets))
        ids = np.full(len(positions) + table.num_rows, EOS_ID, dtype=np.int32)
        ids[np.arange(len(positions)) + np.repeat(np.arange(table.num_rows), np.diff(offsets))] = positions + 4
        table = table.append_column(column, pa.ListArray.from_arrays(pa.array(new_offsets, pa.int32()), pa.array(ids)))
    return table


def _split_by_conversation(
    conversation_ids: np.ndarray, validation_size: float, test_size: float, seed: int
) -> dict[str, np.ndarray]:
    """The conversations of each split: all of them shuffled with `seed`, then cut by share of conversations."""
    conversations = np.random.default_rng(seed).permutation(np.unique(conversation_ids))
    sizes = [max(1, round(share * len(conversations))) if share > 0 else 0 for share in (validation_size, test_size)]
    if sum(sizes) >= len(conversations):
        raise ValueError(
            f"{len(conversations)} conversations left after filtering: too few for a train split "
            f"beside validation ({sizes[0]}) and test ({sizes[1]})"
        )
    return {
        "validation": conversations[: sizes[0]],
        "test": conversations[sizes[0] : sum(sizes)],
        "train": conversations[sum(sizes) :],
    }


def _in_conversations(table: pa.Table, conversations: pa.Array, inside: bool = True) -> pa.Array:
    found = pc.is_in(table["conversation_id"], value_set=conversations)
    return found if inside else pc.invert(found)


@dataclass(frozen=True)
class PairFilters:
    """Which pairs a build keeps: the tutorial's filter, and the looser one that may add training pairs."""

    max_length: int
    min_count: int
    train_max_length: int
    train_max_unknown: int

    @property
    def adds_training_pairs(self) -> bool:
        return self.train_max_length > self.max_length or self.train_max_unknown > 0


def _check_arguments(filters: PairFilters, validation_size: float, test_size: float, num_proc) -> None:
    if filters.max_length < 2:
        raise ValueError(f"--max-length: expected an integer >= 2 (room for a word and EOS), got {filters.max_length}")
    if filters.min_count < 1:
        raise ValueError(f"--min-count: expected an integer >= 1, got {filters.min_count}")
    if filters.train_max_length < filters.max_length:
        raise ValueError(
            f"--train-max-length: expected an integer >= --max-length ({filters.max_length}), "
            f"got {filters.train_max_length}"
        )
    if filters.train_max_unknown < 0:
        raise ValueError(f"--train-max-unknown: expected an integer >= 0, got {filters.train_max_unknown}")
    if not 0 < validation_size < 1:  # train.py evaluates on it at every checkpoint and picks the best model by it
        raise ValueError(f"--validation-size: expected a fraction in (0, 1), got {validation_size}")
    if not 0 <= test_size < 1:
        raise ValueError(f"--test-size: expected a fraction in [0, 1), got {test_size}")
    if validation_size + test_size >= 1:
        raise ValueError(f"--validation-size + --test-size: expected a sum below 1, got {validation_size + test_size}")
    if num_proc is not None and num_proc < 1:
        raise ValueError(f"--num-proc: expected an integer >= 1, got {num_proc}")


def _apply_predicate(table: pa.Table, predicate, **kwargs) -> pa.Table:
    return table.filter(pa.array(predicate(table, **kwargs), pa.bool_()))


def _filter_rows(dataset, predicate, **kwargs):
    """Like a batched `dataset.filter(predicate)`, but writes the kept rows out instead of an indices mapping.

    Each later step would read a filtered dataset's rows through its indices mapping one 1-row slice at a time:
    that took most of the build's time on a 3M-line corpus. A batched map returning fewer rows keeps them contiguous.
    """
    fn_kwargs = {"predicate": predicate, **kwargs}
    return dataset.map(_apply_predicate, batched=True, batch_size=ARROW_BATCH_SIZE, fn_kwargs=fn_kwargs)


def _normalized_pairs(corpus: str, work: Path, num_proc: int | None):
    """Every pair of the corpus, normalized (`pairs_read`)."""
    chunks = _read_conversations(corpus, str(work / "cache")).with_format("arrow")
    if num_proc is None:
        # A worker costs about a second to start: worth it from 4 chunks (20,000 conversations) on.
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        num_proc = min(cpus, len(chunks) // 4)
    return chunks.map(
        _pairs,
        batched=True,
        batch_size=1,
        fn_kwargs={"normalizer": build_normalizer()},
        remove_columns=chunks.column_names,
        num_proc=num_proc if num_proc > 1 else None,
    )


def _build(corpus: str, work: Path, filters: PairFilters, num_proc: int | None) -> tuple[Any, Any, dict, list]:
    """Reads, normalizes, filters and trims.

    Returns the kept pairs with token ids, the extra training candidates (`None` without a looser filter), the counts
    and the vocabulary.
    """
    all_pairs = _normalized_pairs(corpus, work, num_proc)
    stats = {"pairs_read": len(all_pairs)}
    pairs = _filter_rows(all_pairs, _within_length, max_length=filters.max_length)
    stats["pairs_within_max_length"] = len(pairs)
    if not len(pairs):
        raise ValueError(f"{corpus}: no pair has both sides shorter than --max-length {filters.max_length} words")
    counts = pc.value_counts(_words_in_order(pairs.with_format("arrow")[:]))
    kept = counts.filter(pc.greater_equal(counts.field("counts"), filters.min_count)).field("values")
    stats["words_counted"], stats["words_kept"] = len(counts), len(kept)
    pairs = _filter_rows(pairs, _all_known, vocabulary=kept)
    stats["pairs_kept"] = len(pairs)
    non_empty = _filter_rows(pairs, _both_non_empty)
    stats["pairs_empty_dropped"] = len(pairs) - len(non_empty)
    vocabulary = [word for word in kept.to_pylist() if word]  # the tutorial's empty "word" is no token
    fn_kwargs = {"vocabulary": pa.array(vocabulary, pa.string())}
    extra = None
    if filters.adds_training_pairs:
        extra = _filter_rows(all_pairs, _extra_for_training, vocabulary=kept, filters=filters)
        # An unknown word gets position -1 in `_token_ids`, so id 3: `<unk>`.
        if len(extra):  # (a map over no rows adds no columns)
            extra = extra.map(_token_ids, batched=True, batch_size=ARROW_BATCH_SIZE, fn_kwargs=fn_kwargs)
    kept_pairs = non_empty.map(_token_ids, batched=True, batch_size=ARROW_BATCH_SIZE, fn_kwargs=fn_kwargs)
    return kept_pairs, extra, stats, vocabulary


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hides `datasets`' progress bars: a dozen quick internal steps would each draw one."""
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def _write_outputs(
    pairs, extra, vocabulary: list[str], work: Path, filters: PairFilters, split_args: dict[str, Any]
) -> dict[str, int]:
    """Writes `work/dataset` (split by conversation) and `work/tokenizer`; returns the split and vocabulary sizes.

    The kept pairs' conversations decide the splits (so they are the tutorial's); the `extra` training pairs are
    those of every other conversation.
    """
    from datasets import DatasetDict, concatenate_datasets

    splits = _split_by_conversation(pairs["conversation_id"].to_numpy(), **split_args)
    dataset = DatasetDict(
        {
            name: _filter_rows(pairs, _in_conversations, conversations=pa.array(splits[name]))
            .with_format(None)
            .select_columns(COLUMNS)
            for name in SPLITS
        }
    )
    sizes = {f"{name}_pairs": len(dataset[name]) for name in SPLITS}
    if extra is not None and not len(extra):
        sizes["train_extra_pairs"] = 0
    elif extra is not None:
        held_out = pa.array(np.concatenate([splits["validation"], splits["test"]]))
        extra = _filter_rows(extra, _in_conversations, conversations=held_out, inside=False)
        dataset["train"] = concatenate_datasets([dataset["train"], extra.with_format(None).select_columns(COLUMNS)])
        sizes.update(train_pairs=len(dataset["train"]), train_extra_pairs=len(extra))
    # datasets saves an empty split with no Arrow file, then cannot load the DatasetDict: leave it out (test 0).
    DatasetDict({name: split for name, split in dataset.items() if len(split)}).save_to_disk(str(work / "dataset"))
    # The longest input the model was trained on: chat.py says when it cuts a longer one.
    tokenizer = LuongGruTokenizer.from_words(vocabulary, model_max_length=filters.train_max_length)
    tokenizer.save_pretrained(str(work / "tokenizer"))
    return {**sizes, "vocab_size": len(tokenizer)}


def _move_into(work: Path, output_dir: Path, build_id: str) -> None:
    """Commits `work`'s dataset/, tokenizer/ and stats.json into `output_dir` as one build.

    The old stats.json goes first and the new one comes last: in between, the folder holds no stats.json and
    [`check_build`] refuses it (train.py rebuilds it), so an interrupted commit never passes for a build. Each folder
    carries the build's id, which stats.json repeats.
    """
    for name in BUILD_FOLDERS:
        Path(work, name, BUILD_ID_FILE).write_text(build_id + "\n", encoding="utf-8")
    Path(output_dir, "stats.json").unlink(missing_ok=True)
    for name in (*BUILD_FOLDERS, "stats.json"):
        target = output_dir / name
        if target.is_dir() and not target.is_symlink():
            old = work / f"old-{name}"
            os.replace(target, old)
            os.replace(work / name, target)
            shutil.rmtree(old)
        else:
            os.replace(work / name, target)


def corpus_identity(corpus: str | os.PathLike) -> dict[str, Any]:
    """What identifies a corpus for reusing a build of it: its path, and the size and mtime of its files.

    For a folder, its two dialogue files (where `cornell.open_corpus_file` finds them); for a zip, the zip itself.
    """
    path = Path(corpus).resolve()
    files = [path]
    if path.is_dir():
        files = [
            next((p for p in (path / name, path / CORPUS_FOLDER / name) if p.exists()), path / name)
            for name in (LINES_FILE, CONVERSATIONS_FILE)
        ]
    identity: dict[str, Any] = {"path": str(path)}
    for file in files:
        info = file.stat()
        identity[str(file.relative_to(path)) if file != path else path.name] = [info.st_size, info.st_mtime_ns]
    return identity


def check_build(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    """Checks that `dataset_dir` holds one complete build (dataset/, tokenizer/, stats.json of the same build).

    Returns:
        `dict`: its stats.json.

    Raises:
        `ValueError`: with a one-line message saying what is missing or mixed.
    """
    dataset_dir = Path(dataset_dir)
    try:
        stats = json.loads(Path(dataset_dir, "stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stats = None
    if not isinstance(stats, dict):
        raise ValueError(
            f"{dataset_dir}: no readable stats.json: not a complete build of data_scripts.build_dataset "
            "(an interrupted build?); build it again"
        )
    for name in BUILD_FOLDERS:
        try:
            build_id = Path(dataset_dir, name, BUILD_ID_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            build_id = None
        if build_id != stats.get("build_id"):
            raise ValueError(
                f"{dataset_dir}/{name}: not from the same build as stats.json (an interrupted build?); build it again"
            )
    return stats


def build_dataset(
    corpus: str | os.PathLike | None,
    output_dir: str | os.PathLike,
    max_length: int = 10,
    min_count: int = 3,
    train_max_length: int | None = None,
    train_max_unknown: int = 0,
    validation_size: float = 0.05,
    test_size: float = 0.05,
    seed: int = 0,
    num_proc: int | None = None,
    push_to_hub: str | None = None,
    overwrite_output_dir: bool = False,
) -> dict[str, Any]:
    """Builds `OUT/dataset` (a `DatasetDict`), `OUT/tokenizer` and `OUT/stats.json` from the Cornell corpus.

    Args:
        corpus (`str` or `os.PathLike`, *optional*):
            The corpus folder or the official zip; `None` downloads the official corpus into
            [`default_corpus_cache`] (once).
        output_dir (`str` or `os.PathLike`):
            Where to write: a new or empty folder, or one the package wrote (it holds a `.luong-chatbot` marker).
            Other files there are left alone, and the three outputs are replaced only on success, as one unit.
        max_length (`int`, *optional*, defaults to 10):
            Pairs are kept when both sides have fewer words than this (the tutorial's `MAX_LENGTH`).
        min_count (`int`, *optional*, defaults to 3):
            Words seen fewer times are trimmed, with every pair using them (the tutorial's `MIN_COUNT`).
        train_max_length (`int`, *optional*):
            The train split also gets the pairs whose sides have fewer words than this (defaults to `max_length`:
            the tutorial's pairs only). The vocabulary, validation and test splits are the same either way.
        train_max_unknown (`int`, *optional*, defaults to 0):
            The train split also gets the pairs (within `train_max_length`) with up to this many words outside the
            vocabulary, as `<unk>`.
        validation_size (`float`, *optional*, defaults to 0.05):
            The share of conversations in the validation split.
        test_size (`float`, *optional*, defaults to 0.05):
            The share of conversations in the test split.
        seed (`int`, *optional*, defaults to 0):
            Seeds the conversation shuffle: the same seed gives the same splits.
        num_proc (`int`, *optional*):
            Processes that turn conversations into normalized pairs; by default one per available CPU, at most one
            per 20,000 conversations (a worker costs about a second to start).
        push_to_hub (`str`, *optional*):
            A dataset repository ID to push the `DatasetDict` and its dataset card to.
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Write into a non-empty `output_dir` that the package did not create (`--overwrite-output-dir`).

    Returns:
        `dict`: the contents of `stats.json`.

    Raises:
        [`~data_scripts.cornell.CorpusFormatError`]: the corpus is missing or malformed.
        `ValueError`: an argument is out of range, too few pairs are left to split, or `output_dir` is refused
            ([`~data_scripts.output_dir.OutputDirError`]).
    """
    train_max_length = max_length if train_max_length is None else train_max_length
    filters = PairFilters(max_length, min_count, train_max_length, train_max_unknown)
    _check_arguments(filters, validation_size, test_size, num_proc)
    corpus = str(corpus) if corpus is not None else str(download_corpus(default_corpus_cache()))
    output_dir = Path(output_dir)
    created = claim_output_dir(output_dir, overwrite=overwrite_output_dir, tool="build_dataset")
    try:
        with output_dir_lock(output_dir, "build_dataset"):
            for stale in output_dir.glob(".build-*"):  # left by a killed build: no other build runs here now
                shutil.rmtree(stale, ignore_errors=True)
            split_args = {"validation_size": validation_size, "test_size": test_size, "seed": seed}
            stats = _build_into(corpus, output_dir, filters, split_args, num_proc)
    except BaseException:
        remove_created_folders(created)
        raise
    if push_to_hub:
        push_dataset(output_dir, push_to_hub, stats)
    return stats


def _build_into(
    corpus: str, output_dir: Path, filters: PairFilters, split_args: dict[str, Any], num_proc: int | None
) -> dict[str, Any]:
    """Builds in a temporary folder inside `output_dir`, then commits the three outputs (see `_move_into`)."""
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=output_dir))
    try:
        with _quiet_datasets():
            pairs, extra, stats, vocabulary = _build(corpus, work, filters, num_proc)
            stats.update(_write_outputs(pairs, extra, vocabulary, work, filters, split_args))
        stats.update(asdict(filters), **split_args, corpus=corpus_identity(corpus))
        stats["build_id"] = uuid.uuid4().hex
        (work / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        shutil.rmtree(work / "cache")
        _move_into(work, output_dir, stats["build_id"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return stats


CARD_TEXT = """# Cornell Movie-Dialogs pairs, filtered as in the PyTorch Chatbot Tutorial

(query, response) pairs from the [Cornell Movie-Dialogs Corpus]({url}): each utterance and the next one in a
conversation, normalized (lowercase, accents stripped, a space before `.`, `!` and `?`, everything but ASCII letters
and `.!?` made a space), kept when both sides have fewer than {max_length} words, then trimmed of every pair that
uses a word seen fewer than {min_count} times, as the tutorial does. Built by `data_scripts.build_dataset`.

| step | pairs or words |
|---|---|
| pairs read | {pairs_read:,} |
| pairs with both sides under {max_length} words | {pairs_within_max_length:,} |
| distinct words in those | {words_counted:,} |
| words kept (seen {min_count}+ times) | {words_kept:,} |
| pairs kept | {pairs_kept:,} |
| of which dropped for a side that normalizes to nothing | {pairs_empty_dropped:,} |

The splits hold whole conversations (none is in two splits), shuffled with seed {seed}: train {train_pairs:,},
validation {validation_pairs:,}, test {test_pairs:,} pairs.{extension}

## Columns

- `query`, `response`: the normalized texts;
- `input_ids`, `labels`: their word ids followed by EOS (`</s>` = 2), unpadded, for the word-level tokenizer built
  with them ({vocab_size:,} tokens: `<pad>` 0, `<s>` 1, `</s>` 2, `<unk>` 3, then the kept words);
- `movie_id`, `conversation_id` (the conversation's position in `movie_conversations.txt`), `query_line_id` and
  `response_line_id`: where each pair comes from.

## Source

Cristian Danescu-Niculescu-Mizil and Lillian Lee, *Chameleons in imagined conversations: A new approach to
understanding coordination of linguistic style in dialogs*, Workshop on Cognitive Modeling and Computational
Linguistics, ACL 2011. See the corpus's README for its terms of use.
"""


def _extension_text(stats: dict[str, Any]) -> str:
    """The card's sentence on the extra training pairs, if the build has them."""
    if not stats.get("train_extra_pairs"):
        return ""
    return (
        f" Of the train pairs, {stats['train_extra_pairs']:,} pass only a looser filter (sides under "
        f"{stats['train_max_length']} words, up to {stats['train_max_unknown']} words outside the vocabulary, as "
        "`<unk>`); validation and test hold only the tutorial's pairs."
    )


def push_dataset(output_dir: str | os.PathLike, repo_id: str, stats: dict[str, Any]) -> None:
    """Pushes `OUT/dataset` to the Hub dataset repository `repo_id`, then completes its card.

    `DatasetDict.push_to_hub` writes a README.md holding the data's YAML metadata (`configs`, `dataset_info`);
    the card keeps that metadata and adds its own and the text above.
    """
    from datasets import load_from_disk
    from huggingface_hub import DatasetCard

    load_from_disk(str(Path(output_dir) / "dataset")).push_to_hub(repo_id, commit_message="Upload the dataset")
    card = DatasetCard.load(repo_id, repo_type="dataset")
    card.data.pretty_name = "Cornell Movie-Dialogs pairs (PyTorch Chatbot Tutorial filtering)"
    card.data.language = ["en"]
    card.data.task_categories = ["text-generation"]
    card.data.tags = ["conversational", "chatbot", "cornell-movie-dialogs"]
    card.text = CARD_TEXT.format(url=CORPUS_URL, extension=_extension_text(stats), **stats)
    card.push_to_hub(repo_id, repo_type="dataset", commit_message="Add the dataset card")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")  # one line, not argparse's usage block


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m data_scripts.build_dataset",
        description="Build the tutorial's filtered Cornell (query, response) pairs and word-level tokenizer.",
    )
    parser.add_argument(
        "--corpus-dir",
        help="The corpus folder or the official zip (default: download the official corpus into "
        f"{default_corpus_cache()})",
    )
    parser.add_argument("--output-dir", required=True, help="Where to write dataset/, tokenizer/ and stats.json.")
    parser.add_argument("--max-length", type=int, default=10, help="Keep pairs with fewer words a side (10).")
    parser.add_argument("--min-count", type=int, default=3, help="Trim words seen fewer times, with their pairs (3).")
    parser.add_argument(
        "--train-max-length", type=int, help="Also train on pairs with fewer words a side (default: --max-length)."
    )
    parser.add_argument(
        "--train-max-unknown", type=int, default=0, help="Also train on pairs with this many unknown words (0)."
    )
    parser.add_argument("--validation-size", type=float, default=0.05, help="Share of conversations (0.05).")
    parser.add_argument("--test-size", type=float, default=0.05, help="Share of conversations (0.05).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the split by conversation (0).")
    parser.add_argument("--num-proc", type=int, help="Processes for normalization (default: CPUs, on big corpora).")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="Also push the dataset and its card to the Hub.")
    parser.add_argument(
        "--overwrite-output-dir",
        action="store_true",
        help="Write into a non-empty --output-dir that luong-chatbot did not create (same-named files are replaced).",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; prints the stats as JSON. Bad input: one line on stderr, exit code 2; a failed push: 1."""
    import datasets
    from huggingface_hub.errors import HfHubHTTPError

    args = _parser().parse_args(argv)
    datasets.disable_progress_bars()  # the push's too: an error must stay one line
    arguments = {key: value for key, value in vars(args).items() if key not in ("corpus_dir", "output_dir")}
    arguments["push_to_hub"] = None
    try:
        stats = build_dataset(args.corpus_dir, args.output_dir, **arguments)
    except (CorpusFormatError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.push_to_hub:
        try:
            push_dataset(args.output_dir, args.push_to_hub, stats)
        except (HfHubHTTPError, OSError, ValueError) as error:
            summary = str(error).splitlines()[0] if str(error) else type(error).__name__
            print(f"error: built {args.output_dir}, but pushing it failed: {summary}", file=sys.stderr)
            return 1
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
