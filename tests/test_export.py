"""ONNX export and ONNX Runtime inference: the exported graphs and replies equal the PyTorch model's.

One tiny model is exported once per module with the real command (`python -m modeling_seq2seq.export`), then run by
real ONNX Runtime sessions, under transformers' `generate()` and in a subprocess where torch cannot be imported.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install -e '.[onnx]'")

from train_helpers import REPO_ROOT, subprocess_env  # noqa: E402

from luong_chatbot.evaluation import evaluate  # noqa: E402
from luong_chatbot.inference import TUTORIAL_PROMPTS, load_model_and_tokenizer  # noqa: E402
from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration, LuongGruTokenizer  # noqa: E402
from modeling_seq2seq.modeling_luong_gru import initial_decoder_state  # noqa: E402
from modeling_seq2seq.onnx_greedy import OnnxGreedyChatbot, OnnxLuongGru  # noqa: E402
from modeling_seq2seq.onnx_luong_gru import LuongGruOnnxForConditionalGeneration  # noqa: E402

PROMPTS = TUTORIAL_PROMPTS + ["Where are you from? I'm just kidding, are you my friend? Goodbye", "zzz"]
WORDS = "hello . you re in a hospital i m lawyer fine no trying to help sorry san francisco know goodbye ! ?"


def tiny_model(tokenizer: LuongGruTokenizer, layers: int = 2) -> LuongGruForConditionalGeneration:
    """A seeded tiny model whose replies depend on the prompt and end at EOS at different lengths (or not at all)."""
    torch.manual_seed(0)
    config = LuongGruConfig(vocab_size=len(tokenizer), hidden_size=16, encoder_layers=layers, decoder_layers=layers)
    model = LuongGruForConditionalGeneration(config).eval()
    with torch.no_grad():  # sharper logits than at initialization, and an EOS about as likely as a word
        model.lm_head.weight *= 6
        model.lm_head.bias[config.eos_token_id] += 1.0
    return model


@pytest.fixture(scope="module")
def tokenizer() -> LuongGruTokenizer:
    prompt_words = " ".join(TUTORIAL_PROMPTS).lower().replace("?", " ?").replace("'", " ").split()
    return LuongGruTokenizer.from_words(sorted(set(prompt_words + WORDS.split())))


@pytest.fixture(scope="module")
def model(tokenizer) -> LuongGruForConditionalGeneration:
    return tiny_model(tokenizer)


@pytest.fixture(scope="module")
def model_dir(model, tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def onnx_dir(model_dir, tmp_path_factory) -> Path:
    """The export command's output, with the int8 copies."""
    folder = tmp_path_factory.mktemp("export") / "onnx"
    result = run_module("modeling_seq2seq.export", str(model_dir), str(folder), "--quantize", "int8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == f"Exported {model_dir} to {folder}"
    return folder


@pytest.fixture(scope="module")
def onnx_model(onnx_dir) -> LuongGruOnnxForConditionalGeneration:
    return LuongGruOnnxForConditionalGeneration.from_pretrained(onnx_dir)


def run_module(module: str, *args: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=env or subprocess_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )


def padded_batch(lengths: list[int], vocab_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random ids (B, S) and their mask; a length of 0 is a row of padding only."""
    generator = torch.Generator().manual_seed(seed)
    source_length = max(max(lengths), 1)
    mask = torch.arange(source_length)[None] < torch.tensor(lengths)[:, None]  # (B, S)
    input_ids = torch.randint(4, vocab_size, (len(lengths), source_length), generator=generator)
    return input_ids.masked_fill(~mask, 0), mask.long()


def packed_gru(encoder, embeds: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's eager path: its nn.GRU over packed sequences, unpacked to (B, S, 2H), and (L * 2, B, H)."""
    packed = torch.nn.utils.rnn.pack_padded_sequence(embeds, lengths, batch_first=True, enforce_sorted=False)
    outputs, final = encoder.gru(packed)
    outputs, _ = torch.nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=embeds.shape[1])
    return outputs, final


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_padded_gru_equals_packed_gru(tokenizer, layers):
    """The export's padded formulation computes the packed GRU's outputs and final states, with its weights."""
    encoder = tiny_model(tokenizer, layers).model.encoder
    input_ids, mask = padded_batch([6, 3, 1, 0, 6], len(tokenizer))
    with torch.no_grad():
        embeds = encoder.embed_tokens(input_ids)  # (B, S, H)
        lengths = mask.sum(dim=1).clamp(min=1)
        packed_outputs, packed_final = packed_gru(encoder, embeds, lengths)
        padded_outputs, padded_final = encoder._padded_gru(embeds, lengths)
    torch.testing.assert_close(padded_outputs, packed_outputs, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(padded_final, packed_final, atol=1e-6, rtol=1e-5)
    assert padded_outputs[1, 3:].abs().sum() == 0  # zeros after a row's length, as pad_packed_sequence gives


def test_padded_gru_gradients_equal_packed_gru(tokenizer):
    """Without dropout, training through the padded formulation would give the packed GRU's gradients."""
    encoder = tiny_model(tokenizer).model.encoder
    input_ids, mask = padded_batch([5, 2, 4], len(tokenizer))
    lengths = mask.sum(dim=1)
    gradients = []
    for run in (
        lambda embeds: packed_gru(encoder, embeds, lengths),
        lambda embeds: encoder._padded_gru(embeds, lengths),
    ):
        encoder.zero_grad()
        outputs, final = run(encoder.embed_tokens(input_ids))
        (outputs.square().sum() + final.sum()).backward()
        gradients.append([p.grad.clone() for p in encoder.gru.parameters()])
    for packed, padded in zip(*gradients, strict=True):
        torch.testing.assert_close(padded, packed, atol=1e-5, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:The tensor attributes:UserWarning")  # nn.GRU refreshes its weight list
def test_torch_export_of_forward(model, tokenizer):
    """`torch.export.export` traces the model's forward (no data-dependent branch) and the program computes it."""
    input_ids, mask = padded_batch([5, 2, 4], len(tokenizer))
    decoder_input_ids = torch.tensor([[1, 7, 8], [1, 9, 2], [1, 2, 0]])
    kwargs = {"input_ids": input_ids, "attention_mask": mask, "decoder_input_ids": decoder_input_ids}
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        model,
        (),
        {**kwargs, "use_cache": False},
        dynamic_shapes={**dict.fromkeys(kwargs, {0: batch}), "use_cache": None},
    )
    with torch.no_grad():
        for rows in ([0, 1, 2], [2, 0]):
            subset = {name: value[rows] for name, value in kwargs.items()}
            expected = model(**subset).logits
            torch.testing.assert_close(program.module()(**subset, use_cache=False).logits, expected)


@pytest.mark.slow  # the module's export takes most of a minute on a loaded CI core
def test_export_writes_a_self_contained_folder(onnx_dir):
    import onnx

    names = {path.name for path in onnx_dir.iterdir()}
    assert {"encoder.onnx", "decoder_step.onnx", "encoder.int8.onnx", "decoder_step.int8.onnx"} <= names
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    assert {"onnx_export.json", "onnx_greedy.py"} <= names
    assert json.loads((onnx_dir / "onnx_export.json").read_text())["quantize"] == "int8"
    assert not list(onnx_dir.parent.glob(".onnx*")), "the staging folder is left behind"
    encoder = onnx.load(str(onnx_dir / "encoder.onnx"))
    onnx.checker.check_model(encoder)
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in encoder.graph.output]
    assert dims == [["batch", "source_length", 16], ["batch", 2, 16], ["batch", "source_length"]]


@pytest.mark.slow
@pytest.mark.parametrize("lengths", [[1], [10], [5, 2, 0, 7], [3] * 9])
def test_encoder_and_decoder_step_equal_pytorch(model, tokenizer, onnx_dir, lengths):
    """Outputs of both ONNX graphs equal PyTorch's (<= 1e-4), for any batch size and source length."""
    runtime = OnnxLuongGru(str(onnx_dir))
    input_ids, mask = padded_batch(lengths, len(tokenizer), seed=len(lengths))
    with torch.no_grad():
        expected = model.model.encoder(input_ids, mask)
    outputs, final_state, encoder_mask = runtime.encode(input_ids.numpy(), mask.numpy())
    np.testing.assert_allclose(outputs, expected.last_hidden_state.numpy(), atol=1e-4)
    np.testing.assert_allclose(final_state, expected.final_state.numpy(), atol=1e-4)
    np.testing.assert_array_equal(encoder_mask, mask.bool().numpy())
    state = initial_decoder_state(expected) + 0.5 * torch.randn(2, len(lengths), 16)  # (L, B, H)
    tokens = torch.randint(0, len(tokenizer), (len(lengths), 1))
    with torch.no_grad():
        features, expected_state, _ = model.model.decoder(tokens, state, expected.last_hidden_state, mask.bool())
        expected_logits = model.lm_head(features[:, -1])  # (B, V)
    logits, new_state = runtime.step(tokens.numpy(), state.numpy(), outputs, encoder_mask)
    np.testing.assert_allclose(logits, expected_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(new_state, expected_state.numpy(), atol=1e-4)


def generate_both(model, onnx_model, tokenizer, prompts, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    batch = tokenizer(prompts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return model.generate(**batch, **kwargs), onnx_model.generate(**batch, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("num_beams", [1, 5])
@pytest.mark.parametrize("batched", [True, False])
def test_generate_replies_equal_pytorch(model, onnx_model, tokenizer, num_beams, batched):
    """Greedy and beam-5 replies are token for token those of generate() on the PyTorch model, padding included."""
    groups = [PROMPTS] if batched else [[prompt] for prompt in PROMPTS]
    lengths = set()
    for prompts in groups:
        expected, actual = generate_both(model, onnx_model, tokenizer, prompts, num_beams=num_beams)
        assert torch.equal(actual, expected)
        lengths.update(expected.ne(tokenizer.pad_token_id).sum(dim=1).tolist())
    if num_beams == 1:  # so that the rows that stop early are padded while the others go on
        assert len(lengths) > 2, "the tiny model should stop at EOS at different lengths"


@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_beams": 5, "no_repeat_ngram_size": 2, "num_return_sequences": 2},
        {"min_new_tokens": 4},
        {"do_sample": True, "top_k": 5, "temperature": 0.8},
    ],
    ids=["beam_ngram", "min_length", "sampling"],
)
def test_transformers_search_options_run_on_onnx(model, onnx_model, tokenizer, kwargs):
    """n-gram blocking, minimum lengths and sampling come from generate() and give the PyTorch model's tokens."""
    torch.manual_seed(0)
    batch = tokenizer(PROMPTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        expected = model.generate(**batch, **kwargs)
        torch.manual_seed(0)
        actual = onnx_model.generate(**batch, **kwargs)
    assert torch.equal(actual, expected)


@pytest.mark.slow
def test_generate_continues_from_onnx_cache(model, onnx_model, tokenizer):
    """The ONNX state is the model's cache: a forward pass returns it and beam search reorders it."""
    batch = tokenizer(PROMPTS[:3], padding=True, return_tensors="pt")
    decoder_input_ids = torch.tensor([[1], [1], [1]])
    with torch.no_grad():
        first = onnx_model(**batch, decoder_input_ids=decoder_input_ids)
        expected = model(**batch, decoder_input_ids=decoder_input_ids)
    torch.testing.assert_close(first.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(first.cache.state, expected.cache.state, atol=1e-4, rtol=1e-4)
    first.cache.reorder_cache(torch.tensor([2, 0, 1]))
    torch.testing.assert_close(first.cache.state, expected.cache.state[:, [2, 0, 1]], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_numpy_greedy_equals_generate(model, tokenizer, onnx_dir):
    batch = tokenizer(PROMPTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        sequences = model.generate(**batch)
    expected = [
        [t for t in row[1:].tolist() if t not in (tokenizer.eos_token_id, tokenizer.pad_token_id)] for row in sequences
    ]
    bot = OnnxGreedyChatbot(str(onnx_dir))
    assert bot.greedy(batch["input_ids"].numpy(), batch["attention_mask"].numpy()) == expected
    assert bot.replies(PROMPTS) == [r.strip() for r in tokenizer.batch_decode(sequences, skip_special_tokens=True)]


def test_numpy_greedy_suppresses_tokens_as_generate_does(model, tokenizer, onnx_dir, tmp_path):
    batch = tokenizer(PROMPTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        first_tokens = model.generate(**batch, max_new_tokens=1)[:, 1].tolist()
        suppressed = model.generate(**batch, suppress_tokens=first_tokens)
    folder = tmp_path / "onnx"
    shutil.copytree(onnx_dir, folder)
    generation = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**generation, "suppress_tokens": first_tokens}))
    bot = OnnxGreedyChatbot(str(folder))
    replies = bot.greedy(batch["input_ids"].numpy(), batch["attention_mask"].numpy())
    assert not {token for reply in replies for token in reply} & set(first_tokens)
    expected = [
        [t for t in row[1:].tolist() if t not in (tokenizer.eos_token_id, tokenizer.pad_token_id)]
        for row in suppressed
    ]
    assert replies == expected


@pytest.mark.slow
def test_evaluate_on_onnx_equals_pytorch(model, tokenizer, onnx_dir):
    """`luong-evaluate` on an exported folder: the loader detects it, and the metrics are the PyTorch model's."""
    from datasets import Dataset

    queries = [tokenizer(prompt, truncation=True)["input_ids"] for prompt in PROMPTS]
    data = Dataset.from_dict({"input_ids": queries, "labels": queries[1:] + queries[:1]})
    onnx_model, onnx_tokenizer = load_model_and_tokenizer(str(onnx_dir))
    assert isinstance(onnx_model, LuongGruOnnxForConditionalGeneration)
    expected, actual = evaluate(model, tokenizer, data, batch_size=4), evaluate(onnx_model, onnx_tokenizer, data, 4)
    assert actual["loss"] == pytest.approx(expected["loss"], abs=1e-4)
    assert actual["token_accuracy"] == expected["token_accuracy"]
    assert actual["tutorial_prompts"] == expected["tutorial_prompts"]
    assert actual["bleu"] == pytest.approx(expected["bleu"])


@pytest.mark.slow
def test_int8_export_runs(onnx_dir, model, tokenizer):
    """The int8 files load under generate() (`--quantize` on an exported folder) and reply."""
    int8_model, _ = load_model_and_tokenizer(str(onnx_dir), quantize=True)
    assert int8_model.runtime.files == ["encoder.int8.onnx", "decoder_step.int8.onnx"]
    batch = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    assert int8_model.generate(**batch, num_beams=3).shape[0] == len(PROMPTS)


@pytest.mark.slow
def test_chat_detects_an_onnx_folder(model, tokenizer, onnx_dir):
    expected = [
        r.strip()
        for r in tokenizer.batch_decode(
            model.generate(**tokenizer(PROMPTS[:3], padding=True, return_tensors="pt")), skip_special_tokens=True
        )
    ]
    result = run_module("luong_chatbot.chat", str(onnx_dir), stdin="\n".join(PROMPTS[:3]) + "\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [f"Bot: {reply}" for reply in expected]


BLOCK_TORCH = '''
import sys

class BlockTorch:
    """Makes torch and transformers unimportable, as on a machine without them."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, BlockTorch())
'''


@pytest.mark.slow
def test_torch_free_greedy_in_a_subprocess(model, tokenizer, onnx_dir, tmp_path):
    """The exported folder's own script replies with only onnxruntime, tokenizers and numpy importable."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(textwrap.dedent(BLOCK_TORCH))
    env = {**subprocess_env(), "PYTHONPATH": str(blocker)}  # not the repository: the folder is self-contained
    blocked = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "blocked in this test" in blocked.stderr
    deployed = tmp_path / "deployed"
    shutil.copytree(onnx_dir, deployed)
    script = [sys.executable, str(deployed / "onnx_greedy.py"), str(deployed)]
    result = subprocess.run(script, env=env, input="\n".join(PROMPTS), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    batch = tokenizer(PROMPTS, padding=True, truncation=True, return_tensors="pt")
    expected = tokenizer.batch_decode(model.generate(**batch), skip_special_tokens=True)
    assert result.stdout.splitlines() == [f"Bot: {reply.strip()}" for reply in expected]


def break_missing_file(folder: Path) -> str:
    (folder / "decoder_step.onnx").unlink()
    return "decoder_step.onnx: missing"


def break_truncated_file(folder: Path) -> str:
    data = (folder / "encoder.onnx").read_bytes()
    (folder / "encoder.onnx").write_bytes(data[: len(data) // 2])
    return "encoder.onnx: not a readable ONNX model"


def break_other_model_type(folder: Path) -> str:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    return "a folder from another model"


def break_other_model_sizes(folder: Path) -> str:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": config["vocab_size"] + 1}))
    return "files from another model"


@pytest.mark.slow
@pytest.mark.parametrize(
    "break_folder", [break_missing_file, break_truncated_file, break_other_model_type, break_other_model_sizes]
)
def test_bad_onnx_folder_is_one_line_exit_2(onnx_dir, tmp_path, break_folder):
    folder = tmp_path / "broken"
    shutil.copytree(onnx_dir, folder)
    expected = break_folder(folder)
    for command in (
        [sys.executable, "-m", "luong_chatbot.chat", str(folder)],
        [sys.executable, str(folder / "onnx_greedy.py"), str(folder), "hello"],
    ):
        result = subprocess.run(command, cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
        assert expected in result.stderr


@pytest.mark.slow
def test_export_bad_input_is_one_line_exit_2(model_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    user_folder = tmp_path / "mine"
    user_folder.mkdir()
    (user_folder / "notes.txt").write_text("keep me")
    cases = [
        ((str(tmp_path / "missing"), str(tmp_path / "out")), "no loadable config.json"),
        ((str(other), str(tmp_path / "out")), "expected 'luong_gru'"),
        ((str(model_dir), str(user_folder)), "not empty and not an earlier ONNX export"),
        ((str(model_dir), str(tmp_path / "out"), "--quantize", "int4"), "invalid choice"),
    ]
    for args, message in cases:
        result = run_module("modeling_seq2seq.export", *args)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert os.listdir(user_folder) == ["notes.txt"] and not (tmp_path / "out").exists()
