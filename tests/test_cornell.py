"""data_scripts/cornell.py: pairs with the tutorial's semantics, folder and zip input, download, malformed input."""

import os
import urllib.error
import zipfile
from pathlib import Path

import pytest

from data_scripts import cornell
from data_scripts.cornell import CorpusDownloadError, CorpusFormatError, download_corpus, iter_pairs, read_lines

SEP = " +++$+++ "
SAMPLE_DIR = os.environ.get("CORNELL_SAMPLE_DIR")
needs_sample = pytest.mark.skipif(not SAMPLE_DIR, reason="CORNELL_SAMPLE_DIR is not set")

LINES = [
    f"L3{SEP}u1{SEP}m0{SEP}BOB{SEP}Fine, thanks.",
    f"L2{SEP}u0{SEP}m0{SEP}ANN{SEP}How are you?",
    f"L1{SEP}u1{SEP}m0{SEP}BOB{SEP}Hello!",
    f"L4{SEP}u0{SEP}m0{SEP}ANN{SEP}   ",
    f"L5{SEP}u1{SEP}m0{SEP}BOB{SEP}Anyone there?",
    f"L6{SEP}u0{SEP}m1{SEP}CAT{SEP}Caf\xe9 au lait?",
    f"L7{SEP}u2{SEP}m1{SEP}DAN{SEP}Oui.",
]
CONVERSATIONS = [
    f"u0{SEP}u1{SEP}m0{SEP}['L1', 'L2', 'L3']",
    f"u0{SEP}u1{SEP}m0{SEP}['L4', 'L5']",
    f"u0{SEP}u2{SEP}m1{SEP}['L6', 'L7']",
]


def write_corpus(directory: Path, lines=LINES, conversations=CONVERSATIONS) -> Path:
    """Writes the two dialogue files in the corpus's format (ISO-8859-1, ` +++$+++ ` fields, `\\n` endings)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in (("movie_lines.txt", lines), ("movie_conversations.txt", conversations)):
        (directory / name).write_bytes("".join(f"{row}\n" for row in rows).encode("iso-8859-1"))
    return directory


def write_official_zip(path: Path, corpus: Path) -> Path:
    """A zip laid out like the official one: the corpus folder, plus the macOS resource forks it also holds."""
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("movie_lines.txt", "movie_conversations.txt"):
            archive.write(corpus / name, f"{cornell.CORPUS_FOLDER}/{name}")
            archive.writestr(f"__MACOSX/{cornell.CORPUS_FOLDER}/._{name}", b"\x00\x05\x16\x07binary")
    return path


def test_pairs_follow_the_tutorial(tmp_path):
    pairs = list(iter_pairs(write_corpus(tmp_path)))
    # L1->L2->L3 gives two pairs; L4 is blank once stripped, so (L4, L5) is skipped; the last line gets no reply.
    assert [(p["query"], p["response"]) for p in pairs] == [
        ("Hello!", "How are you?"),
        ("How are you?", "Fine, thanks."),
        ("Caf\xe9 au lait?", "Oui."),
    ]
    assert pairs[0] == {
        "query": "Hello!",
        "response": "How are you?",
        "movie_id": "m0",
        "conversation_id": 0,
        "query_line_id": "L1",
        "response_line_id": "L2",
    }
    assert [p["conversation_id"] for p in pairs] == [0, 0, 2]


def test_zip_and_unpacked_folder_read_like_the_folder(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    expected = list(iter_pairs(corpus))
    assert list(iter_pairs(write_official_zip(tmp_path / "corpus.zip", corpus))) == expected
    unpacked = tmp_path / "unpacked"
    write_corpus(unpacked / cornell.CORPUS_FOLDER)
    assert list(iter_pairs(unpacked)) == expected


def test_blank_lines_are_skipped(tmp_path):
    corpus = write_corpus(tmp_path, lines=[*LINES, "", "  "])
    assert len(read_lines(corpus)) == len(LINES)


@needs_sample
def test_sample_reads_with_replacement_character_bytes():
    texts = read_lines(SAMPLE_DIR)
    assert len(texts) == 28_344
    # U+FFFD stored as UTF-8 bytes EF BF BD reads as three ISO-8859-1 characters: valid text, kept as is.
    assert sum("\xef\xbf\xbd" in text for text in texts.values()) == 4
    assert sum(1 for _ in iter_pairs(SAMPLE_DIR)) == 20_399


def _bad(tmp_path: Path, lines=LINES, conversations=CONVERSATIONS) -> Path:
    return write_corpus(tmp_path / "corpus", lines, conversations)


def _no_lines_file(tmp_path):
    corpus = _bad(tmp_path)
    (corpus / "movie_lines.txt").unlink()
    return corpus


def _binary_lines_file(tmp_path):
    corpus = _bad(tmp_path)
    (corpus / "movie_lines.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00")
    return corpus


def _empty_conversations_file(tmp_path):
    corpus = _bad(tmp_path)
    (corpus / "movie_conversations.txt").write_bytes(b"")
    return corpus


def _bad_zip(tmp_path):
    path = tmp_path / "cornell_movie_dialogs_corpus.zip"
    path.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    return path


def _zip_without_corpus(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.txt", "nothing here")
    return path


PADDING = [f"L{100 + i}{SEP}u1{SEP}m0{SEP}BOB{SEP}Line {i} of the text before the NUL byte." for i in range(300)]
MALFORMED = {
    "missing file": (_no_lines_file, "movie_lines.txt", None, "expected the corpus file movie_lines.txt"),
    "missing corpus": (lambda tmp_path: tmp_path / "nowhere", "nowhere", None, "expected a corpus folder"),
    "wrong field count in lines": (
        lambda tmp_path: _bad(tmp_path, lines=[*LINES[:2], f"L9{SEP}u1{SEP}m0{SEP}only four fields"]),
        "movie_lines.txt",
        3,
        "expected 5 fields 'line_id +++$+++ character_id",
    ),
    "wrong field count in conversations": (
        lambda tmp_path: _bad(tmp_path, conversations=[CONVERSATIONS[0], f"u0{SEP}m0{SEP}['L1', 'L2']"]),
        "movie_conversations.txt",
        2,
        "expected 4 fields",
    ),
    "unknown line ID": (
        lambda tmp_path: _bad(tmp_path, conversations=[*CONVERSATIONS, f"u0{SEP}u1{SEP}m0{SEP}['L1', 'L99']"]),
        "movie_conversations.txt",
        4,
        "unknown line ID 'L99'",
    ),
    "malformed line ID list": (
        lambda tmp_path: _bad(tmp_path, conversations=[f"u0{SEP}u1{SEP}m0{SEP}L1, L2"]),
        "movie_conversations.txt",
        1,
        "expected a list of line IDs like ['L194', 'L195']",
    ),
    "duplicate line ID": (
        lambda tmp_path: _bad(tmp_path, lines=[*LINES, LINES[0]]),
        "movie_lines.txt",
        len(LINES) + 1,
        "expected unique line IDs, found 'L3' a second time",
    ),
    "empty file": (_empty_conversations_file, "movie_conversations.txt", None, "expected lines of 4 fields"),
    "bad zip": (_bad_zip, "cornell_movie_dialogs_corpus.zip", None, "expected a readable zip archive"),
    "zip without the corpus": (_zip_without_corpus, "other.zip", None, "expected a zip archive holding"),
    "binary file": (_binary_lines_file, "movie_lines.txt", 3, "expected ISO-8859-1 text, found a NUL byte"),
    "NUL byte far into a text file": (
        lambda tmp_path: _bad(tmp_path, lines=[*LINES, *PADDING, f"L0{SEP}u1{SEP}m0{SEP}BOB{SEP}nul \0 here"]),
        "movie_lines.txt",
        len(LINES) + len(PADDING) + 1,
        "expected ISO-8859-1 text, found a NUL byte",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_input_names_file_line_and_expectation(tmp_path, case):
    make, file_name, line_number, expected = MALFORMED[case]
    with pytest.raises(CorpusFormatError) as caught:
        list(iter_pairs(make(tmp_path)))
    message = str(caught.value)
    assert "\n" not in message
    assert file_name in message and expected in message
    assert caught.value.line_number == line_number
    if line_number is not None:
        assert f", line {line_number}: " in message


def test_git_blob_sha1_matches_git(tmp_path):
    (tmp_path / "hello").write_bytes(b"hello\n")
    assert cornell.git_blob_sha1(tmp_path / "hello") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_download_checks_extracts_atomically_and_caches(tmp_path):
    archive = write_official_zip(tmp_path / "corpus.zip", write_corpus(tmp_path / "source"))
    url, blob = archive.as_uri(), cornell.git_blob_sha1(archive)
    folder = download_corpus(tmp_path / "cache", url=url, blob_sha1=blob, progress=False)
    assert folder == tmp_path / "cache" / cornell.CORPUS_FOLDER
    assert sorted(p.name for p in folder.iterdir()) == ["movie_conversations.txt", "movie_lines.txt"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [cornell.CORPUS_FOLDER]  # no leftovers
    assert len(list(iter_pairs(folder))) == 3
    # A second call finds the complete folder and fetches nothing.
    assert download_corpus(tmp_path / "cache", url="file:///nowhere.zip", blob_sha1=blob) == folder


def test_download_rejects_a_wrong_checksum_and_leaves_nothing(tmp_path):
    archive = write_official_zip(tmp_path / "corpus.zip", write_corpus(tmp_path / "source"))
    with pytest.raises(CorpusDownloadError, match=f"expected a zip with git blob ID {cornell.CORPUS_ZIP_BLOB_SHA1}"):
        download_corpus(tmp_path / "cache", url=archive.as_uri(), progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_download_without_network_says_to_pass_a_local_corpus(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cornell.urllib.request, "urlopen", offline)
    with pytest.raises(CorpusDownloadError) as caught:
        download_corpus(tmp_path / "cache", progress=False)
    message = str(caught.value)
    assert "\n" not in message and cornell.CORPUS_URL in message
    assert "pass a local corpus folder or the official zip instead (--corpus-dir)" in message
    assert isinstance(caught.value, CorpusFormatError)  # handled wherever corpus errors are
