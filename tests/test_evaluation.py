"""Tests of evaluation.py: the metrics on hand-made replies, and `python -m chat evaluate` on the sample corpus."""

import json
import math
import os
from pathlib import Path

import pytest

from luong_chatbot import chat, evaluation, inference

SAMPLE_DIR = os.environ.get("CORNELL_SAMPLE_DIR")
needs_sample = pytest.mark.skipif(not SAMPLE_DIR, reason="CORNELL_SAMPLE_DIR is not set")


def test_distinct_n_counts_unique_ngrams_over_all_replies():
    replies = ["i m fine .", "i m fine .", "no ."]
    assert evaluation.distinct_n(replies, 1) == pytest.approx(5 / 10)  # i m fine . no over 10 words
    assert evaluation.distinct_n(replies, 2) == pytest.approx(4 / 7)  # "i m", "m fine", "fine .", "no ."
    assert evaluation.distinct_n(["", "yes"], 2) == 0.0


def test_generation_metrics_bleu_is_100_for_exact_replies_and_lengths_are_words():
    metrics = evaluation.generation_metrics(
        ["i m fine .", "you re in a hospital ."], ["i m fine .", "you re in a hospital ."]
    )
    assert metrics["bleu"] == pytest.approx(100.0)
    assert metrics["avg_reply_length"] == pytest.approx(5.0)
    assert evaluation.generation_metrics(["no ."], ["i m a lawyer ."])["bleu"] < 100.0


@pytest.fixture(scope="module")
def sample_model(tmp_path_factory) -> tuple[Path, Path]:
    """The sample corpus built into a dataset, and an untrained hidden-size-8 model over its vocabulary."""
    import torch
    from transformers import AutoTokenizer

    from data_scripts.build_dataset import build_dataset
    from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration

    root = tmp_path_factory.mktemp("evaluate")
    build_dataset(SAMPLE_DIR, root / "data")
    tokenizer = AutoTokenizer.from_pretrained(root / "data" / "tokenizer")
    torch.manual_seed(0)
    config = LuongGruConfig(vocab_size=len(tokenizer), hidden_size=8, encoder_layers=1, decoder_layers=1)
    LuongGruForConditionalGeneration(config).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root / "model", root / "data"


@pytest.mark.slow
@needs_sample
def test_evaluate_on_the_sample_writes_all_metrics(sample_model, tmp_path, capsys):
    model_dir, dataset_dir = sample_model
    output = tmp_path / "out" / "eval.json"
    argv = ["evaluate", str(model_dir), "--dataset-dir", str(dataset_dir), "--max-examples", "40"]
    code = chat.main([*argv, "--batch-size", "16", "--output", str(output)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(output.read_text()) == printed
    assert printed["split"] == "test" and printed["pairs"] == 40
    assert printed["loss"] > 0 and printed["perplexity"] == pytest.approx(math.exp(printed["loss"]))
    # An untrained model is close to uniform over the vocabulary.
    assert (
        0.2 * printed["perplexity"]
        < printed["perplexity"]
        < 5 * len(inference.load_model_and_tokenizer(str(model_dir))[1])
    )
    assert 0.0 <= printed["token_accuracy"] <= 1.0 and printed["tokens"] > 40
    assert 0.0 <= printed["bleu"] <= 100.0 and "tok:13a" in printed["bleu_signature"]
    assert 0.0 <= printed["distinct_1"] <= 1.0 and 0.0 <= printed["distinct_2"] <= 1.0
    assert 0.0 <= printed["avg_reply_length"] <= inference.DEFAULT_MAX_NEW_TOKENS
    assert [item["prompt"] for item in printed["tutorial_prompts"]] == inference.TUTORIAL_PROMPTS
    assert all(isinstance(item["reply"], str) for item in printed["tutorial_prompts"])


@pytest.mark.slow
@needs_sample
def test_evaluate_with_beam_search_on_validation(sample_model, capsys):
    model_dir, dataset_dir = sample_model
    argv = [str(model_dir), "--dataset-dir", str(dataset_dir), "--split", "validation", "--max-examples", "8"]
    assert evaluation.main([*argv, "--num-beams", "3", "--no-repeat-ngram-size", "2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["split"] == "validation" and printed["decoding"]["num_beams"] == 3


@pytest.mark.slow
@needs_sample
def test_evaluate_bad_inputs_are_one_line_and_exit_2(sample_model, tmp_path, capsys):
    model_dir, dataset_dir = sample_model
    cases = [
        [str(model_dir), "--dataset-dir", str(tmp_path / "missing")],
        [str(model_dir), "--dataset-dir", str(dataset_dir), "--split", "dev"],
        [str(tmp_path / "no-model"), "--dataset-dir", str(dataset_dir)],
    ]
    for argv in cases:
        assert evaluation.main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1


def test_bland_share_counts_whole_replies_in_the_fixed_list():
    replies = ["i don t know .", "what ?", "i don t know where he is .", "no .", ""]
    assert evaluation.bland_share(replies) == pytest.approx(4 / 5)  # the longer reply is not bland; "" is
    assert evaluation.bland_share([]) == 0.0
    assert evaluation.generation_metrics(["no ."], ["yes ."])["bland_share"] == 1.0


def test_bland_share_counts_a_bland_reply_whatever_its_closing_punctuation_run():
    replies = ["yeah . . .", "what ? ?", "i don t know . . .", "no . you go .", "yeah . . . sure ."]
    assert evaluation.bland_share(replies) == pytest.approx(3 / 5)  # a mark inside the reply is not a closing run
    assert evaluation.bland_key(". . .") == "."
