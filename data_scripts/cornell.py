"""Streaming reader of the Cornell Movie-Dialogs Corpus: raw files -> conversations -> (query, response) pairs.

The corpus is the folder of the official release (or any folder holding its two dialogue files) or the official zip,
`cornell_movie_dialogs_corpus.zip`, read in place. Both files are ISO-8859-1 text with fields separated by
` +++$+++ `:

- `movie_lines.txt`: lineID, characterID, movieID, character name, text;
- `movie_conversations.txt`: character1ID, character2ID, movieID, and the conversation's line IDs in order, written
  like `['L194', 'L195']`.

Each utterance followed by the next one in a conversation is a (query, response) pair, kept when both texts are
non-empty once stripped: the tutorial's pairs, in its order. Malformed input raises [`CorpusFormatError`] naming the
file, the line and what was expected. This module needs only the standard library (and tqdm to show downloads).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

CORPUS_URL = "https://www.cs.cornell.edu/~cristian/data/cornell_movie_dialogs_corpus.zip"
CORPUS_ZIP_BLOB_SHA1 = "968aac7176aee3f9c8013a51c785c17e5743d038"  # `git hash-object` of the official zip
CORPUS_FOLDER = "cornell movie-dialogs corpus"  # what the official zip unpacks to
LINES_FILE = "movie_lines.txt"
CONVERSATIONS_FILE = "movie_conversations.txt"
ENCODING = "iso-8859-1"
BINARY_PROBE_BYTES = 8192  # as `git` and `grep` do, look for a NUL byte at the start
SEPARATOR = " +++$+++ "
LINE_FIELDS = ("line_id", "character_id", "movie_id", "character_name", "text")
CONVERSATION_FIELDS = ("character1_id", "character2_id", "movie_id", "line_ids")


class CorpusFormatError(ValueError):
    """The corpus is missing, unreadable or malformed. The message is one line: file, line number, what was expected.

    Args:
        file (`str`):
            The file at fault (for a zip, `archive.zip/member`).
        expected (`str`):
            What the reader expected to find.
        line_number (`int`, *optional*):
            The 1-based line of `file` at fault, when the fault is on one line.
        found (`str`, *optional*):
            What it found instead.
    """

    def __init__(self, file: str, expected: str, line_number: int | None = None, found: str | None = None):
        self.file, self.expected, self.line_number, self.found = file, expected, line_number, found
        where = file if line_number is None else f"{file}, line {line_number}"
        super().__init__(f"{where}: expected {expected}" + ("" if found is None else f", found {found}"))


class CorpusDownloadError(CorpusFormatError):
    """The official corpus could not be fetched or failed its checksum.

    A subclass of [`CorpusFormatError`] so that every caller turning corpus problems into a one-line exit handles it.
    """

    def __init__(self, message: str):
        self.file, self.expected, self.line_number, self.found = CORPUS_URL, message, None, None
        ValueError.__init__(self, message)


def _zip_member(archive: zipfile.ZipFile, name: str) -> str | None:
    """The member holding corpus file `name`: the official layout first, then the root, then any folder."""
    members = archive.namelist()
    for candidate in (f"{CORPUS_FOLDER}/{name}", name):
        if candidate in members:
            return candidate
    # The official zip also holds macOS resource forks (`__MACOSX/.../._movie_lines.txt`): never text.
    found = [m for m in members if m.rsplit("/", 1)[-1] == name and not m.startswith("__MACOSX/")]
    return found[0] if len(found) == 1 else None


def _check_text(file: str, head: bytes) -> None:
    """Rejects a binary file from its first bytes: every byte is valid ISO-8859-1, but text has no NUL."""
    if b"\0" in head:
        line_number = head.count(b"\n", 0, head.index(b"\0")) + 1
        raise CorpusFormatError(file, "ISO-8859-1 text", line_number, "a NUL byte (a binary file?)")


@contextlib.contextmanager
def open_corpus_file(corpus: str | os.PathLike, name: str) -> Iterator[tuple[str, IO[str]]]:
    """Opens corpus file `name` of a corpus folder or zip as ISO-8859-1 text; yields (display name, text stream).

    A folder may also be the one the official zip was unpacked into (holding `cornell movie-dialogs corpus/`).
    """
    corpus = Path(corpus)
    if corpus.is_dir():
        path = next((p for p in (corpus / name, corpus / CORPUS_FOLDER / name) if p.is_file()), corpus / name)
        if not path.is_file():
            raise CorpusFormatError(str(path), f"the corpus file {name} (pass the corpus folder or the official zip)")
        with open(path, "rb") as probe:
            _check_text(str(path), probe.read(BINARY_PROBE_BYTES))
        with open(path, encoding=ENCODING) as handle:
            yield str(path), handle
        return
    if not corpus.exists():
        raise CorpusFormatError(str(corpus), "a corpus folder or the official zip file, found nothing there")
    try:
        with zipfile.ZipFile(corpus) as archive:
            member = _zip_member(archive, name)
            if member is None:
                raise CorpusFormatError(str(corpus), f"a zip archive holding {CORPUS_FOLDER}/{name}")
            with archive.open(member) as probe:
                _check_text(f"{corpus}/{member}", probe.read(BINARY_PROBE_BYTES))
            with archive.open(member) as raw:
                yield f"{corpus}/{member}", io.TextIOWrapper(raw, encoding=ENCODING)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError) as error:
        raise CorpusFormatError(
            str(corpus), "a readable zip archive (the official corpus zip)", found=str(error)
        ) from None


def _reject(file: str, number: int, line: str, values: list[str], fields: tuple[str, ...]) -> None:
    """Raises the error for a line that did not split into `fields`, unless it is blank (a trailing one, say)."""
    if "\0" in line:
        raise CorpusFormatError(file, "ISO-8859-1 text", number, "a NUL byte (a binary file?)")
    if line.strip():
        raise CorpusFormatError(file, f"{len(fields)} fields '{SEPARATOR.join(fields)}'", number, f"{len(values)}")


def _check_not_empty(file: str, records: int, fields: tuple[str, ...]) -> None:
    if not records:
        raise CorpusFormatError(file, f"lines of {len(fields)} fields '{SEPARATOR.join(fields)}'", found="none")


def read_lines(corpus: str | os.PathLike) -> dict[str, str]:
    """Maps each line ID of `movie_lines.txt` to its stripped text."""
    texts: dict[str, str] = {}
    with open_corpus_file(corpus, LINES_FILE) as (file, handle):
        # The hot loop of the parse (300,000 lines in the full corpus): checks inline, errors out of line.
        for number, line in enumerate(handle, 1):
            values = line.split(SEPARATOR)
            if len(values) != len(LINE_FIELDS) or "\0" in line:
                _reject(file, number, line, values, LINE_FIELDS)
                continue
            if values[0] in texts:
                raise CorpusFormatError(file, "unique line IDs", number, f"{values[0]!r} a second time")
            texts[values[0]] = values[4].strip()
    _check_not_empty(file, len(texts), LINE_FIELDS)
    return texts


def _parse_line_ids(field: str, file: str, number: int) -> list[str]:
    """`['L194', 'L195']` -> ["L194", "L195"]."""
    field = field.strip()
    if field == "[]":
        return []
    ids = field[2:-2].split("', '")
    rest = "".join(ids)  # what is left once the separators are gone: no quote nor comma may remain
    if not (field.startswith("['") and field.endswith("']")) or "'" in rest or "," in rest or "" in ids:
        raise CorpusFormatError(file, "a list of line IDs like ['L194', 'L195']", number, repr(field[:60]))
    return ids


def iter_conversations(corpus: str | os.PathLike, texts: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Yields each conversation of `movie_conversations.txt` with its utterances' texts.

    Each record has `conversation_id` (the conversation's 0-based position in the file), `movie_id`, `line_ids` and
    `texts`. A line ID that `movie_lines.txt` lacks raises [`CorpusFormatError`].
    """
    texts = read_lines(corpus) if texts is None else texts
    index = 0
    with open_corpus_file(corpus, CONVERSATIONS_FILE) as (file, handle):
        for number, line in enumerate(handle, 1):
            values = line.split(SEPARATOR)
            if len(values) != len(CONVERSATION_FIELDS) or "\0" in line:
                _reject(file, number, line, values, CONVERSATION_FIELDS)
                continue
            line_ids = _parse_line_ids(values[3], file, number)
            try:
                utterances = [texts[line_id] for line_id in line_ids]
            except KeyError as error:
                raise CorpusFormatError(
                    file, f"line IDs present in {LINES_FILE}", number, f"unknown line ID {error.args[0]!r}"
                ) from None
            yield {"conversation_id": index, "movie_id": values[2], "line_ids": line_ids, "texts": utterances}
            index += 1
    _check_not_empty(file, index, CONVERSATION_FIELDS)


def iter_pairs(corpus: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yields the corpus's (query, response) pairs in the tutorial's order, skipping those with a blank side.

    Each record has `query`, `response` (raw, stripped texts), `movie_id`, `conversation_id`, `query_line_id` and
    `response_line_id`.

    Example:

    ```python
    >>> pair = next(iter_pairs("cornell movie-dialogs corpus"))
    >>> pair["query_line_id"], pair["response_line_id"], pair["response"]
    ('L194', 'L195', "Well, I thought we'd start with pronunciation, if that's okay with you.")
    ```
    """
    for conversation in iter_conversations(corpus):
        line_ids, texts = conversation["line_ids"], conversation["texts"]
        for position in range(len(texts) - 1):
            if texts[position] and texts[position + 1]:
                yield {
                    "query": texts[position],
                    "response": texts[position + 1],
                    "movie_id": conversation["movie_id"],
                    "conversation_id": conversation["conversation_id"],
                    "query_line_id": line_ids[position],
                    "response_line_id": line_ids[position + 1],
                }


def git_blob_sha1(path: str | os.PathLike) -> str:
    """The file's git blob ID (`git hash-object`): SHA-1 of `blob <size>\\0` followed by the bytes."""
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, progress: bool) -> None:
    """Streams `url` into `target` with a progress bar."""
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc="Cornell corpus", disable=not progress) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                bar.update(len(chunk))


def download_corpus(
    dest: str | os.PathLike,
    url: str = CORPUS_URL,
    blob_sha1: str = CORPUS_ZIP_BLOB_SHA1,
    progress: bool = True,
) -> Path:
    """Downloads and unpacks the official corpus into `dest`; returns the corpus folder.

    The folder `dest/cornell movie-dialogs corpus/` appears only once the zip has passed its checksum and been fully
    extracted (extraction goes to a temporary folder that is then renamed), so a present folder is a complete one and
    a second call returns it at once.

    Args:
        dest (`str` or `os.PathLike`):
            Where to put the corpus folder; created if missing.
        url (`str`, *optional*, defaults to the official release):
            Where to download the zip from.
        blob_sha1 (`str`, *optional*, defaults to the official zip's git blob ID):
            The expected `git hash-object` of the zip.
        progress (`bool`, *optional*, defaults to `True`):
            Whether to show a progress bar.
    """
    dest = Path(dest)
    folder = dest / CORPUS_FOLDER
    if folder.is_dir():
        return folder
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as work:
        archive = Path(work, "cornell_movie_dialogs_corpus.zip")
        try:
            _fetch(url, archive, progress)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CorpusDownloadError(
                f"could not download the Cornell corpus from {url} ({reason}); "
                "pass a local corpus folder or the official zip instead (--corpus-dir)"
            ) from None
        found = git_blob_sha1(archive)
        if found != blob_sha1:
            raise CorpusDownloadError(f"{url}: expected a zip with git blob ID {blob_sha1}, found {found}")
        extracted = Path(work, "extracted")
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.namelist() if m.startswith(f"{CORPUS_FOLDER}/")]
            zipped.extractall(extracted, members=members)
        os.replace(extracted / CORPUS_FOLDER, folder)
    return folder
