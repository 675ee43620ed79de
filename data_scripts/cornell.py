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

import codecs
import contextlib
import hashlib
import io
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from data_scripts.output_dir import new_folders_for, remove_created_folders

CORPUS_URL = "https://www.cs.cornell.edu/~cristian/data/cornell_movie_dialogs_corpus.zip"
# The same zip, tried in turn: the page moved from MPI-SWS to Cornell once already. Only the checksum below passes.
CORPUS_URLS = (
    CORPUS_URL,
    "http://www.cs.cornell.edu/~cristian/data/cornell_movie_dialogs_corpus.zip",
    "https://people.mpi-sws.org/~cristian/data/cornell_movie_dialogs_corpus.zip",
    "http://www.mpi-sws.org/~cristian/data/cornell_movie_dialogs_corpus.zip",
)
# The official zip's size and SHA-256, as three independent public records give them: the download checksums of
# huggingface/datasets' `cornell_movie_dialog` (dataset_infos.json), the Julia DataDeps registration of the corpus,
# and a 2017 Git LFS pointer to the zip.
CORPUS_ZIP_SIZE = 9_916_637
CORPUS_ZIP_SHA256 = "3bde8a571f615201bc2d2453e22878090719638592f774720eddec739de8c900"
CORPUS_FOLDER = "cornell movie-dialogs corpus"  # what the official zip unpacks to
LINES_FILE = "movie_lines.txt"
CONVERSATIONS_FILE = "movie_conversations.txt"
ENCODING = "iso-8859-1"
BINARY_PROBE_BYTES = 8192  # as `git` and `grep` do, look for a NUL byte at the start
SEPARATOR = " +++$+++ "
LINE_FIELDS = ("line_id", "character_id", "movie_id", "character_name", "text")
CONVERSATION_FIELDS = ("character1_id", "character2_id", "movie_id", "line_ids")
READABLE_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)

logger = logging.getLogger(__name__)


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


def _is_utf8_text(chunks: Iterator[bytes]) -> bool:
    """Whether the bytes are valid UTF-8 holding at least one multi-byte character (so not plain ASCII).

    ISO-8859-1 text with accented letters is almost never valid UTF-8, so such a file was written as UTF-8.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    multi_byte = False
    try:
        for chunk in chunks:
            decoder.decode(chunk)
            multi_byte = multi_byte or not chunk.isascii()
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return multi_byte


def _encoding_of(file: str, raw: IO[bytes]) -> str:
    """ISO-8859-1, the corpus's encoding, unless the file is UTF-8 text: then UTF-8, with a warning saying so."""
    if not _is_utf8_text(iter(lambda: raw.read(1 << 20), b"")):
        return ENCODING
    logger.warning("%s: reading it as UTF-8, not the corpus's ISO-8859-1: it is valid UTF-8 with non-ASCII text", file)
    return "utf-8"


def _check_member(corpus: Path, archive: zipfile.ZipFile, member: str) -> None:
    """Rejects an encrypted member or one compressed with a method `zipfile` cannot read (Deflate64, ...)."""
    info = archive.getinfo(member)
    if info.flag_bits & 0x1:
        raise CorpusFormatError(f"{corpus}/{member}", "an unencrypted zip member", found="an encrypted one")
    if info.compress_type not in READABLE_ZIP_METHODS:
        raise CorpusFormatError(
            f"{corpus}/{member}",
            "a zip member stored or compressed with Deflate, BZIP2 or LZMA",
            found=f"compression method {info.compress_type}; unzip it and pass the folder",
        )


@contextlib.contextmanager
def _open_folder_file(corpus: Path, name: str) -> Iterator[tuple[str, IO[str]]]:
    path = next((p for p in (corpus / name, corpus / CORPUS_FOLDER / name) if p.exists()), corpus / name)
    if not path.is_file():
        found = "nothing there" if not path.exists() else "something that is not a regular file"
        raise CorpusFormatError(
            str(path), f"the corpus file {name} (pass the corpus folder or the official zip)", found=found
        )
    with contextlib.ExitStack() as stack:
        try:
            with open(path, "rb") as raw:
                _check_text(str(path), raw.read(BINARY_PROBE_BYTES))
                raw.seek(0)
                encoding = _encoding_of(str(path), raw)
            handle = stack.enter_context(open(path, encoding=encoding))
        except OSError as error:
            raise CorpusFormatError(str(path), "a readable file", found=error.strerror or str(error)) from None
        yield str(path), handle


@contextlib.contextmanager
def open_corpus_file(corpus: str | os.PathLike, name: str) -> Iterator[tuple[str, IO[str]]]:
    """Opens corpus file `name` of a corpus folder or zip as text; yields (display name, text stream).

    A folder may also be the one the official zip was unpacked into (holding `cornell movie-dialogs corpus/`). Only
    folders and regular files are read (a device or a FIFO would be read forever). The text is ISO-8859-1 unless the
    file is UTF-8 (see `_encoding_of`).
    """
    corpus = Path(corpus)
    if corpus.is_dir():
        with _open_folder_file(corpus, name) as opened:
            yield opened
        return
    if not corpus.exists():
        raise CorpusFormatError(str(corpus), "a corpus folder or the official zip file, found nothing there")
    if not corpus.is_file():
        raise CorpusFormatError(
            str(corpus), "a corpus folder or the official zip file", found="something that is neither (a device?)"
        )
    try:
        with zipfile.ZipFile(corpus) as archive:
            member = _zip_member(archive, name)
            if member is None:
                raise CorpusFormatError(str(corpus), f"a zip archive holding {CORPUS_FOLDER}/{name}")
            _check_member(corpus, archive, member)
            with archive.open(member) as probe:
                _check_text(f"{corpus}/{member}", probe.read(BINARY_PROBE_BYTES))
            with archive.open(member) as raw:
                encoding = _encoding_of(f"{corpus}/{member}", raw)
            with archive.open(member) as raw:
                yield f"{corpus}/{member}", io.TextIOWrapper(raw, encoding=encoding)
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


def sha256_of(path: str | os.PathLike) -> str:
    """The file's SHA-256, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, max_bytes: int, progress: bool) -> None:
    """Streams `url` into `target` with a progress bar, stopping past `max_bytes` (the checksum fails then)."""
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc="Cornell corpus", disable=not progress) as bar:
            written = 0
            while written <= max_bytes and (chunk := response.read(min(1 << 20, max_bytes + 1 - written))):
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))


def _fetch_verified(url: str, archive: Path, sha256: str, size: int, progress: bool) -> str | None:
    """Downloads `url` into `archive`; returns `None` if it has the expected size and SHA-256, else why not."""
    try:
        _fetch(url, archive, size, progress)
    except (urllib.error.URLError, OSError, ValueError) as error:  # ValueError: not a URL urllib can open
        return f"{url}: {getattr(error, 'reason', error)}"
    found_size = archive.stat().st_size
    if found_size > size:  # the download stopped one byte past the expected size
        found = f"more than {size:,} bytes"
    else:
        found_sha256 = sha256_of(archive)
        if found_size == size and found_sha256 == sha256:
            return None
        found = f"{found_size:,} bytes with SHA-256 {found_sha256}"
    return f"{url}: expected {size:,} bytes with SHA-256 {sha256}, found {found}"


def download_corpus(
    dest: str | os.PathLike,
    urls: Sequence[str] = CORPUS_URLS,
    sha256: str = CORPUS_ZIP_SHA256,
    size: int = CORPUS_ZIP_SIZE,
    progress: bool = True,
) -> Path:
    """Downloads and unpacks the official corpus into `dest`; returns the corpus folder.

    Each URL is tried in turn until one gives a zip of exactly `size` bytes with SHA-256 `sha256`. The folder
    `dest/cornell movie-dialogs corpus/` appears only once the zip has passed that check and been fully extracted
    (extraction goes to a temporary folder that is then renamed), so a present folder is a complete one and a second
    call returns it at once. Nothing is left behind on failure.

    Args:
        dest (`str` or `os.PathLike`):
            Where to put the corpus folder; created if missing.
        urls (`Sequence[str]`, *optional*, defaults to the official release and its mirrors):
            Where to download the zip from, in order.
        sha256 (`str`, *optional*, defaults to the official zip's):
            The expected SHA-256 of the zip, hex.
        size (`int`, *optional*, defaults to the official zip's 9,916,637 bytes):
            The expected size of the zip.
        progress (`bool`, *optional*, defaults to `True`):
            Whether to show a progress bar.

    Raises:
        [`CorpusDownloadError`]: no URL gave the expected zip; the one-line message says what each gave.
    """
    dest = Path(dest)
    folder = dest / CORPUS_FOLDER
    if folder.is_dir():
        return folder
    created = new_folders_for(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as work:
            archive = Path(work, "cornell_movie_dialogs_corpus.zip")
            failures = []
            for url in urls:
                failure = _fetch_verified(url, archive, sha256, size, progress)
                if failure is None:
                    break
                failures.append(failure)
            else:
                raise CorpusDownloadError(
                    f"could not download the Cornell corpus: {'; '.join(failures)}. Download "
                    f"cornell_movie_dialogs_corpus.zip yourself and pass it (or its unpacked folder) with --corpus-dir"
                )
            extracted = Path(work, "extracted")
            with zipfile.ZipFile(archive) as zipped:
                members = [m for m in zipped.namelist() if m.startswith(f"{CORPUS_FOLDER}/")]
                zipped.extractall(extracted, members=members)
            os.replace(extracted / CORPUS_FOLDER, folder)
    except BaseException:
        remove_created_folders(created)
        raise
    return folder
