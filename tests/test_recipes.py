"""Tests of the recipes: recipe files and flag overrides, early stopping to the best checkpoint, the tied lm_head,
label smoothing, the saved decoding defaults used by chat.py, and bench/bench_quality.py --quick."""

import dataclasses
import io
import json
import sys

import pytest
import torch
from safetensors import safe_open
from train_helpers import REPO_ROOT, run_python, tiny_run_flags, write_tiny_corpus
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq

from luong_chatbot import chat, training
from luong_chatbot.inference import generate_replies

RECIPES = sorted((REPO_ROOT / "recipes").glob("*.yaml"))
DEFAULT_RECIPE = REPO_ROOT / "recipes" / "small-regularized.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


def as_dicts(parsed) -> list[dict]:
    """The parsed dataclasses as dicts, without the fields derived from output_dir or naming the recipe."""
    derived = {"output_dir", "logging_dir", "recipe"}
    return [{k: v for k, v in dataclasses.asdict(p).items() if k not in derived} for p in parsed]


# --- recipe files ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("recipe", RECIPES, ids=[path.stem for path in RECIPES])
def test_every_recipe_parses_and_names_itself(recipe):
    _, _, args = training.parse_args([str(recipe), "--output_dir", "o"])
    assert args.recipe == recipe.stem


def test_the_tutorial_recipe_is_exactly_the_built_in_defaults():
    from_file = training.parse_args([str(REPO_ROOT / "recipes" / "tutorial.yaml"), "--output_dir", "o"])
    assert as_dicts(from_file) == as_dicts(training.parse_args(["--output_dir", "o"]))


def test_the_default_recipe_keeps_the_best_checkpoint_and_scales_in_epochs():
    _, model_args, args = training.parse_args([str(DEFAULT_RECIPE), "--output_dir", "o"])
    assert args.load_best_model_at_end and args.metric_for_best_model == "nll" and not args.greater_is_better
    assert args.early_stopping_patience > 0 and args.max_steps == -1 and args.num_train_epochs > 0
    assert args.eval_strategy.value == args.save_strategy.value == "epoch"


def test_flags_override_the_recipe():
    recipe = str(REPO_ROOT / "recipes" / "tutorial.yaml")
    _, model_args, args = training.parse_args(
        [recipe, "--output_dir", "o", "--max_steps", "100", "--hidden-size", "8"]
    )
    assert (args.max_steps, model_args.hidden_size, args.learning_rate) == (
        100,
        8,
        1e-4,
    )  # learning_rate: the recipe's


def test_recipe_values_are_type_checked_like_flags(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("output_dir: o\nmax_steps: many\n")
    assert training.main([str(tmp_path / "bad.yaml")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--max_steps" in error and "invalid int value: 'many'" in error


def test_early_stopping_needs_load_best_model_at_end(capsys):
    assert training.main(["--output_dir", "o", "--early_stopping_patience", "2"]) == 2
    assert "needs --load_best_model_at_end" in capsys.readouterr().err


# --- early stopping keeps the best checkpoint ------------------------------------------------------------------------
def test_early_stopping_stops_and_saves_the_best_checkpoint(tiny_dataset, tmp_path):
    output_dir = tmp_path / "early"
    argv = tiny_run_flags(tiny_dataset, output_dir, max_steps=200, learning_rate=0.05, save_total_limit=None)
    argv += ["--load_best_model_at_end", "--metric_for_best_model", "nll", "--greater_is_better", "false"]
    argv += ["--early_stopping_patience", "1", "--recipe", "test-recipe"]
    assert training.main(argv) == 0

    results = json.loads((output_dir / "eval_results.json").read_text())
    scheduled = results["history"][:-1]  # then the final evaluation, of the restored model
    assert results["step"] < 200  # it stopped early: one evaluation without a better NLL
    assert scheduled[-1]["eval_nll"] >= min(entry["eval_nll"] for entry in scheduled)
    best = min(scheduled, key=lambda entry: entry["eval_nll"])
    assert results["eval_nll"] == pytest.approx(best["eval_nll"], abs=1e-6)
    saved = AutoModelForSeq2SeqLM.from_pretrained(output_dir)
    checkpoint = AutoModelForSeq2SeqLM.from_pretrained(output_dir / f"checkpoint-{best['step']}")
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(tensor, checkpoint.state_dict()[name], rtol=0, atol=0)
    card = (output_dir / "README.md").read_text()
    assert "**test-recipe**" in card and "### Validation curve" in card
    assert f"| **{best['step']}** | **{best['eval_nll']:.4f}** |" in card  # the saved one, in bold
    assert card.count("\n| ") >= len(scheduled)


# --- the tied lm_head ------------------------------------------------------------------------------------------------
def test_tied_lm_head_saves_once_and_loads_with_no_missing_keys(tiny_dataset, tmp_path):
    output_dir = tmp_path / "tied"
    assert training.main(tiny_run_flags(tiny_dataset, output_dir, max_steps=2, tie_lm_head=True)) == 0
    with safe_open(output_dir / "model.safetensors", "pt") as weights:
        names = set(weights.keys())
    assert "lm_head.weight" not in names and "lm_head.bias" in names
    model, info = AutoModelForSeq2SeqLM.from_pretrained(output_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.lm_head.weight is model.get_input_embeddings().weight
    assert model.config.tie_lm_head


def test_untied_lm_head_is_its_own_matrix(tiny_dataset):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dataset / "tokenizer")
    model = training.build_model(training.ModelArguments(hidden_size=8), tokenizer)
    assert model.lm_head.weight is not model.get_input_embeddings().weight


# --- label smoothing -------------------------------------------------------------------------------------------------
def test_label_smoothing_changes_the_training_loss_but_not_the_evaluation_nll(tiny_dataset, tmp_path):
    train_dataset, _, tokenizer = training.load_data(str(tiny_dataset))
    batch = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)([train_dataset[i] for i in range(8)])
    torch.manual_seed(0)
    model = training.build_model(training.ModelArguments(hidden_size=16, dropout=0.0), tokenizer)
    losses = {}
    for factor in (0.0, 0.1):
        args = training.LuongGruTrainingArguments(
            output_dir=str(tmp_path / str(factor)), label_smoothing_factor=factor, eval_strategy="no", report_to="none"
        )
        trainer = training.LuongGruTrainer(model=model, args=args, processing_class=tokenizer)
        for mode in ("train", "eval"):
            getattr(model, mode)()
            with torch.no_grad():
                losses[factor, mode] = trainer.compute_loss(model, dict(batch)).item()
    assert losses[0.1, "train"] > losses[0.0, "train"] + 1e-3
    assert losses[0.1, "eval"] == pytest.approx(losses[0.0, "eval"], abs=1e-6)


# --- the saved decoding defaults -------------------------------------------------------------------------------------
def test_the_recipes_decoding_is_saved_and_used_by_chat(tiny_dataset, tmp_path, monkeypatch, capsys):
    output_dir = tmp_path / "beam"
    decoding = {"generation_num_beams": 3, "generation_no_repeat_ngram_size": 1, "generation_length_penalty": 1.5}
    assert training.main(tiny_run_flags(tiny_dataset, output_dir, max_steps=2, **decoding)) == 0
    saved = json.loads((output_dir / "generation_config.json").read_text())
    assert (saved["num_beams"], saved["no_repeat_ngram_size"], saved["length_penalty"]) == (3, 1, 1.5)
    assert "num_beams=3" in (output_dir / "README.md").read_text()

    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello?\nwhere am I?\n"))
    assert chat.main([str(output_dir)]) == 0
    replies = [line.removeprefix("Bot: ") for line in capsys.readouterr().out.splitlines()]
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    prompts = ["hello?", "where am I?"]
    assert replies == generate_replies(model, tokenizer, prompts, num_beams=3, no_repeat_ngram_size=1)
    for reply in replies:  # no_repeat_ngram_size=1: no token twice, which greedy search would not ensure
        assert len(reply.split()) == len(set(reply.split()))


def test_the_tutorial_recipe_saves_greedy_decoding(tiny_dataset, tmp_path):
    output_dir = tmp_path / "greedy"
    assert training.main(tiny_run_flags(tiny_dataset, output_dir, max_steps=2)) == 0
    saved = json.loads((output_dir / "generation_config.json").read_text())
    assert saved.get("num_beams", 1) == 1 and not saved.get("do_sample", False)


def test_a_model_trained_on_unknown_words_never_replies_with_them(tmp_path):
    from data_scripts.build_dataset import build_dataset

    build_dataset(write_tiny_corpus(tmp_path / "corpus"), tmp_path / "built", train_max_length=20, train_max_unknown=1)
    output_dir = tmp_path / "run"
    assert training.main(tiny_run_flags(tmp_path / "built", output_dir, max_steps=2)) == 0
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    saved = json.loads((output_dir / "generation_config.json").read_text())
    assert saved["suppress_tokens"] == [tokenizer.unk_token_id]
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir).eval()
    with torch.no_grad():
        model.lm_head.bias[tokenizer.unk_token_id] = 100.0  # <unk> would win every step
    batch = tokenizer(["hello?", "where am I?"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert tokenizer.unk_token_id in model.generate(**batch, suppress_tokens=None).tolist()[0]
        assert tokenizer.unk_token_id not in sum(model.generate(**batch).tolist(), [])


def test_the_default_recipe_trains_on_more_pairs_than_the_tutorials():
    data_args, _, _ = training.parse_args([str(DEFAULT_RECIPE), "--output_dir", "o"])
    assert (data_args.max_length, data_args.min_count) == (10, 3)  # the held-out pairs stay the tutorial's
    assert data_args.train_max_length > data_args.max_length and data_args.train_max_unknown > 0
    tutorial, _, _ = training.parse_args([str(REPO_ROOT / "recipes" / "tutorial.yaml"), "--output_dir", "o"])
    assert (tutorial.train_max_length, tutorial.train_max_unknown) == (None, 0)


# --- the benchmark ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bench_quality_quick_runs(tmp_path):
    corpus = write_tiny_corpus(tmp_path / "corpus")
    output = tmp_path / "quality.json"
    result = run_python(
        ["bench/bench_quality.py", "--quick", "--corpus-dir", str(corpus), "--output", str(output)], timeout=400
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(output.read_text())
    assert data["protocol"]["quick"] and len(data["seeds"]) == 2
    for run in data["seeds"]:
        for side in ("tutorial", "default"):
            test = run[side]["test"]
            assert {"perplexity", "token_accuracy", "distinct_2", "bland_share", "avg_reply_length"} <= set(test)
            assert len(test["tutorial_prompts"]) == 10 and run[side]["history"]
            assert run[side]["best"]["nll"] == min(point["nll"] for point in run[side]["history"])
        assert run["tutorial"]["time_to_tutorial_best_s"] == run["tutorial"]["best"]["train_s"]
    assert set(data["summary"]["goals"]) == {
        "test_perplexity_at_most_0.7x",
        "higher_distinct_2",
        "lower_bland_share",
        "time_to_quality_at_most_one_fifth",
    }
