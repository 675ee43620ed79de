"""`luong-evaluate` against bad input: its --output checked first, empty splits, other vocabularies, mixed builds."""

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from train_helpers import write_tiny_corpus

from data_scripts.build_dataset import build_dataset
from luong_chatbot import evaluation


def save_model_for(tokenizer_dir: Path, target: Path) -> Path:
    """An untrained hidden-size-8 model over the tokenizer in `tokenizer_dir`, saved with it into `target`."""
    import torch
    from transformers import AutoTokenizer

    from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = LuongGruConfig(vocab_size=len(tokenizer), hidden_size=8, encoder_layers=1, decoder_layers=1)
    LuongGruForConditionalGeneration(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    build_dataset(write_tiny_corpus(root / "corpus"), root / "data", test_size=0.2)
    return save_model_for(root / "data" / "tokenizer", root / "model"), root / "data"


def run_main(argv: list, capsys) -> tuple[int, str, str]:
    code = evaluation.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(code: int, out: str, err: str, *expected: str) -> None:
    assert code == 2, err
    assert out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err


def test_output_is_checked_before_the_evaluation(tiny, tmp_path, capsys, monkeypatch):
    model, data = tiny

    def never(*args, **kwargs):
        raise AssertionError("the evaluation ran before --output was checked")

    monkeypatch.setattr(evaluation, "evaluate", never)
    (tmp_path / "folder").mkdir()
    assert_one_line(
        *run_main([model, "--dataset-dir", data, "--output", tmp_path / "folder"], capsys), "found a folder"
    )
    assert_one_line(
        *run_main([model, "--dataset-dir", data, "--output", "/proc/self/results.json"], capsys), "cannot write there"
    )
    (tmp_path / "notes.json").write_text('{"mine": true}')
    code, out, err = run_main([model, "--dataset-dir", data, "--output", tmp_path / "notes.json"], capsys)
    assert_one_line(code, out, err, "the file exists and is not an evaluation result; pass --overwrite-output")
    assert (tmp_path / "notes.json").read_text() == '{"mine": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "notes.json"]  # no tmp*.tmp left


def test_results_replace_only_earlier_results_and_get_the_usual_mode(tiny, tmp_path, capsys):
    model, data = tiny
    output = tmp_path / "deep" / "eval.json"
    argv = [model, "--dataset-dir", data, "--output", output, "--max-examples", "4", "--batch-size", "4"]
    assert run_main(argv, capsys)[0] == 0
    assert json.loads(output.read_text())["pairs"] == 4
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(output.stat().st_mode) == 0o666 & ~umask
    assert run_main(argv, capsys)[0] == 0  # an earlier result is replaced without a flag
    (tmp_path / "mine.json").write_text("my notes")
    argv[4] = tmp_path / "mine.json"
    assert run_main([*argv, "--overwrite-output"], capsys)[0] == 0
    assert json.loads((tmp_path / "mine.json").read_text())["split"] == "test"
    assert not list(tmp_path.rglob("*.tmp"))


def test_empty_and_missing_splits_are_one_line(tiny, tmp_path, capsys):
    model, data = tiny
    no_test = tmp_path / "no-test"
    build_dataset(write_tiny_corpus(tmp_path / "corpus"), no_test, test_size=0)
    assert_one_line(*run_main([model, "--dataset-dir", no_test], capsys), "no split 'test'; it has train, validation")
    # A DatasetDict saved with an empty split (by hand, or by an older builder) cannot even be loaded.
    from datasets import DatasetDict, disable_progress_bars, load_from_disk

    disable_progress_bars()
    empty = tmp_path / "empty"
    shutil.copytree(data, empty)
    dataset = load_from_disk(str(data / "dataset"))
    shutil.rmtree(empty / "dataset")
    DatasetDict({**dataset, "test": dataset["test"].select([])}).save_to_disk(str(empty / "dataset"))
    shutil.copy(data / "dataset" / ".build-id", empty / "dataset" / ".build-id")
    assert_one_line(*run_main([model, "--dataset-dir", empty], capsys), "a split is empty")


def test_a_dataset_with_a_bigger_vocabulary_is_one_line(tiny, tmp_path, capsys):
    _, data = tiny
    small = tmp_path / "small"
    build_dataset(write_tiny_corpus(tmp_path / "corpus", conversations=3), small, min_count=1, validation_size=0.3)
    model = save_model_for(small / "tokenizer", tmp_path / "small-model")
    code, out, err = run_main([model, "--dataset-dir", data], capsys)
    assert_one_line(code, out, err, "but the model has only", "built with another vocabulary than the model's")


def test_a_mixed_build_is_one_line(tiny, tmp_path, capsys):
    model, data = tiny
    mixed = tmp_path / "mixed"
    shutil.copytree(data, mixed)
    (mixed / "stats.json").unlink()
    assert_one_line(*run_main([model, "--dataset-dir", mixed], capsys), "not a complete build")
