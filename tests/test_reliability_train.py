"""train.py against careless and hostile input: user folders, bad values, broken builds and checkpoints, two runs."""

import json
import logging
import os
import shutil
import stat
from pathlib import Path

import datasets
import pytest
from datasets import DatasetDict, load_from_disk
from train_helpers import REPO_ROOT, run_python, subprocess_env, tiny_run_flags, write_tiny_corpus

from data_scripts.build_dataset import build_dataset
from data_scripts.output_dir import claim_output_dir, output_dir_lock
from luong_chatbot import training as train

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained_run(tiny_dataset, tmp_path_factory) -> Path:
    """A finished 4-step run with checkpoint-2 and checkpoint-4."""
    output = tmp_path_factory.mktemp("run") / "out"
    assert train.main(tiny_run_flags(tiny_dataset, output)) == 0
    return output


def run_main(argv: list[str], capsys) -> tuple[int, str]:
    code = train.main([str(arg) for arg in argv])
    return code, capsys.readouterr().err


def assert_one_line(code: int, error: str, *expected: str) -> None:
    assert code == 2, error
    assert error.startswith("train.py: error: ") and error.count("\n") == 1, error
    for text in expected:
        assert text in error, error


def files_of(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


# --- item 1: the user's files ----------------------------------------------------------------------------------------
def test_a_users_folder_is_refused_and_left_untouched(tiny_dataset, tmp_path, capsys):
    output = tmp_path / "mine"
    (output / "data" / "dataset").mkdir(parents=True)
    for name in ("README.md", "config.json", "eval_results.json", "data/dataset/part.arrow"):
        (output / name).write_text(f"the user's {name}")
    before = files_of(output)
    code, error = run_main(tiny_run_flags(tiny_dataset, output), capsys)
    assert_one_line(code, error, f"{output}: this folder holds files that luong-chatbot did not write")
    assert "pass --overwrite_output_dir to write into it anyway" in error
    assert files_of(output) == before
    # The same with --corpus-dir, which would build into OUTPUT_DIR/data.
    corpus = write_tiny_corpus(tmp_path / "corpus")
    code, error = run_main([*tiny_run_flags(None, output), "--corpus-dir", corpus], capsys)
    assert_one_line(code, error, "did not write")
    assert files_of(output) == before


@pytest.mark.parametrize("flag", ["--overwrite_output_dir", "--overwrite-output-dir", "--overwrite_output_dir=true"])
def test_the_overwrite_flag_takes_both_spellings(flag):
    *_, args = train.parse_args(["--output-dir", "o", flag])
    assert args.overwrite_output_dir is True
    *_, args = train.parse_args(["--output-dir", "o"])
    assert args.overwrite_output_dir is False


def test_with_the_flag_a_users_folder_is_written_into(tiny_dataset, tmp_path, capsys):
    output = tmp_path / "mine"
    output.mkdir()
    (output / "notes.txt").write_text("kept")
    code, _ = run_main([*tiny_run_flags(tiny_dataset, output, max_steps=2), "--overwrite-output-dir"], capsys)
    assert code == 0
    assert (output / "notes.txt").read_text() == "kept" and (output / "model.safetensors").is_file()
    # The folder is the package's now: a second run needs no flag.
    assert run_main(tiny_run_flags(tiny_dataset, output, max_steps=2), capsys)[0] == 0


# --- item 5: bad values, paths and datasets --------------------------------------------------------------------------
BAD_VALUES = [
    (["--learning_rate", "-1"], "--learning_rate: expected a positive number, got -1.0"),
    (["--learning_rate", "nan"], "--learning_rate: expected a positive number, got nan"),
    (["--hidden_size", "0"], "hidden_size must be a positive integer, got 0"),
    (["--encoder_layers", "0", "--decoder_layers", "0"], "encoder_layers must be a positive integer, got 0"),
    (["--dropout", "1.5"], "dropout must be in [0, 1), got 1.5"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size: expected an integer >= 1, got 0"),
    (["--encoder_layers", "2", "--decoder_layers", "1"], "decoder_layers (1) must equal encoder_layers (2)"),
]


@pytest.mark.parametrize("flags, message", BAD_VALUES, ids=[" ".join(flags) for flags, _ in BAD_VALUES])
def test_bad_training_values_are_one_line(flags, message, tiny_dataset, tmp_path, capsys):
    code, error = run_main([*tiny_run_flags(tiny_dataset, tmp_path / "out"), *flags], capsys)
    assert_one_line(code, error, message)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_an_output_dir_that_is_a_file_is_one_line(tiny_dataset, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    code, error = run_main(tiny_run_flags(tiny_dataset, tmp_path / "file"), capsys)
    assert_one_line(code, error, f"{tmp_path / 'file'}: expected an output folder, found a file")
    assert (tmp_path / "file").read_text() == "mine"


def _rebuilt_dataset(tiny_dataset: Path, target: Path, change) -> Path:
    """A copy of the tiny build whose DatasetDict went through `change` (ids and stats kept, as one build)."""
    shutil.copytree(tiny_dataset, target)
    dataset = change(load_from_disk(str(tiny_dataset / "dataset")))
    shutil.rmtree(target / "dataset")
    datasets.disable_progress_bars()  # its bars would reach the stderr the tests read
    dataset.save_to_disk(str(target / "dataset"))
    datasets.enable_progress_bars()
    shutil.copy(tiny_dataset / "dataset" / ".build-id", target / "dataset" / ".build-id")
    return target


def test_a_dataset_without_labels_is_one_line(tiny_dataset, tmp_path, capsys):
    built = _rebuilt_dataset(tiny_dataset, tmp_path / "built", lambda d: d.remove_columns("labels"))
    code, error = run_main(tiny_run_flags(built, tmp_path / "out"), capsys)
    assert_one_line(code, error, f"{built}/dataset: the train split has no labels column")


def test_an_empty_validation_split_is_one_line(tiny_dataset, tmp_path, capsys):
    def empty_validation(dataset):
        return DatasetDict({**dataset, "validation": dataset["validation"].select([])})

    built = _rebuilt_dataset(tiny_dataset, tmp_path / "built", empty_validation)
    code, error = run_main(tiny_run_flags(built, tmp_path / "out"), capsys)
    assert_one_line(code, error, "not a dataset built by data_scripts.build_dataset (a split with no rows)")


def test_an_unwritable_output_dir_fails_before_training(tiny_dataset, tmp_path, capsys):
    # /proc refuses new files and folders even to root (a chmod-ed folder would not stop root).
    code, error = run_main(tiny_run_flags(tiny_dataset, "/proc/self/luong-out"), capsys)
    assert_one_line(code, error, "/proc/self/luong-out: cannot create this folder")
    code, error = run_main([*tiny_run_flags(tiny_dataset, "/proc/self"), "--overwrite_output_dir"], capsys)
    assert_one_line(code, error, "/proc/self: cannot write into this folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_output_dir_fails_before_training(tiny_dataset, tmp_path, capsys):
    output = tmp_path / "ro"
    output.mkdir()
    output.chmod(0o555)
    code, error = run_main(tiny_run_flags(tiny_dataset, output), capsys)
    assert_one_line(code, error, f"{output}: cannot write into this folder (Permission denied)")


# --- items 3 and 4: build reuse, broken builds -----------------------------------------------------------------------
def test_a_build_is_reused_only_for_the_same_corpus_files_and_arguments(tmp_path, caplog):
    corpus = write_tiny_corpus(tmp_path / "a")
    other = write_tiny_corpus(tmp_path / "b", conversations=40, seed=1)
    args = train.LuongGruTrainingArguments(output_dir=str(tmp_path / "out"))

    def prepare(corpus_dir: Path, **data) -> dict:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="train"):
            built = train.prepare_dataset_dir(train.DataArguments(corpus_dir=str(corpus_dir), **data), args)
        return json.loads(Path(built, "stats.json").read_text()), " ".join(r.getMessage() for r in caplog.records)

    first, log = prepare(corpus)
    assert "Built the dataset" in log
    again, log = prepare(corpus)
    assert again["build_id"] == first["build_id"]
    assert f"Reusing the dataset built in {tmp_path / 'out' / 'data'} from {corpus.resolve()}" in log
    for changed, data in ((other, {}), (corpus, {"min_count": 1})):
        stats, log = prepare(changed, **data)
        assert "Built the dataset" in log and stats["build_id"] != first["build_id"]
    before, _ = prepare(corpus)
    with open(corpus / "movie_lines.txt", "a", encoding="iso-8859-1") as handle:  # the same corpus, edited
        handle.write("L9999 +++$+++ u0 +++$+++ m0 +++$+++ NAME +++$+++ Hello.\n")
    stats, log = prepare(corpus)
    assert "Built the dataset" in log and stats["build_id"] != before["build_id"]


def test_a_mixed_build_is_refused_in_one_line(tiny_dataset, tmp_path, capsys):
    built = tmp_path / "built"
    shutil.copytree(tiny_dataset, built)
    (built / "stats.json").unlink()  # what an interrupted commit leaves
    code, error = run_main(tiny_run_flags(built, tmp_path / "out"), capsys)
    assert_one_line(code, error, "no readable stats.json: not a complete build")
    # A tokenizer smaller than the dataset's ids (the pieces of two builds, ids forged to match).
    small = tmp_path / "small"
    build_dataset(write_tiny_corpus(tmp_path / "c", conversations=3), small, min_count=1, validation_size=0.3)
    shutil.copytree(tiny_dataset, tmp_path / "mixed")
    shutil.rmtree(tmp_path / "mixed" / "tokenizer")
    shutil.copytree(small / "tokenizer", tmp_path / "mixed" / "tokenizer")
    shutil.copy(tiny_dataset / "tokenizer" / ".build-id", tmp_path / "mixed" / "tokenizer" / ".build-id")
    code, error = run_main(tiny_run_flags(tmp_path / "mixed", tmp_path / "out2"), capsys)
    assert_one_line(code, error, "but the tokenizer has only", "dataset/ and tokenizer/ are not from the same build")


# --- item 6: resume --------------------------------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage",
    ["model.safetensors", "optimizer.pt", "rng_state.pth", "trainer_state.json is a list"],
)
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(trained_run, tmp_path, caplog, damage):
    output = tmp_path / "run"
    shutil.copytree(trained_run, output)
    if damage.startswith("trainer_state.json"):
        (output / "checkpoint-4" / "trainer_state.json").write_text("[]")
    else:
        _truncate(output / "checkpoint-4" / damage)
    with caplog.at_level(logging.WARNING, logger="train"):
        assert train.resolve_checkpoint("True", str(output)) == str(output / "checkpoint-2")
    assert "Skipping" in caplog.text and "checkpoint-4" in caplog.text
    with pytest.raises(train.UsageError, match="not a complete checkpoint"):
        train.resolve_checkpoint(str(output / "checkpoint-4"), str(output))


def test_resuming_with_other_model_arguments_names_them(trained_run, tiny_dataset, tmp_path, capsys):
    output = tmp_path / "run"
    shutil.copytree(trained_run, output)
    flags = tiny_run_flags(tiny_dataset, output, max_steps=6)
    changed = ["--hidden_size", "32", "--attention_type", "general", "--resume_from_checkpoint", "True"]
    code, error = run_main([*flags, *changed], capsys)
    assert_one_line(code, error, "cannot resume with other model arguments than the checkpoint's")
    assert "--hidden_size 32 (checkpoint: 16)" in error and "--attention_type general (checkpoint: dot)" in error


# --- items 11 and 12: file modes, two runs ---------------------------------------------------------------------------
def test_saved_files_get_the_usual_mode(trained_run):
    mode = 0o666 & ~_umask()
    for path in [trained_run / "model.safetensors", *trained_run.glob("checkpoint-*/model.safetensors")]:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_a_second_run_on_a_busy_output_dir_is_refused(tiny_dataset, tmp_path, capsys):
    output = tmp_path / "out"
    claim_output_dir(output)
    with output_dir_lock(output, "train.py"):  # the first run, still training
        code, error = run_main(tiny_run_flags(tiny_dataset, output), capsys)
    assert_one_line(code, error, f"{output}: another luong-chatbot command is writing into this folder")
    assert not (output / "config.json").exists()


@pytest.mark.slow
def test_two_real_runs_on_one_output_dir(tiny_dataset, tmp_path):
    """A real second process while the first trains: refused in one line, the first finishes untouched."""
    import subprocess
    import sys
    import time

    output = tmp_path / "out"
    # Long enough that the second process (about 7 s of imports) meets the first still training.
    flags = tiny_run_flags(tiny_dataset, output, max_steps=3000, save_steps=1500, eval_steps=1500)
    first = subprocess.Popen(
        [sys.executable, "train.py", *flags],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (output / ".luong-chatbot").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        second = run_python(["train.py", *tiny_run_flags(tiny_dataset, output, max_steps=2)])
        assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
        assert "another luong-chatbot command is writing into this folder" in second.stderr
        assert first.poll() is None, "the first run ended before the second was checked: the test proved nothing"
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        first.kill()
        first.wait()
    assert json.loads((output / "eval_results.json").read_text())["step"] == 3000


def test_bad_input_in_a_real_process_is_one_line_without_traceback(tiny_dataset, tmp_path):
    output = tmp_path / "mine"
    output.mkdir()
    (output / "README.md").write_text("mine")
    for flags in (
        tiny_run_flags(tiny_dataset, output),
        tiny_run_flags(tiny_dataset, tmp_path / "o", learning_rate="nan"),
    ):
        result = run_python(["train.py", *flags], timeout=120)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("train.py: error: ") and "Traceback" not in result.stderr
    assert (output / "README.md").read_text() == "mine"


def test_a_run_keeps_its_marker_and_a_refused_one_leaves_no_folder(trained_run, tmp_path, capsys):
    assert (trained_run / ".luong-chatbot").is_file()  # so that the next run in it needs no flag
    output = tmp_path / "new" / "run"
    code, error = run_main(tiny_run_flags(tmp_path / "no-such-dataset", output), capsys)
    assert_one_line(code, error, "not a dataset built by data_scripts.build_dataset")
    assert not (tmp_path / "new").exists()
