"""Model tests in transformers' pattern: config, forward, generate(), Auto classes and remote-code loading."""

import doctest
import functools
import json
import os
import pickle
import subprocess
import sys
import sysconfig
import textwrap

import pytest
import torch
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

from modeling_seq2seq import (
    LuongGruConfig,
    LuongGruForConditionalGeneration,
    LuongGruModel,
    LuongGruTokenizer,
    configuration_luong_gru,
    modeling_luong_gru,
    shift_tokens_right,
)
from modeling_seq2seq.modeling_luong_gru import initial_decoder_state

ATTENTION_TYPES = ["dot", "general", "concat"]
PAD, BOS, EOS = 0, 1, 2


class LuongGruModelTester:
    """Tiny configurations and padded batches, in the spirit of transformers' `ModelTester` helpers."""

    def __init__(self, vocab_size: int = 24, hidden_size: int = 16, layers: int = 2, seed: int = 0):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.layers = layers
        self.seed = seed

    def get_config(self, **overrides) -> LuongGruConfig:
        values = {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "encoder_layers": self.layers,
            "decoder_layers": self.layers,
        }
        return LuongGruConfig(**{**values, **overrides})

    def create_model(self, model_class=LuongGruForConditionalGeneration, **overrides):
        torch.manual_seed(self.seed)
        return model_class(self.get_config(**overrides)).eval()

    def prepare_inputs(self) -> dict[str, torch.Tensor]:
        """Three right-padded sources (lengths 5, 2, 4) and targets (lengths 4, 1, 3) padded with -100."""
        input_ids = torch.tensor([[5, 6, 7, 8, EOS], [9, EOS, PAD, PAD, PAD], [10, 11, 12, EOS, PAD]])
        labels = torch.tensor([[13, 14, 15, EOS], [EOS, -100, -100, -100], [16, 17, EOS, -100]])
        return {"input_ids": input_ids, "attention_mask": input_ids.ne(PAD).long(), "labels": labels}


@pytest.fixture
def tester() -> LuongGruModelTester:
    return LuongGruModelTester()


def strip_after_eos(sequence: list[int]) -> list[int]:
    return sequence[: sequence.index(EOS) + 1] if EOS in sequence else sequence


# Configuration


def test_config_round_trip(tester, tmp_path):
    config = tester.get_config(attention_type="concat", dropout=0.2)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, LuongGruConfig)
    assert {**loaded.to_dict(), "_name_or_path": ""} == config.to_dict()
    assert loaded.num_hidden_layers == config.encoder_layers


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"attention_type": "additive"}, "attention_type"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"vocab_size": -3}, "vocab_size"),
        ({"encoder_layers": 0, "decoder_layers": 0}, "encoder_layers"),
        ({"decoder_layers": 3}, "decoder_layers"),
        ({"pad_token_id": 24}, "pad_token_id"),
        ({"eos_token_id": -1}, "eos_token_id"),
        ({"decoder_start_token_id": 99}, "decoder_start_token_id"),
        ({"dropout": 1.0}, "dropout"),
        ({"is_encoder_decoder": False}, "is_encoder_decoder"),
    ],
)
def test_config_rejects_invalid_values(tester, overrides, message):
    with pytest.raises(ValueError, match=message):
        tester.get_config(**overrides)


def test_config_edited_after_construction_fails_on_save(tester, tmp_path):
    config = tester.get_config()
    config.attention_type = "additive"
    with pytest.raises(StrictDataclassClassValidationError, match="attention_type"):
        config.save_pretrained(tmp_path)


def test_default_generation_config(tester):
    generation_config = tester.create_model().generation_config
    assert generation_config.max_new_tokens == 10
    assert (generation_config.eos_token_id, generation_config.pad_token_id) == (EOS, PAD)
    assert generation_config.decoder_start_token_id == BOS


# Shapes, masking, loss


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_output_shapes(tester, attention_type):
    model = tester.create_model(attention_type=attention_type)
    inputs = tester.prepare_inputs()
    with torch.no_grad():
        outputs = model(**inputs, output_attentions=True)
        base = model.model(input_ids=inputs["input_ids"], decoder_input_ids=inputs["input_ids"][:, :2])
    assert outputs.logits.shape == (3, 4, tester.vocab_size)
    assert outputs.loss.ndim == 0
    assert outputs.encoder_last_hidden_state.shape == (3, 5, tester.hidden_size)
    assert outputs.cross_attentions[0].shape == (3, 4, 5)
    assert outputs.cache is None  # labels given: training needs no cache
    assert base.last_hidden_state.shape == (3, 2, tester.hidden_size)
    assert base.cache.state.shape == (tester.layers, 3, tester.hidden_size)


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_padded_source_positions_are_masked(tester, attention_type):
    model = tester.create_model(attention_type=attention_type)
    inputs = tester.prepare_inputs()
    with torch.no_grad():
        batched = model(**inputs, output_attentions=True)
        derived_mask = model(input_ids=inputs["input_ids"], labels=inputs["labels"])
        alone = model(input_ids=inputs["input_ids"][1:2, :2], labels=inputs["labels"][1:2, :1])
    weights = batched.cross_attentions[0]  # (B, T, S)
    assert torch.all(weights[1, :, 2:] == 0) and torch.all(weights[2, :, 4:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    torch.testing.assert_close(derived_mask.logits, batched.logits)
    torch.testing.assert_close(alone.logits[0, 0], batched.logits[1, 0], atol=1e-5, rtol=0)


def test_clear_errors_for_left_padding_and_missing_decoder_inputs(tester):
    model = tester.create_model()
    with pytest.raises(ValueError, match="right-padded"):
        model(input_ids=torch.tensor([[PAD, 5, EOS]]), labels=torch.tensor([[EOS]]))
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model.model(input_ids=torch.tensor([[5, EOS]]))


def test_loss_is_token_mean_nll_ignoring_minus_100(tester):
    model = tester.create_model()
    inputs = tester.prepare_inputs()
    labels = inputs["labels"]
    with torch.no_grad():
        outputs = model(**inputs)
        longer = torch.cat([labels, torch.full((3, 2), -100)], dim=1)
        padded_outputs = model(input_ids=inputs["input_ids"], labels=longer)
    log_probs = outputs.logits.log_softmax(-1)
    valid = labels.ne(-100)
    expected = -log_probs[valid].gather(-1, labels[valid][:, None]).mean()
    torch.testing.assert_close(outputs.loss, expected)
    torch.testing.assert_close(padded_outputs.loss, outputs.loss)


def test_labels_are_shifted_right_into_decoder_inputs(tester):
    model = tester.create_model()
    inputs = tester.prepare_inputs()
    decoder_input_ids = shift_tokens_right(inputs["labels"], PAD, BOS)
    assert decoder_input_ids.tolist() == [[BOS, 13, 14, 15], [BOS, EOS, PAD, PAD], [BOS, 16, 17, EOS]]
    with torch.no_grad():
        implicit = model(**inputs)
        explicit = model(**inputs, decoder_input_ids=decoder_input_ids)
    torch.testing.assert_close(implicit.logits, explicit.logits)


def test_decoder_starts_from_each_encoder_layer(tester):
    model = tester.create_model()
    input_ids = tester.prepare_inputs()["input_ids"]
    with torch.no_grad():
        encoder_outputs = model.model.encoder(input_ids)
        _, final = model.model.encoder.gru(model.model.encoder.embed_tokens(input_ids[:1]))  # (2L, 1, H), unpadded
    expected = final.view(tester.layers, 2, 1, tester.hidden_size).sum(1)  # layer l <- forward_l + backward_l
    torch.testing.assert_close(initial_decoder_state(encoder_outputs)[:, :1], expected)


# Teacher forcing in one pass == step-by-step decoding


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_one_pass_teacher_forcing_equals_step_by_step(attention_type):
    tester = LuongGruModelTester(hidden_size=32)
    model = tester.create_model(attention_type=attention_type)
    inputs = tester.prepare_inputs()
    decoder_input_ids = shift_tokens_right(inputs["labels"], PAD, BOS)
    with torch.no_grad():
        one_pass = model(inputs["input_ids"], inputs["attention_mask"], decoder_input_ids=decoder_input_ids).logits
        with_labels = model(**inputs).logits  # skips the labels' padding: only the real positions are computed
        encoder_outputs = model.model.encoder(inputs["input_ids"], inputs["attention_mask"])
        cache, steps = None, []
        for t in range(decoder_input_ids.shape[1]):
            step = model(
                attention_mask=inputs["attention_mask"],
                decoder_input_ids=decoder_input_ids[:, t : t + 1],
                encoder_outputs=encoder_outputs,
                cache=cache,
                use_cache=True,
            )
            cache = step.cache
            steps.append(step.logits)
    assert (one_pass - torch.cat(steps, dim=1)).abs().max() <= 1e-5
    real = inputs["labels"] != -100
    assert (with_labels[real] - one_pass[real]).abs().max() <= 1e-5


def test_decoder_attention_mask_skips_padding_without_changing_the_loss():
    """The decoder GRU packed by target length (given, or derived from the labels): exact on every real token."""
    torch.manual_seed(0)
    model = LuongGruForConditionalGeneration(LuongGruConfig(vocab_size=30, hidden_size=16, dropout=0.0))
    input_ids = torch.tensor([[5, 6, 7, 2], [8, 2, 0, 0], [9, 10, 2, 0]])
    labels = torch.tensor([[11, 12, 2, -100, -100], [13, 2, -100, -100, -100], [14, 15, 16, 17, 2]])
    mask = labels.ne(-100)
    plain = model(input_ids=input_ids, labels=labels, decoder_attention_mask=torch.ones_like(labels))  # no skipping
    packed = model(input_ids=input_ids, labels=labels, decoder_attention_mask=mask)
    torch.testing.assert_close(packed.logits[mask], plain.logits[mask])
    torch.testing.assert_close(packed.loss, plain.loss)
    plain_grads = torch.autograd.grad(plain.loss, list(model.parameters()))
    packed_grads = torch.autograd.grad(packed.loss, list(model.parameters()))
    for plain_grad, packed_grad in zip(plain_grads, packed_grads, strict=True):
        torch.testing.assert_close(packed_grad, plain_grad)


def test_free_running_feeds_back_its_greedy_choice(tester):
    model = tester.create_model()
    inputs = tester.prepare_inputs()
    with torch.no_grad():
        free = model.forward_free_running(inputs["input_ids"], inputs["attention_mask"], max_target_length=6)
        fed_back = torch.cat([torch.full((3, 1), BOS), free.argmax(-1)[:, :-1]], dim=1)
        forced = model(input_ids=inputs["input_ids"], decoder_input_ids=fed_back).logits
    assert free.shape == (3, 6, tester.vocab_size)
    torch.testing.assert_close(free, forced, atol=1e-5, rtol=0)


def test_free_running_backpropagates(tester):
    model = tester.create_model().train()
    inputs = tester.prepare_inputs()
    logits = model.forward_free_running(inputs["input_ids"], max_target_length=4)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), inputs["labels"].flatten(), ignore_index=-100).backward()
    assert model.model.encoder.embed_tokens.weight.grad.abs().sum() > 0


# Initialisation, tying, save/load, safety


def test_init_matches_pytorch_defaults():
    model = LuongGruModelTester(vocab_size=400, hidden_size=64).create_model(attention_type="concat")
    bound = 64**-0.5
    assert 0.9 < model.model.encoder.embed_tokens.weight.std().item() < 1.1
    for module in (model.model.encoder.gru, model.model.decoder.gru):
        assert all(param.abs().max() <= bound for param in module.parameters())
    assert model.lm_head.weight.abs().max() <= bound and model.lm_head.weight.std() > bound / 3
    assert model.model.decoder.concat.weight.abs().max() <= (128**-0.5)
    v = model.model.decoder.attention.v
    assert torch.isfinite(v).all() and v.abs().max() <= bound and v.std() > bound / 3


def test_save_load_round_trip_keeps_weights_and_ties(tester, tmp_path):
    model = tester.create_model(attention_type="general")
    model.save_pretrained(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir() if path.suffix in {".safetensors", ".bin", ".pt"}) == [
        "model.safetensors"
    ]
    loaded, info = LuongGruForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set() and info["mismatched_keys"] == set()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)
    assert loaded.model.decoder.embed_tokens.weight is loaded.model.encoder.embed_tokens.weight
    assert loaded.get_output_embeddings().weight is not loaded.get_input_embeddings().weight
    assert loaded.generation_config.max_new_tokens == 10


def test_untied_embeddings_round_trip(tester, tmp_path):
    model = tester.create_model(tie_word_embeddings=False)
    assert model.model.decoder.embed_tokens.weight is not model.model.encoder.embed_tokens.weight
    model.save_pretrained(tmp_path)
    loaded, info = LuongGruForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set()
    torch.testing.assert_close(loaded.model.decoder.embed_tokens.weight, model.model.decoder.embed_tokens.weight)


def test_loading_never_unpickles(tester, tmp_path, monkeypatch):
    tester.create_model().save_pretrained(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("loading must not unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    LuongGruForConditionalGeneration.from_pretrained(tmp_path)


def test_loading_into_a_config_that_does_not_fit_fails_clearly(tester, tmp_path):
    tester.create_model().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"do not fit this configuration: .*embed_tokens.weight is \(24, 16\)"):
        LuongGruForConditionalGeneration.from_pretrained(tmp_path, vocab_size=30)


# generate()


def hand_written_greedy(model, input_ids: torch.Tensor, max_new_tokens: int = 10) -> list[int]:
    """One source sequence, no padding: the tutorial's greedy search, stopping at EOS."""
    encoder_outputs = model.model.encoder(input_ids)
    state = initial_decoder_state(encoder_outputs)
    tokens = [BOS]
    for _ in range(max_new_tokens):
        features, state, _ = model.model.decoder(
            torch.tensor([[tokens[-1]]]), state, encoder_outputs.last_hidden_state, encoder_outputs.attention_mask
        )
        tokens.append(model.lm_head(features)[0, -1].argmax().item())
        if tokens[-1] == EOS:
            break
    return tokens


@functools.cache
def memorised_model(attention_type: str = "dot") -> LuongGruForConditionalGeneration:
    """A tiny model overfitted on the tester's three pairs: its replies are the labels, of lengths 4, 1 and 3."""
    tester = LuongGruModelTester()
    model = tester.create_model(attention_type=attention_type, dropout=0.0).train()
    inputs = tester.prepare_inputs()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        optimizer.zero_grad()
        model(**inputs).loss.backward()
        optimizer.step()
    return model.eval()


def greedy_replies_checked_against_loop(model, inputs: dict[str, torch.Tensor]) -> list[list[int]]:
    with torch.no_grad():
        batched = model.generate(inputs["input_ids"]).tolist()
        for row, length, output in zip(inputs["input_ids"], inputs["attention_mask"].sum(1), batched, strict=True):
            assert strip_after_eos(output) == hand_written_greedy(model, row[None, :length])
    return [strip_after_eos(output)[1:] for output in batched]


@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_greedy_generate_equals_hand_written_loop_and_stops_at_eos(tester, attention_type):
    inputs = tester.prepare_inputs()
    greedy_replies_checked_against_loop(tester.create_model(attention_type=attention_type), inputs)
    replies = greedy_replies_checked_against_loop(memorised_model(attention_type), inputs)
    assert replies == [[13, 14, 15, EOS], [EOS], [16, 17, EOS]]


def test_generate_defaults_to_ten_new_tokens(tester):
    model = tester.create_model()
    with torch.no_grad():
        model.lm_head.bias[EOS] = -100.0
        assert model.generate(tester.prepare_inputs()["input_ids"]).shape == (3, 11)


def test_num_beams_one_and_no_cache_equal_greedy(tester):
    model = memorised_model()
    inputs = tester.prepare_inputs()
    with torch.no_grad():
        greedy = model.generate(inputs["input_ids"], attention_mask=inputs["attention_mask"])
        one_beam = model.generate(inputs["input_ids"], attention_mask=inputs["attention_mask"], num_beams=1)
        no_cache = model.generate(inputs["input_ids"], use_cache=False)  # re-decodes the prefix at every step
    assert torch.equal(greedy, one_beam) and torch.equal(greedy, no_cache)


@pytest.mark.parametrize("generate_kwargs", [{}, {"num_beams": 3}], ids=["greedy", "beam"])
def test_batched_generate_equals_per_example(tester, generate_kwargs):
    model = memorised_model()
    inputs = tester.prepare_inputs()
    with torch.no_grad():
        batched = model.generate(inputs["input_ids"], **generate_kwargs).tolist()
        for row, length, output in zip(inputs["input_ids"], inputs["attention_mask"].sum(1), batched, strict=True):
            single = model.generate(row[None, :length], **generate_kwargs)[0].tolist()
            assert strip_after_eos(output) == single
    assert [len(strip_after_eos(output)) for output in batched] == [5, 2, 4]


def test_beam_search_returns_distinct_sequences_sorted_by_their_scores(tester):
    model = memorised_model()
    inputs = tester.prepare_inputs()
    with torch.no_grad():
        out = model.generate(
            inputs["input_ids"],
            num_beams=4,
            num_return_sequences=3,
            length_penalty=0.7,
            return_dict_in_generate=True,
            output_scores=True,
        )
        sequences, scores = out.sequences.view(3, 3, -1), out.sequences_scores.view(3, 3)
        for example, (candidates, candidate_scores) in enumerate(zip(sequences, scores, strict=True)):
            replies = [strip_after_eos(candidate.tolist()) for candidate in candidates]
            assert len({tuple(reply) for reply in replies}) == 3
            assert candidate_scores.tolist() == sorted(candidate_scores.tolist(), reverse=True)
            for reply, score in zip(replies, candidate_scores, strict=True):
                # The beam's score, recomputed in one teacher-forced pass: proves the cache was reordered right.
                labels = torch.tensor([reply[1:]])
                logits = model(input_ids=inputs["input_ids"][example : example + 1], labels=labels).logits
                total = logits.log_softmax(-1)[0].gather(-1, labels[0][:, None]).sum()
                torch.testing.assert_close(score, total / labels.shape[1] ** 0.7, atol=1e-4, rtol=0)


def test_beam_search_honours_ngram_blocking_and_min_length(tester):
    model = memorised_model()
    input_ids = tester.prepare_inputs()["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids, num_beams=3, no_repeat_ngram_size=1, min_new_tokens=4, max_new_tokens=8)
    for sequence in out.tolist():
        reply = strip_after_eos(sequence)
        assert len(reply) == len(set(reply)) and len(reply) >= 1 + 4


def test_sampling(tester):
    model = memorised_model()
    input_ids = tester.prepare_inputs()["input_ids"]
    with torch.no_grad():
        greedy = model.generate(input_ids)
        assert torch.equal(model.generate(input_ids, do_sample=True, top_k=1), greedy)
        torch.manual_seed(1)
        first = model.generate(input_ids, do_sample=True, top_k=5, top_p=0.9, temperature=2.0)
        torch.manual_seed(1)
        second = model.generate(input_ids, do_sample=True, top_k=5, top_p=0.9, temperature=2.0)
    assert torch.equal(first, second)
    assert first[:, 0].eq(BOS).all() and first.shape[0] == 3


# Auto classes and remote code


def test_auto_classes_resolve_to_luong_gru(tester):
    config = tester.get_config()
    assert isinstance(AutoModelForSeq2SeqLM.from_config(config), LuongGruForConditionalGeneration)
    assert isinstance(AutoModel.from_config(config), LuongGruModel)
    assert AutoConfig.for_model("luong_gru", vocab_size=10).vocab_size == 10


def test_save_writes_auto_map_and_modeling_files(tester, tmp_path):
    tester.create_model().save_pretrained(tmp_path)
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map == {
        "AutoConfig": "configuration_luong_gru.LuongGruConfig",
        "AutoModelForSeq2SeqLM": "modeling_luong_gru.LuongGruForConditionalGeneration",
    }
    assert (tmp_path / "modeling_luong_gru.py").is_file() and (tmp_path / "configuration_luong_gru.py").is_file()
    # With the package installed, the Auto classes load the folder with the registered (local) classes.
    loaded, info = AutoModelForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is LuongGruForConditionalGeneration and info["missing_keys"] == set()
    assert type(AutoModel.from_pretrained(tmp_path)) is LuongGruModel


def test_auto_tokenizer_maps_the_config_to_the_package_tokenizer(tmp_path):
    tokenizer = LuongGruTokenizer.from_words(["where", "am", "i", "?"])
    tester = LuongGruModelTester(vocab_size=len(tokenizer))
    tester.create_model().save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    tokenizer_config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    del tokenizer_config["tokenizer_class"]  # leaves the model's config as the only hint
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    assert type(AutoTokenizer.from_pretrained(tmp_path)) is LuongGruTokenizer


def test_docstring_examples_run():
    for module in (configuration_luong_gru, modeling_luong_gru):
        assert doctest.testmod(module).failed == 0


REMOTE_LOAD_SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    # A plain path entry: with -S the .pth files, among them the editable install's finder, are never processed.
    sys.path.append({site_packages!r})
    assert importlib.util.find_spec("modeling_seq2seq") is None, "the package must not be importable here"
    import torch
    from transformers import AutoModelForSeq2SeqLM
    model = AutoModelForSeq2SeqLM.from_pretrained({model_dir!r}, trust_remote_code=True)
    assert "modeling_seq2seq" not in sys.modules
    print(json.dumps(model.generate(torch.tensor({input_ids!r}), num_beams=2).tolist()))
    """
)


@pytest.mark.slow
def test_trust_remote_code_loads_without_the_package(tester, tmp_path):
    model = memorised_model()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    input_ids = tester.prepare_inputs()["input_ids"]
    script = REMOTE_LOAD_SCRIPT.format(
        site_packages=sysconfig.get_paths()["purelib"], model_dir=str(model_dir), input_ids=input_ids.tolist()
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    with torch.no_grad():
        expected = model.generate(input_ids, num_beams=2).tolist()
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected
