"""data_scripts/build_dataset.py: tutorial counts, splits, ids, atomic output, CLI errors and the Hub push."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote

import pyarrow as pa
import pytest
from datasets import concatenate_datasets, load_from_disk
from hub_helpers import file_response, read_commit
from transformers import AutoTokenizer

from data_scripts import build_dataset as build_module
from data_scripts.build_dataset import build_dataset, main
from data_scripts.cornell import iter_pairs
from modeling_seq2seq.tokenization_luong_gru import build_normalizer

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))
import tutorial_data_pipeline  # noqa: E402

SAMPLE_DIR = os.environ.get("CORNELL_SAMPLE_DIR")
needs_sample = pytest.mark.skipif(not SAMPLE_DIR, reason="CORNELL_SAMPLE_DIR is not set")
SEP = " +++$+++ "
SAMPLE_COUNTS = {
    "pairs_read": 20_399,
    "pairs_within_max_length": 5_952,
    "words_counted": 4_296,
    "words_kept": 1_594,
    "pairs_kept": 3_531,
    "pairs_empty_dropped": 0,
}
TUTORIAL_KEYS = ["pairs_read", "pairs_within_max_length", "words_counted", "words_kept", "pairs_kept"]
UTTERANCES = [
    "Hello?",
    "Hi.",
    "Where am I?",
    "You're in a hospital.",
    "Who are you?",
    "I'm a lawyer.",
    "Are you my friend?",
    "No.",
    "Goodbye!",
    "What is the meaning of all of this, after so many long years?",
    "12:30",  # normalizes to the empty string
    "--",  # so does this
    "Déjà vu?",
    "Zyzzyva.",
    "   ",  # blank: no pair on either side of it
]


def write_random_corpus(
    directory: Path, conversations: int = 120, seed: int = 0, utterances: list[str] = UTTERANCES
) -> Path:
    """A corpus of random conversations drawn from `utterances`, in the corpus's file format."""
    rng = random.Random(seed)
    lines, rows, next_id = [], [], 0
    for index in range(conversations):
        ids = []
        for _ in range(rng.randint(2, 5)):
            next_id += 1
            lines.append(SEP.join([f"L{next_id}", f"u{index}", f"m{index % 7}", "NAME", rng.choice(utterances)]))
            ids.append(f"L{next_id}")
        rows.append(SEP.join([f"u{index}", f"u{index + 1}", f"m{index % 7}", str(ids)]))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "movie_lines.txt").write_bytes("".join(f"{x}\n" for x in reversed(lines)).encode("iso-8859-1"))
    (directory / "movie_conversations.txt").write_bytes("".join(f"{x}\n" for x in rows).encode("iso-8859-1"))
    return directory


@pytest.fixture(scope="module")
def sample_build(tmp_path_factory):
    if not SAMPLE_DIR:
        pytest.skip("CORNELL_SAMPLE_DIR is not set")
    output = tmp_path_factory.mktemp("sample-build")
    return build_dataset(SAMPLE_DIR, output), output


@pytest.fixture(scope="module")
def random_corpus(tmp_path_factory):
    return write_random_corpus(tmp_path_factory.mktemp("random-corpus"))


def _all_rows(output: Path):
    dataset = load_from_disk(str(output / "dataset"))
    return dataset, concatenate_datasets([dataset[name] for name in ("train", "validation", "test")])


def test_sample_counts_are_the_tutorials(sample_build):
    stats, output = sample_build
    assert {key: stats[key] for key in SAMPLE_COUNTS} == SAMPLE_COUNTS
    assert json.loads((output / "stats.json").read_text()) == stats
    assert all(
        isinstance(stats[key], int) for key in [*SAMPLE_COUNTS, "train_pairs", "validation_pairs", "test_pairs"]
    )
    assert stats["train_pairs"] + stats["validation_pairs"] + stats["test_pairs"] == stats["pairs_kept"]
    assert stats["vocab_size"] == 4 + stats["words_kept"]


def test_sample_dataset_columns_ids_and_splits(sample_build):
    stats, output = sample_build
    dataset, rows = _all_rows(output)
    assert list(dataset) == ["train", "validation", "test"]
    assert {name: len(split) for name, split in dataset.items()} == {
        name: stats[f"{name}_pairs"] for name in ("train", "validation", "test")
    }
    assert {"query", "response", "movie_id", "conversation_id", "input_ids", "labels"} <= set(rows.column_names)
    tokenizer = AutoTokenizer.from_pretrained(output / "tokenizer")
    assert list(rows["input_ids"]) == tokenizer(list(rows["query"]))["input_ids"]
    assert list(rows["labels"]) == tokenizer(list(rows["response"]))["input_ids"]
    assert max(len(ids) for ids in [*rows["input_ids"], *rows["labels"]]) <= 10
    assert tokenizer.unk_token_id not in {i for ids in [*rows["input_ids"], *rows["labels"]] for i in ids}
    # No conversation in two splits.
    owners = {}
    for name, split in dataset.items():
        for conversation in set(split["conversation_id"]):
            assert owners.setdefault(conversation, name) == name


@needs_sample
def test_sample_vocabulary_and_pairs_are_the_tutorials(sample_build, tmp_path):
    stats, output = sample_build
    reference = tutorial_data_pipeline.run(SAMPLE_DIR, tmp_path)
    assert {key: stats[key] for key in TUTORIAL_KEYS} == {key: reference[key] for key in TUTORIAL_KEYS}
    tokenizer = AutoTokenizer.from_pretrained(output / "tokenizer")
    # Same words in the same order: the tutorial's ids shifted by one (our UNK takes id 3).
    assert tokenizer.convert_ids_to_tokens(list(range(4, len(tokenizer)))) == reference["vocabulary"]


def test_pairs_step_gives_iter_pairs_normalized(random_corpus):
    chunks = pa.Table.from_pylist(list(build_module._conversation_chunks(str(random_corpus), chunk_size=7)))
    pairs = build_module._pairs(chunks, build_normalizer()).to_pylist()
    normalize = tutorial_data_pipeline.normalize
    expected = [
        {**pair, "query": normalize(pair["query"]), "response": normalize(pair["response"])}
        for pair in iter_pairs(random_corpus)
    ]
    assert pairs == expected


def test_empty_normalized_sides_count_like_the_tutorial_then_drop(random_corpus, tmp_path):
    stats = build_dataset(random_corpus, tmp_path / "out")
    reference = tutorial_data_pipeline.run(random_corpus, tmp_path)
    assert {key: stats[key] for key in TUTORIAL_KEYS} == {key: reference[key] for key in TUTORIAL_KEYS}
    assert "" in reference["vocabulary"] and stats["pairs_empty_dropped"] > 0
    dataset, rows = _all_rows(tmp_path / "out")
    assert len(rows) == stats["pairs_kept"] - stats["pairs_empty_dropped"]
    assert "" not in set(rows["query"]) | set(rows["response"])
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out" / "tokenizer")
    assert len(tokenizer) == 4 + stats["words_kept"] - 1  # the empty "word" is no token


def _split_conversations(output: Path) -> dict[str, list[int]]:
    dataset = load_from_disk(str(output / "dataset"))
    return {name: sorted(set(split["conversation_id"])) for name, split in dataset.items()}


def test_split_is_deterministic_and_by_conversation(random_corpus, tmp_path):
    first = build_dataset(random_corpus, tmp_path / "a", validation_size=0.2, test_size=0.2, seed=7)
    again = build_dataset(random_corpus, tmp_path / "b", validation_size=0.2, test_size=0.2, seed=7)
    other = build_dataset(random_corpus, tmp_path / "c", validation_size=0.2, test_size=0.2, seed=8)
    assert first.pop("build_id") != again.pop("build_id")  # each build has its own id, the rest is the same
    assert first == again
    assert load_from_disk(str(tmp_path / "a" / "dataset"))["test"].to_dict() == (
        load_from_disk(str(tmp_path / "b" / "dataset"))["test"].to_dict()
    )
    splits = _split_conversations(tmp_path / "a")
    assert splits == _split_conversations(tmp_path / "b")
    assert splits != _split_conversations(tmp_path / "c")
    assert other["pairs_kept"] == first["pairs_kept"]
    names = list(splits)
    for index, name in enumerate(names):
        for later in names[index + 1 :]:
            assert not set(splits[name]) & set(splits[later])


def _rows(output: Path, split: str) -> list[dict]:
    return load_from_disk(str(output / "dataset"))[split].to_list()


def _unknown_ids(row: dict) -> int:
    return (row["input_ids"] + row["labels"]).count(3)  # <unk>


# Too long for the tutorial's filter: known words only, and one word ("zork") never seen in a short pair.
LONG_UTTERANCES = [
    "Where are you, my friend? I am in a hospital, are you?",
    "Where are you my friend Zork? I am in a hospital.",
]


def test_looser_training_filter_adds_train_pairs_only(tmp_path):
    random_corpus = write_random_corpus(tmp_path / "corpus", utterances=UTTERANCES + LONG_UTTERANCES)
    plain = build_dataset(random_corpus, tmp_path / "plain", min_count=4)
    looser = build_dataset(random_corpus, tmp_path / "looser", min_count=4, train_max_length=20, train_max_unknown=1)
    for split in ("validation", "test"):  # the tutorial's held-out pairs, whatever the training filter
        assert _rows(tmp_path / "looser", split) == _rows(tmp_path / "plain", split)
    assert (tmp_path / "looser" / "tokenizer" / "tokenizer.json").read_text() == (
        tmp_path / "plain" / "tokenizer" / "tokenizer.json"
    ).read_text()
    train, plain_train = _rows(tmp_path / "looser", "train"), _rows(tmp_path / "plain", "train")
    assert train[: len(plain_train)] == plain_train
    extra = train[len(plain_train) :]
    assert looser["train_extra_pairs"] == len(extra) > 0 and looser["train_pairs"] == len(train)
    assert any(len(row["query"].split()) >= 10 or len(row["response"].split()) >= 10 for row in extra)
    assert any(_unknown_ids(row) == 1 for row in extra)
    assert all(len(row["query"].split()) < 20 and len(row["response"].split()) < 20 for row in extra)
    assert all(_unknown_ids(row) <= 1 and row["query"] and row["response"] for row in extra)
    held_out = {row["conversation_id"] for split in ("validation", "test") for row in _rows(tmp_path / "plain", split)}
    assert not {row["conversation_id"] for row in extra} & held_out
    assert {key: looser[key] for key in TUTORIAL_KEYS} == {key: plain[key] for key in TUTORIAL_KEYS}
    assert (looser["train_max_length"], looser["train_max_unknown"]) == (20, 1)
    assert (plain["train_max_length"], plain["train_max_unknown"], "train_extra_pairs" in plain) == (10, 0, False)
    assert AutoTokenizer.from_pretrained(tmp_path / "looser" / "tokenizer").model_max_length == 20
    assert "looser filter" in build_module._extension_text(looser) and build_module._extension_text(plain) == ""


@needs_sample
def test_sample_counts_with_the_default_recipes_training_filter(tmp_path):
    stats = build_dataset(SAMPLE_DIR, tmp_path / "out", train_max_length=40, train_max_unknown=3)
    assert {key: stats[key] for key in SAMPLE_COUNTS} == SAMPLE_COUNTS
    assert (stats["train_pairs"], stats["train_extra_pairs"], stats["test_pairs"]) == (13_680, 10_495, 175)


def test_failed_build_leaves_the_output_alone(random_corpus, tmp_path):
    output = tmp_path / "out"
    build_dataset(random_corpus, output)
    (output / "raw").mkdir()
    (output / "raw" / "keep.txt").write_text("not ours")
    before = {path: path.read_bytes() for path in output.rglob("*") if path.is_file()}
    broken = write_random_corpus(tmp_path / "broken")
    (broken / "movie_lines.txt").write_bytes(b"\x00\x01binary")
    with pytest.raises(build_module.CorpusFormatError):
        build_dataset(broken, output)
    assert {path: path.read_bytes() for path in output.rglob("*") if path.is_file()} == before
    # A good build replaces the outputs and still leaves the rest alone, with no temporary folder behind.
    build_dataset(random_corpus, output, seed=3)
    assert json.loads((output / "stats.json").read_text())["seed"] == 3
    assert sorted(p.name for p in output.iterdir()) == [".luong-chatbot", "dataset", "raw", "stats.json", "tokenizer"]
    with pytest.raises(build_module.CorpusFormatError):
        build_dataset(tmp_path / "missing", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_missing_corpus_dir_downloads_into_the_cache(random_corpus, tmp_path, monkeypatch):
    calls = []

    def fake_download(dest):
        calls.append(Path(dest))
        return random_corpus

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(build_module, "download_corpus", fake_download)
    assert main(["--output-dir", str(tmp_path / "out")]) == 0
    assert calls == [tmp_path / "cache" / "luong-chatbot"]


def _binary_corpus(tmp_path):
    corpus = write_random_corpus(tmp_path / "corpus")
    (corpus / "movie_conversations.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00")
    return ["--corpus-dir", str(corpus)]


def _unknown_id_corpus(tmp_path):
    corpus = write_random_corpus(tmp_path / "corpus")
    with open(corpus / "movie_conversations.txt", "a", encoding="iso-8859-1") as handle:
        handle.write(f"u0{SEP}u1{SEP}m0{SEP}['L1', 'L999999']\n")
    return ["--corpus-dir", str(corpus)]


def _bad_zip(tmp_path):
    (tmp_path / "corpus.zip").write_bytes(b"not a zip")
    return ["--corpus-dir", str(tmp_path / "corpus.zip")]


CLI_ERRORS = {
    "missing corpus": (lambda tmp_path: ["--corpus-dir", str(tmp_path / "nope")], "expected a corpus folder"),
    "binary file": (_binary_corpus, "movie_conversations.txt, line 1: expected ISO-8859-1 text"),
    "unknown line ID": (_unknown_id_corpus, "unknown line ID 'L999999'"),
    "bad zip": (_bad_zip, "corpus.zip: expected a readable zip archive"),
    "bad fraction": (lambda tmp_path: ["--corpus-dir", ".", "--test-size", "1.5"], "--test-size: expected a fraction"),
    "no validation split": (
        lambda tmp_path: ["--corpus-dir", ".", "--validation-size", "0"],
        "--validation-size: expected a fraction in (0, 1), got 0.0",
    ),
    "a character device": (lambda tmp_path: ["--corpus-dir", "/dev/zero"], "/dev/zero: expected a corpus folder"),
    "train max length below max length": (
        lambda tmp_path: ["--corpus-dir", ".", "--train-max-length", "5"],
        "--train-max-length: expected an integer >= --max-length (10), got 5",
    ),
    "negative unknown words": (
        lambda tmp_path: ["--corpus-dir", ".", "--train-max-unknown", "-1"],
        "--train-max-unknown: expected an integer >= 0, got -1",
    ),
    "bad flag": (lambda tmp_path: ["--corpus-dir", ".", "--max-lenght", "3"], "unrecognized arguments: --max-lenght"),
}


@pytest.mark.parametrize("case", list(CLI_ERRORS), ids=list(CLI_ERRORS))
def test_cli_errors_are_one_line_and_exit_2(case, tmp_path, capsys):
    make_args, expected = CLI_ERRORS[case]
    args = [*make_args(tmp_path), "--output-dir", str(tmp_path / "out")]
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ") and expected in captured.err


def _user_folder(tmp_path: Path) -> tuple[Path, dict[Path, bytes]]:
    """A folder of the user's, with a `dataset/` of their own: what the builder must never delete."""
    output = tmp_path / "mine"
    (output / "dataset").mkdir(parents=True)
    (output / "dataset" / "notes.txt").write_text("my own notes")
    (output / "stats.json").write_text("{}")
    return output, {path: path.read_bytes() for path in output.rglob("*") if path.is_file()}


def test_a_folder_the_package_did_not_create_is_refused_without_the_flag(random_corpus, tmp_path, capsys):
    output, before = _user_folder(tmp_path)
    assert main(["--corpus-dir", str(random_corpus), "--output-dir", str(output)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"error: {output}: this folder holds files that luong-chatbot")
    assert "pass --overwrite-output-dir to write into it anyway" in error
    assert {path: path.read_bytes() for path in output.rglob("*") if path.is_file()} == before
    # With the flag it builds, replacing only the three outputs, and marks the folder as the package's.
    assert main(["--corpus-dir", str(random_corpus), "--output-dir", str(output), "--overwrite-output-dir"]) == 0
    assert (output / ".luong-chatbot").is_file() and not (output / "dataset" / "notes.txt").exists()
    # Later builds need no flag: the folder is the package's now.
    assert main(["--corpus-dir", str(random_corpus), "--output-dir", str(output), "--seed", "4"]) == 0
    assert json.loads((output / "stats.json").read_text())["seed"] == 4


def test_an_output_path_that_is_a_file_is_one_line(random_corpus, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert main(["--corpus-dir", str(random_corpus), "--output-dir", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'file'}: expected an output folder, found a file\n"
    assert (tmp_path / "file").read_text() == "mine"


def test_an_interrupted_commit_is_never_taken_for_a_build(random_corpus, tmp_path, monkeypatch):
    output = tmp_path / "out"
    build_dataset(random_corpus, output)
    assert build_module.check_build(output)["seed"] == 0
    real_replace, moves = os.replace, []

    def replace_then_die(source, target):
        moves.append(Path(target).name)
        if Path(target).name == "old-tokenizer":  # killed between the dataset's move and the tokenizer's
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(build_module.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(random_corpus, output, seed=5)
    monkeypatch.undo()
    assert (output / "dataset").is_dir() and (output / "tokenizer").is_dir()  # a new dataset/, the old tokenizer/
    with pytest.raises(ValueError, match="no readable stats.json: not a complete build"):
        build_module.check_build(output)
    (output / "stats.json").write_text(json.dumps({"build_id": "someone else's"}))
    with pytest.raises(ValueError, match="/dataset: not from the same build as stats.json"):
        build_module.check_build(output)
    build_dataset(random_corpus, output, seed=5)
    assert build_module.check_build(output)["seed"] == 5
    assert not list(output.glob(".build-*"))


def test_stats_record_the_corpus_identity(random_corpus, tmp_path):
    stats = build_dataset(random_corpus, tmp_path / "out")
    lines = (random_corpus / "movie_lines.txt").stat()
    assert stats["corpus"]["path"] == str(random_corpus.resolve())
    assert stats["corpus"]["movie_lines.txt"] == [lines.st_size, lines.st_mtime_ns]


def test_leftovers_of_a_killed_build_go_and_a_failed_build_removes_the_folders_it_made(random_corpus, tmp_path):
    output = tmp_path / "out"
    build_dataset(random_corpus, output)
    (output / ".build-killed").mkdir()  # what a SIGKILLed build leaves
    (output / ".build-killed" / "cache").write_text("half")
    build_dataset(random_corpus, output)
    assert not (output / ".build-killed").exists()
    with pytest.raises(build_module.CorpusFormatError):
        build_dataset(tmp_path / "missing", tmp_path / "new" / "deeper" / "out")
    assert not (tmp_path / "new").exists()


def test_a_second_build_into_a_busy_folder_is_refused(random_corpus, tmp_path, capsys):
    from data_scripts.output_dir import claim_output_dir, output_dir_lock

    output = tmp_path / "out"
    claim_output_dir(output)
    with output_dir_lock(output, "test"):
        assert main(["--corpus-dir", str(random_corpus), "--output-dir", str(output)]) == 2
    assert "another luong-chatbot command is writing into this folder" in capsys.readouterr().err
    assert main(["--corpus-dir", str(random_corpus), "--output-dir", str(output)]) == 0  # free again


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_output_folder_is_one_line(random_corpus, tmp_path, capsys):
    (tmp_path / "ro").mkdir(mode=0o555)
    assert main(["--corpus-dir", str(random_corpus), "--output-dir", str(tmp_path / "ro" / "out")]) == 2
    assert "cannot create this folder (Permission denied)" in capsys.readouterr().err


@pytest.mark.slow
@needs_sample
def test_cli_end_to_end_on_the_sample(tmp_path):
    command = [sys.executable, "-m", "data_scripts.build_dataset", "--corpus-dir", SAMPLE_DIR]
    result = subprocess.run(
        [*command, "--output-dir", str(tmp_path / "out"), "--num-proc", "2"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert {key: stats[key] for key in SAMPLE_COUNTS} == SAMPLE_COUNTS
    assert json.loads((tmp_path / "out" / "stats.json").read_text()) == stats
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [".luong-chatbot", "dataset", "stats.json", "tokenizer"]


@pytest.mark.slow
def test_cli_error_in_a_real_process_is_one_line(tmp_path):
    (tmp_path / "corpus.zip").write_bytes(b"PK\x03\x04 broken")
    command = [sys.executable, "-m", "data_scripts.build_dataset", "--corpus-dir", str(tmp_path / "corpus.zip")]
    result = subprocess.run(
        [*command, "--output-dir", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
@needs_sample
def test_benchmark_quick_mode_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "bench/bench_data.py", "--quick", "--sample-dir", SAMPLE_DIR],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for name in ("sample", "synthetic"):
        figures = report["results"][name]
        assert figures["counts_match"]
        for side in ("ours", "tutorial"):
            assert (
                figures[side]["wall_s"] > 0 and figures[side]["peak_rss_mb"] > 0 and figures[side]["peak_pss_mb"] > 0
            )


REPO_ID = "someone/cornell-pairs"


class MockHub:
    """The Hub endpoints that `DatasetDict.push_to_hub`, `DatasetCard.load` and `DatasetCard.push_to_hub` use."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.lfs: dict[str, bytes] = {}  # uploaded LFS objects by sha256
        self.commits: list[dict] = []
        self.created = False
        self.unhandled: list[str] = []

    def handle(self, request):
        import httpx2

        path, method = request.url.path, request.method
        prefix = f"/api/datasets/{REPO_ID}"
        if method == "POST" and path == "/api/repos/create":
            self.created = True
            return httpx2.Response(200, json={"url": f"https://huggingface.co/datasets/{REPO_ID}"})
        if method == "GET" and path in (prefix, f"{prefix}/revision/main") or path.startswith(f"{prefix}/revision/"):
            if not self.created:
                return httpx2.Response(404, headers={"X-Error-Code": "RepoNotFound"})
            siblings = [{"rfilename": name} for name in sorted(self.files)]
            return httpx2.Response(200, json={"id": REPO_ID, "sha": self._sha(), "siblings": siblings})
        if method == "POST" and path.startswith(f"{prefix}/preupload/"):
            files = json.loads(request.content)["files"]
            modes = [{"path": f["path"], "uploadMode": self.mode(f["path"]), "shouldIgnore": False} for f in files]
            return httpx2.Response(200, json={"files": modes})
        if method == "POST" and path == f"/datasets/{REPO_ID}.git/info/lfs/objects/batch":
            objects = json.loads(request.content)["objects"]
            for item in objects:
                item["actions"] = {"upload": {"href": f"https://huggingface.co/mock-lfs/{item['oid']}"}}
            return httpx2.Response(200, json={"objects": objects, "transfer": "basic"})
        if method == "PUT" and path.startswith("/mock-lfs/"):
            self.lfs[path.rsplit("/", 1)[1]] = request.read()
            return httpx2.Response(200)
        if method == "POST" and path.startswith(f"{prefix}/commit/"):
            return self.commit(request.content)
        if method == "POST" and path.startswith(f"{prefix}/paths-info/"):
            paths = parse_qs(request.content.decode())["paths"]
            return httpx2.Response(200, json=[entry for p in paths for entry in self.entries(p, exact=True)])
        if method == "GET" and path.startswith(f"{prefix}/tree/"):
            folder = unquote(path.split("/tree/", 1)[1]).partition("/")[2]
            entries = self.entries(folder, exact=False)
            if folder and not entries:
                return httpx2.Response(404, headers={"X-Error-Code": "EntryNotFound"})
            return httpx2.Response(200, json=entries)
        if method == "GET" and path == "/api/agent-harnesses":  # best-effort telemetry of huggingface_hub
            return httpx2.Response(404)
        if method == "POST" and path == "/api/validate-yaml":
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if method in ("HEAD", "GET") and path.startswith(f"/datasets/{REPO_ID}/resolve/"):
            return self.resolve(method, path.split("/resolve/", 1)[1].split("/", 1)[1])
        self.unhandled.append(f"{method} {request.url}")
        return httpx2.Response(404, headers={"X-Error-Code": "EntryNotFound"}, json={"error": "not mocked"})

    def entries(self, path: str, exact: bool) -> list[dict]:
        """paths-info (`exact`: the path itself) or tree (the folder's children) entries of the stored files."""
        found = {}
        for name, content in self.files.items():
            if exact and name == path:
                found[name] = {"type": "file", "path": name, "size": len(content), "oid": "0" * 40}
            elif name.startswith(f"{path}/" if path else ""):
                rest = name[len(path) + 1 if path else 0 :]
                child = f"{path}/{rest.split('/')[0]}" if path else rest.split("/")[0]
                if exact:
                    found[path] = {"type": "directory", "path": path, "oid": "0" * 40}
                elif "/" in rest:
                    found[child] = {"type": "directory", "path": child, "oid": "0" * 40}
                else:
                    found[child] = {"type": "file", "path": child, "size": len(content), "oid": "0" * 40}
        return list(found.values())

    @staticmethod
    def mode(path: str) -> str:
        return "lfs" if path.endswith(".parquet") else "regular"  # binary files go through LFS on the Hub

    def _sha(self) -> str:
        return f"{len(self.commits):040x}"

    def commit(self, payload: bytes):
        import httpx2

        summary, added = read_commit(payload, self.lfs)
        self.files.update(added)
        self.commits.append({"message": summary, "files": sorted(added)})
        url = f"https://huggingface.co/datasets/{REPO_ID}/commit/{self._sha()}"
        return httpx2.Response(200, json={"commitUrl": url, "commitOid": self._sha()})

    def resolve(self, method: str, filename: str):
        import httpx2

        if filename not in self.files:
            return httpx2.Response(404, headers={"X-Error-Code": "EntryNotFound"})
        return file_response(method, self.files[filename], self._sha())


def drive_push(corpus: str, output: str, report: str) -> None:
    """Runs in a clean subprocess: the CLI with --push-to-hub against the mock Hub, then a report."""
    import httpx2
    import huggingface_hub

    hub = MockHub()
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub.handle)))
    code = main(["--corpus-dir", corpus, "--output-dir", output, "--push-to-hub", REPO_ID])
    readme = hub.files.get("README.md", b"").decode()
    Path(report).write_text(
        json.dumps({"exit_code": code, "commits": hub.commits, "readme": readme, "unhandled": hub.unhandled})
    )


@pytest.mark.slow
def test_push_to_hub_uploads_the_splits_and_a_card(random_corpus, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "HUGGINGFACE"))}
    # hf_xet uploads from Rust, past the Python HTTP client: the mock speaks the plain LFS protocol instead.
    env.update(HF_TOKEN="hf_dummy", HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_XET="1", PYTHONPATH=str(REPO_ROOT))
    report = tmp_path / "report.json"
    args = [str(random_corpus), str(tmp_path / "out"), str(report)]
    result = subprocess.run(
        [sys.executable, __file__, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    pushed = json.loads(report.read_text())
    assert pushed["exit_code"] == 0 and pushed["unhandled"] == []
    data_files = sorted(f for commit in pushed["commits"] for f in commit["files"] if f.endswith(".parquet"))
    assert [f.split("/")[1].split("-")[0] for f in data_files] == ["test", "train", "validation"]
    assert pushed["commits"][-1]["files"] == ["README.md"]
    readme = pushed["readme"]
    assert "# Cornell Movie-Dialogs pairs" in readme and "pairs kept" in readme
    for metadata in ("dataset_info:", "configs:", "pretty_name:", "task_categories:", "- text-generation"):
        assert metadata in readme


if __name__ == "__main__":
    drive_push(*sys.argv[1:])
