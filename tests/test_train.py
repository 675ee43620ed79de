"""Tests of train.py: arguments, loss, optimizer, checkpoints, the atomic final save and a tiny end-to-end run."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from safetensors.torch import save_file
from train_helpers import write_tiny_corpus
from transformers import (
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    PreTrainedTokenizerFast,
    TrainerCallback,
)

from luong_chatbot import training as train
from luong_chatbot.inference import TUTORIAL_PROMPTS, generate_replies

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tokenizer(tiny_dataset):
    return AutoTokenizer.from_pretrained(tiny_dataset / "tokenizer")


def make_model(tokenizer, dropout: float = 0.0, seed: int = 0):
    torch.manual_seed(seed)
    return train.build_model(train.ModelArguments(hidden_size=16, dropout=dropout), tokenizer)


def make_args(tmp_path: Path, **overrides) -> train.LuongGruTrainingArguments:
    defaults = {
        "output_dir": str(tmp_path / "out"),
        "disable_tqdm": True,
        "save_strategy": "no",
        "eval_strategy": "no",
    }
    return train.LuongGruTrainingArguments(**{**defaults, **overrides})


def make_trainer(tokenizer, tiny_dataset, args, model=None) -> train.LuongGruTrainer:
    train_dataset, eval_dataset, _ = train.load_data(str(tiny_dataset))
    model = model if model is not None else make_model(tokenizer)
    return train.build_trainer(model, args, train_dataset, eval_dataset, tokenizer)


# --- arguments -------------------------------------------------------------------------------------------------------
def test_defaults_are_the_tutorials():
    data_args, model_args, args = train.parse_args(["--dataset-dir", "d", "--output-dir", "o"])
    assert (data_args.max_length, data_args.min_count) == (10, 3)
    assert (model_args.hidden_size, model_args.encoder_layers, model_args.decoder_layers) == (500, 2, 2)
    assert (model_args.dropout, model_args.attention_type) == (0.1, "dot")
    assert (args.per_device_train_batch_size, args.max_steps, args.learning_rate) == (64, 4000, 1e-4)
    assert (args.decoder_lr_ratio, args.lr_scheduler_type.value, args.max_grad_norm) == (5.0, "constant", 50.0)
    assert (args.teacher_forcing_ratio, args.save_steps, args.seed, args.weight_decay) == (1.0, 500, 0, 0.0)
    assert (args.eval_strategy.value, args.eval_steps) == ("steps", 500)


def test_dashes_underscores_json_and_yaml(tmp_path):
    expected = train.parse_args(["--dataset_dir=d", "--output_dir=o", "--teacher_forcing_ratio=0.5", "--max_steps=7"])
    dashed = train.parse_args(
        ["--dataset-dir", "d", "--output-dir", "o", "--teacher-forcing-ratio", "0.5", "--max-steps", "7"]
    )
    keys = {"dataset_dir": "d", "output_dir": "o", "teacher_forcing_ratio": 0.5, "max_steps": 7}
    (tmp_path / "run.json").write_text(json.dumps(keys))
    (tmp_path / "run.yaml").write_text("".join(f"{key}: {value}\n" for key, value in keys.items()))
    for parsed in (
        dashed,
        train.parse_args([str(tmp_path / "run.json")]),
        train.parse_args([str(tmp_path / "run.yaml")]),
    ):
        assert parsed[0] == expected[0]
        assert (parsed[2].teacher_forcing_ratio, parsed[2].max_steps) == (0.5, 7)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--output-dir", "o", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--output-dir", "o", "--teacher_forcing_ratio", "2"], "--teacher_forcing_ratio must be in [0, 1]"),
        (["--output-dir", "o", "--optim", "adafactor"], "--optim adafactor is not supported"),
        (["--output-dir", "o", "--max_steps", "many"], "invalid int value: 'many'"),
        (["--output-dir", "o", "--dataset-dir", "{missing}"], "not a dataset built by data_scripts.build_dataset"),
        (["--output-dir", "o", "--corpus-dir", "{missing}"], "no such corpus folder or zip"),
        (["--output-dir", "{tmp}/run", "--resume_from_checkpoint", "True"], "no complete checkpoint-N folder"),
        (["--output-dir", "o", "--push_to_hub"], "--push_to_hub needs --hub_model_id NAME"),
        (["{tmp}/bad.yaml"], "bad.yaml"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv, message, tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("output_dir: o\nno_such_key: 1\n")
    argv = [arg.format(missing=tmp_path / "missing", tmp=tmp_path) for arg in argv]
    assert train.main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("train.py: error: ") and error.count("\n") == 1, error
    assert message in error


def test_bf16_on_a_cpu_without_native_bf16_stops_with_one_line_unless_forced(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: False)
    assert train.main(["--output-dir", str(tmp_path / "o"), "--bf16"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("train.py: error: --bf16: this CPU has no native bf16") and error.count("\n") == 1
    assert "--bf16_force" in error and not (tmp_path / "o").exists()
    *_, forced = train.parse_args(["--output-dir", str(tmp_path / "o"), "--bf16", "--bf16_force"])
    assert forced.bf16 and forced.use_cpu
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: True)
    *_, native = train.parse_args(["--output-dir", str(tmp_path / "o"), "--bf16"])
    assert native.bf16 and native.use_cpu


def test_native_bf16_detection_reads_the_cpu_flags(tmp_path):
    avx2_only = tmp_path / "avx2"
    avx2_only.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f\n\nprocessor\t: 1\n")
    assert not train.cpu_has_native_bf16(avx2_only)
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        pytest.skip("oneDNN reports no bf16 on this machine: every CPU counts as non-native")
    for flag in ("avx512_bf16", "amx_bf16"):
        native = tmp_path / flag
        native.write_text(f"processor\t: 0\nflags\t\t: fpu avx2 avx512f {flag} avx512_vnni\n")
        assert train.cpu_has_native_bf16(native)


# --- optimizer -------------------------------------------------------------------------------------------------------
def test_optimizer_groups_and_learning_rates(tokenizer, tiny_dataset, tmp_path):
    model = make_model(tokenizer)
    trainer = make_trainer(tokenizer, tiny_dataset, make_args(tmp_path, learning_rate=1e-3), model=model)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    optimizer = trainer.optimizer
    assert type(optimizer) is torch.optim.Adam  # the tutorial's Adam, not AdamW
    encoder, decoder = optimizer.param_groups
    assert (encoder["name"], encoder["lr"], decoder["name"], decoder["lr"]) == ("encoder", 1e-3, "decoder", 5e-3)
    assert encoder["weight_decay"] == decoder["weight_decay"] == 0.0

    ids = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    embedding = model.get_input_embeddings().weight
    assert any(p is embedding for p in decoder["params"]) and not any(p is embedding for p in encoder["params"])
    encoder_ids = {id(p) for p in model.get_encoder().parameters()} - {id(embedding)}
    assert encoder_ids and {id(p) for p in encoder["params"]} == encoder_ids
    assert any(p is model.lm_head.weight for p in decoder["params"])

    for _ in range(3):  # constant schedule
        optimizer.step()
        trainer.lr_scheduler.step()
    assert [group["lr"] for group in optimizer.param_groups] == [1e-3, 5e-3]


# --- loss ------------------------------------------------------------------------------------------------------------
def batch_of(tokenizer, tiny_dataset, size: int = 8) -> dict[str, torch.Tensor]:
    train_dataset, _, _ = train.load_data(str(tiny_dataset))
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    return collator([train_dataset[i] for i in range(size)])


def test_teacher_forced_loss_matches_the_models_own_forward(tokenizer, tiny_dataset, tmp_path):
    model = make_model(tokenizer)
    trainer = make_trainer(tokenizer, tiny_dataset, make_args(tmp_path), model=model)
    batch = batch_of(tokenizer, tiny_dataset)
    assert (batch["labels"] == -100).any(), "the batch should contain padding"
    for training in (True, False):  # dropout is 0, so train and eval modes compute the same thing
        model.train(training)
        loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
        torch.testing.assert_close(loss, model(**batch).loss)
        mask = batch["labels"] != -100
        assert (outputs["token_nll"][~mask] == 0).all()
        torch.testing.assert_close(outputs["token_nll"][mask].mean(), loss)
    num_items = int(mask.sum()) * 3  # as if this were a third of an accumulated batch
    torch.testing.assert_close(trainer.compute_loss(model, batch, num_items_in_batch=num_items), loss / 3)


def test_teacher_forcing_draw_depends_only_on_seed_and_step(tokenizer, tiny_dataset, tmp_path):
    first = make_trainer(tokenizer, tiny_dataset, make_args(tmp_path, teacher_forcing_ratio=0.5, seed=3))
    second = make_trainer(tokenizer, tiny_dataset, make_args(tmp_path, teacher_forcing_ratio=0.5, seed=3))
    draws = []
    for step in range(400):
        first.state.global_step = second.state.global_step = step
        draws.append(first.teacher_forcing_this_step())
        assert second.teacher_forcing_this_step() == draws[-1]
        assert first.teacher_forcing_this_step() == draws[-1]  # repeated calls within a step agree
    assert 0.4 < sum(draws) / len(draws) < 0.6


def test_teacher_forcing_ratio_zero_trains_on_free_running_outputs(tokenizer, tiny_dataset, tmp_path, monkeypatch):
    model = make_model(tokenizer)
    args = make_args(tmp_path, teacher_forcing_ratio=0.0, max_steps=30, learning_rate=1e-2, logging_steps=1)
    trainer = make_trainer(tokenizer, tiny_dataset, args, model=model)
    batch = batch_of(tokenizer, tiny_dataset)
    before = trainer.compute_loss(model.eval(), batch).item()  # evaluation is teacher forced
    calls = []
    free_running = model.forward_free_running
    monkeypatch.setattr(model, "forward_free_running", lambda *a, **k: calls.append(1) or free_running(*a, **k))
    monkeypatch.setattr(model.model, "forward", lambda *a, **k: pytest.fail("teacher forced"))
    trainer.train()
    monkeypatch.undo()
    after = trainer.compute_loss(model.eval(), batch).item()
    assert len(calls) == 30
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert all(math.isfinite(loss) for loss in losses)
    assert after < before - 0.5, (before, after)


class GradientRecorder(TrainerCallback):
    """Keeps a copy of the gradients that each optimizer step is about to apply."""

    def __init__(self):
        self.steps = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.steps.append({name: p.grad.detach().clone() for name, p in model.named_parameters()})


@pytest.mark.slow
def test_gradient_accumulation_matches_one_large_batch(tokenizer, tiny_dataset, tmp_path):
    # Adam's first steps amplify float noise in near-zero gradients, so the gradients are compared, not the weights.
    recorded = []
    for batch_size, accumulation in ((8, 1), (4, 2), (2, 4)):
        args = make_args(
            tmp_path,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=2,
            train_sampling_strategy="sequential",
        )
        trainer = make_trainer(tokenizer, tiny_dataset, args)
        trainer.add_callback(recorder := GradientRecorder())
        trainer.train()
        recorded.append(recorder.steps)
    for other in recorded[1:]:
        for step, expected in zip(other, recorded[0], strict=True):
            for name, gradient in expected.items():
                torch.testing.assert_close(
                    step[name], gradient, rtol=1e-4, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}"
                )


# --- checkpoints and the final save ----------------------------------------------------------------------------------
def fake_checkpoint(path: Path, state: str | None = '{"global_step": 1}') -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    save_file({"weight": torch.zeros(2)}, path / "model.safetensors")
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_resume_latest_skips_checkpoints_cut_off_mid_save(tmp_path):
    complete = fake_checkpoint(tmp_path / "checkpoint-2")
    fake_checkpoint(tmp_path / "checkpoint-10", state=None)  # killed before trainer_state.json
    fake_checkpoint(tmp_path / "checkpoint-12", state='{"global_st')  # killed while writing it
    fake_checkpoint(tmp_path / "checkpoint-x")
    assert train.resolve_checkpoint("True", str(tmp_path)) == str(complete)
    assert train.resolve_checkpoint("true", str(tmp_path)) == str(complete)
    assert train.resolve_checkpoint(str(complete), str(tmp_path)) == str(complete)
    assert train.resolve_checkpoint(None, str(tmp_path)) is None
    with pytest.raises(train.UsageError, match="not a complete checkpoint"):
        train.resolve_checkpoint(str(tmp_path / "checkpoint-12"), str(tmp_path))


def test_a_final_save_cut_off_midway_never_loads_silently(tokenizer, tmp_path, monkeypatch):
    output_dir, old_model, new_model = tmp_path / "model", make_model(tokenizer, seed=1), make_model(tokenizer, seed=2)
    old_model.save_pretrained(output_dir)
    staging = tmp_path / "model" / ".final-model-test"
    new_model.save_pretrained(staging)
    real_replace, moved = train.os.replace, []

    def replace_then_crash(source, target):
        if len(moved) == 1:
            raise KeyboardInterrupt("killed")
        moved.append(target)
        real_replace(source, target)

    monkeypatch.setattr(train.os, "replace", replace_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train.commit_folder_contents(str(staging), str(output_dir))
    assert not (output_dir / "config.json").exists()
    with pytest.raises((OSError, ValueError)):  # "no config.json" / "unrecognized model"
        AutoModelForSeq2SeqLM.from_pretrained(output_dir)

    monkeypatch.setattr(train.os, "replace", real_replace)
    new_model.save_pretrained(staging)
    train.commit_folder_contents(str(staging), str(output_dir))
    loaded = AutoModelForSeq2SeqLM.from_pretrained(output_dir)
    torch.testing.assert_close(loaded.lm_head.weight, new_model.lm_head.weight)
    assert not staging.exists()


# --- model card and a tiny end-to-end run ----------------------------------------------------------------------------
def check_model_card(text: str, model_name: str, perplexity: float) -> ModelCard:
    card = ModelCard(text)
    data = card.data
    assert (data.license, data.language, data.library_name) == ("apache-2.0", "en", "transformers")
    assert data.datasets == [train.CORNELL_DATASET_ID] and "chatbot" in data.tags
    name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == model_name
    metrics = {result.metric_type: result.metric_value for result in results}
    assert metrics["perplexity"] == pytest.approx(perplexity, abs=1e-3)
    assert all(result.dataset_split == "validation" for result in results)
    for heading in ("## Results", "### Sample conversation", "## How to use", "Deviations from the tutorial"):
        assert heading in card.text
    assert "## Limitations and biases" in card.text
    assert "\n\n\n" not in text  # no runs of blank lines where optional sections render nothing
    return card


@pytest.mark.slow
def test_end_to_end_corpus_to_chat(tmp_path, capsys):
    corpus, output_dir = write_tiny_corpus(tmp_path / "corpus"), tmp_path / "model"
    argv = ["--corpus-dir", str(corpus), "--output-dir", str(output_dir), "--max_steps", "4", "--eval_steps", "2"]
    argv += [
        "--save_steps",
        "2",
        "--per_device_train_batch_size",
        "8",
        "--hidden_size",
        "16",
        "--disable_tqdm",
        "true",
    ]
    assert train.main(argv) == 0
    printed = capsys.readouterr().out

    assert (output_dir / "data" / "stats.json").is_file()  # built from the corpus first
    assert {p.name for p in output_dir.glob("checkpoint-*")} == {"checkpoint-2", "checkpoint-4"}
    results = json.loads((output_dir / "eval_results.json").read_text())
    assert results["step"] == 4 and [entry["step"] for entry in results["history"]] == [2, 4]
    assert results["eval_perplexity"] == pytest.approx(math.exp(results["eval_nll"]))
    conversation = json.loads((output_dir / "sample_conversation.json").read_text())
    assert [turn["prompt"] for turn in conversation] == TUTORIAL_PROMPTS
    assert "> where am I?\nBot: " in printed and "Validation perplexity" in printed
    card = check_model_card((output_dir / "README.md").read_text(), "model", results["eval_perplexity"])
    assert "| where am I? |" in card.text

    config = json.loads((output_dir / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSeq2SeqLM"].startswith("modeling_luong_gru.")
    assert (output_dir / "modeling_luong_gru.py").is_file() and (output_dir / "configuration_luong_gru.py").is_file()
    model = AutoModelForSeq2SeqLM.from_pretrained(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    assert isinstance(tokenizer, PreTrainedTokenizerFast) and config["hidden_size"] == 16
    replies = generate_replies(model.eval(), tokenizer, TUTORIAL_PROMPTS)
    assert replies == [turn["reply"] for turn in conversation]


def test_load_best_model_at_end_reports_the_restored_model(tiny_dataset, tmp_path):
    """With --load_best_model_at_end, eval_results.json describes the restored best checkpoint, not the last step."""
    output_dir = tmp_path / "best"
    argv = ["--dataset-dir", str(tiny_dataset), "--output-dir", str(output_dir), "--max_steps", "6"]
    argv += ["--eval_steps", "2", "--save_steps", "2", "--per_device_train_batch_size", "8", "--hidden_size", "16"]
    argv += ["--learning_rate", "0.5", "--disable_tqdm", "true"]  # a rate that makes the validation NLL go up
    argv += ["--load_best_model_at_end", "--metric_for_best_model", "nll", "--greater_is_better", "false"]
    assert train.main(argv) == 0

    results = json.loads((output_dir / "eval_results.json").read_text())
    scheduled = [entry["eval_nll"] for entry in results["history"][:3]]  # steps 2, 4, 6; then the final evaluation
    assert [entry["step"] for entry in results["history"]] == [2, 4, 6, 6]
    assert min(scheduled) < scheduled[-1]  # the best checkpoint is not the last one
    assert results["eval_nll"] == pytest.approx(min(scheduled), abs=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CORNELL_SAMPLE_DIR"), reason="CORNELL_SAMPLE_DIR is not set")
def test_the_readme_command_on_the_sample_corpus(tmp_path, capsys):
    output_dir = tmp_path / "sample"
    argv = ["--corpus-dir", os.environ["CORNELL_SAMPLE_DIR"], "--output-dir", str(output_dir), "--max_steps", "2"]
    assert train.main([*argv, "--hidden_size", "16", "--disable_tqdm", "true"]) == 0
    stats = json.loads((output_dir / "data" / "stats.json").read_text())
    assert (stats["pairs_read"], stats["pairs_kept"], stats["words_kept"]) == (20_399, 3_531, 1_594)
    results = json.loads((output_dir / "eval_results.json").read_text())
    card = check_model_card((output_dir / "README.md").read_text(), "sample", results["eval_perplexity"])
    assert "| pairs_kept | 3531 |" in card.text and "| vocabulary (with 4 special tokens) | 1598 |" in card.text
    assert "Sample conversation" in capsys.readouterr().out
