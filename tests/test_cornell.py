"""data_scripts/cornell.py: pairs with the tutorial's semantics, folder and zip input, download, malformed input."""

import hashlib
import http.server
import os
import threading
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


def _zip_with_member_flags(tmp_path, compress_type: int = zipfile.ZIP_DEFLATED, encrypted: bool = False) -> Path:
    """The official layout, with movie_lines.txt's header claiming a method or encryption `zipfile` cannot read."""
    path = write_official_zip(tmp_path / "corpus.zip", write_corpus(tmp_path / "source"))
    data = bytearray(path.read_bytes())
    # The member's local header (PK\x03\x04) and its central directory entry (PK\x01\x02) both hold the flags and
    # the method: patch both, as a Deflate64 or encrypting zip tool would have written them.
    member = f"{cornell.CORPUS_FOLDER}/movie_lines.txt".encode()
    for signature, flags_at, method_at, name_at in ((b"PK\x03\x04", 6, 8, 30), (b"PK\x01\x02", 8, 10, 46)):
        start = data.find(signature)
        while data[start + name_at : start + name_at + len(member)] != member:
            start = data.find(signature, start + 1)
        data[start + method_at : start + method_at + 2] = compress_type.to_bytes(2, "little")
        if encrypted:
            data[start + flags_at] |= 0x1
    path.write_bytes(bytes(data))
    return path


HOSTILE = {
    "a character device": (lambda tmp_path: Path("/dev/zero"), "/dev/zero", "found something that is neither"),
    "a FIFO": (lambda tmp_path: _fifo(tmp_path / "corpus.zip"), "corpus.zip", "found something that is neither"),
    "a FIFO as movie_lines.txt": (
        lambda tmp_path: _fifo(_no_lines_file(tmp_path) / "movie_lines.txt").parent,
        "movie_lines.txt",
        "found something that is not a regular file",
    ),
    "a Deflate64 member": (
        lambda tmp_path: _zip_with_member_flags(tmp_path, compress_type=9),
        "movie_lines.txt",
        "found compression method 9; unzip it and pass the folder",
    ),
    "an encrypted member": (
        lambda tmp_path: _zip_with_member_flags(tmp_path, encrypted=True),
        "movie_lines.txt",
        "expected an unencrypted zip member, found an encrypted one",
    ),
    "a folder named movie_lines.txt": (
        lambda tmp_path: _mkdir(_no_lines_file(tmp_path) / "movie_lines.txt").parent,
        "movie_lines.txt",
        "not a regular file",
    ),
}


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.timeout(30)  # a FIFO or /dev/zero read would hang or fill the memory
@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_corpus_paths_fail_at_once_in_one_line(tmp_path, case):
    make, file_name, expected = HOSTILE[case]
    with pytest.raises(CorpusFormatError) as caught:
        list(iter_pairs(make(tmp_path)))
    message = str(caught.value)
    assert "\n" not in message and file_name in message and expected in message, message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_unreadable_lines_file_is_one_line(tmp_path):
    corpus = write_corpus(tmp_path / "corpus")
    (corpus / "movie_lines.txt").chmod(0)
    with pytest.raises(CorpusFormatError, match="movie_lines.txt: expected a readable file, found Permission denied"):
        read_lines(corpus)


def test_utf8_corpus_is_read_as_utf8_with_a_warning(tmp_path, caplog):
    lines = [line.replace("Caf\xe9", "Caf\xe9 cr\xe8me \u2013") for line in LINES]
    corpus = write_corpus(tmp_path / "corpus")
    (corpus / "movie_lines.txt").write_bytes("".join(f"{row}\n" for row in lines).encode("utf-8"))
    for source in (corpus, write_official_zip(tmp_path / "corpus.zip", corpus)):
        caplog.clear()
        assert read_lines(source)["L6"] == "Caf\xe9 cr\xe8me \u2013 au lait?"  # not mojibake like "CafÃ©"
        (warning,) = [record.getMessage() for record in caplog.records]
        assert "movie_lines.txt: reading it as UTF-8, not the corpus's ISO-8859-1" in warning
    # The corpus's own ISO-8859-1 (accents as single bytes) reads as before, silently.
    caplog.clear()
    assert read_lines(write_corpus(tmp_path / "latin"))["L6"] == "Caf\xe9 au lait?"
    assert not caplog.records


# --- download --------------------------------------------------------------------------------------------------------
@pytest.fixture
def http_server():
    """A local HTTP server (127.0.0.1 only) serving `routes` (path -> bytes); other paths get 404."""
    routes: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = routes.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield base, routes
    server.shutdown()
    server.server_close()


def test_the_official_checksum_is_the_public_one():
    assert cornell.CORPUS_ZIP_SIZE == 9_916_637
    assert cornell.CORPUS_ZIP_SHA256 == "3bde8a571f615201bc2d2453e22878090719638592f774720eddec739de8c900"
    assert cornell.CORPUS_URLS[0] == cornell.CORPUS_URL
    assert any("mpi-sws.org/~cristian/data/cornell_movie_dialogs_corpus.zip" in url for url in cornell.CORPUS_URLS)


def test_download_falls_back_to_a_mirror_checks_extracts_atomically_and_caches(tmp_path, http_server):
    base, routes = http_server
    archive = write_official_zip(tmp_path / "corpus.zip", write_corpus(tmp_path / "source"))
    routes["/mirror.zip"] = archive.read_bytes()
    routes["/wrong.zip"] = b"x" * archive.stat().st_size  # a mirror serving something else is skipped too
    urls = [f"{base}/moved.zip", f"{base}/wrong.zip", f"{base}/mirror.zip"]
    checksum = {"sha256": cornell.sha256_of(archive), "size": archive.stat().st_size}
    folder = download_corpus(tmp_path / "cache", urls=urls, progress=False, **checksum)
    assert folder == tmp_path / "cache" / cornell.CORPUS_FOLDER
    assert sorted(p.name for p in folder.iterdir()) == ["movie_conversations.txt", "movie_lines.txt"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [cornell.CORPUS_FOLDER]  # no leftovers
    assert len(list(iter_pairs(folder))) == 3
    # A second call finds the complete folder and fetches nothing.
    assert download_corpus(tmp_path / "cache", urls=[f"{base}/gone.zip"], **checksum) == folder


@pytest.mark.parametrize("served", ["wrong bytes", "right size, wrong hash", "too long"])
def test_download_refuses_anything_but_the_official_zip(tmp_path, http_server, served):
    base, routes = http_server
    size = cornell.CORPUS_ZIP_SIZE
    body = {
        "wrong bytes": write_official_zip(tmp_path / "c.zip", write_corpus(tmp_path / "s")).read_bytes(),
        "right size, wrong hash": b"\0" * size,
        "too long": b"\0" * (size + 5000),
    }[served]
    routes["/corpus.zip"] = body
    url = f"{base}/corpus.zip"
    with pytest.raises(CorpusDownloadError) as caught:
        download_corpus(tmp_path / "cache" / "deep", urls=[url], progress=False)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{url}: expected 9,916,637 bytes with SHA-256 {cornell.CORPUS_ZIP_SHA256}, found " in message
    if served == "right size, wrong hash":
        assert f"found 9,916,637 bytes with SHA-256 {hashlib.sha256(body).hexdigest()}" in message
    if served == "too long":
        assert "found more than 9,916,637 bytes" in message
    assert "pass it (or its unpacked folder) with --corpus-dir" in message
    assert not (tmp_path / "cache").exists()  # nothing half-downloaded or half-extracted, no folder it created


def test_download_without_network_says_to_pass_a_local_corpus(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cornell.urllib.request, "urlopen", offline)
    with pytest.raises(CorpusDownloadError) as caught:
        download_corpus(tmp_path / "cache", progress=False)
    message = str(caught.value)
    assert "\n" not in message and all(url in message for url in cornell.CORPUS_URLS)
    assert "Temporary failure in name resolution" in message
    assert "Download cornell_movie_dialogs_corpus.zip yourself and pass it" in message
    assert isinstance(caught.value, CorpusFormatError)  # handled wherever corpus errors are
