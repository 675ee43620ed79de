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
from transformers.cache_utils import Cache, DynamicCache

from modeling_seq2seq import (
    LuongGruCache,
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
    assert outputs.cross_attentions[0].shape == (3, 1, 4, 5)  # (B, heads, T, S): one head
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
    weights = batched.cross_attentions[0][:, 0]  # (B, T, S) of the one head
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


# The transformers contract: optional special ids, the Cache API, per-layer hidden states, pass-through kwargs


def test_config_defaults_and_optional_special_ids():
    assert LuongGruConfig().vocab_size == 7827  # the tutorial's vocabulary on the full corpus, plus 4 specials
    assert AutoConfig.for_model("luong_gru").hidden_size == 500
    config = LuongGruConfig(vocab_size=24, eos_token_id=None, pad_token_id=None)
    assert config.eos_token_id is None and config.pad_token_id is None
    assert LuongGruConfig(vocab_size=24, eos_token_id=[EOS, 13]).eos_token_id == [EOS, 13]
    with pytest.raises(ValueError, match="eos_token_id"):
        LuongGruConfig(vocab_size=24, eos_token_id=[EOS, 24])


def test_eos_token_id_none_generates_to_max_new_tokens(tester):
    model = memorised_model()  # stops at EOS after 4, 1 and 3 tokens
    input_ids = tester.prepare_inputs()["input_ids"]
    with torch.no_grad():
        full = model.generate(input_ids, eos_token_id=None, max_new_tokens=7)
        model.config.eos_token_id = model.generation_config.eos_token_id = None
        from_config = model.generate(input_ids, max_new_tokens=7)
        model.config.eos_token_id = model.generation_config.eos_token_id = EOS
        several = model.generate(input_ids, eos_token_id=[EOS, 16], max_new_tokens=7)
    assert full.shape == from_config.shape == (3, 8) and torch.equal(full, from_config)
    assert [strip_after_eos(row)[1:] for row in full.tolist()] == [[13, 14, 15, EOS], [EOS], [16, 17, EOS]]
    assert several[2, 1].item() == 16 and several[2, 2:].eq(PAD).all()  # row 2 stopped at its first token, 16


def test_generate_continues_from_a_returned_cache(tester):
    model = tester.create_model()
    inputs = {key: tester.prepare_inputs()[key] for key in ("input_ids", "attention_mask")}
    kwargs = {"eos_token_id": None, "return_dict_in_generate": True}
    with torch.no_grad():
        whole = model.generate(**inputs, max_new_tokens=6, **kwargs)
        first = model.generate(**inputs, max_new_tokens=2, **kwargs)
        assert isinstance(first.cache, Cache) and all(first.cache.is_linear) and len(first.cache) == tester.layers
        assert first.cache.state.shape == (tester.layers, 3, tester.hidden_size)
        continued = model.generate(
            **inputs, decoder_input_ids=first.sequences, cache=first.cache, max_new_tokens=4, **kwargs
        )
    assert torch.equal(continued.sequences, whole.sequences)
    torch.testing.assert_close(continued.cache.state, whole.cache.state)


def test_stateful_cache_refuses_assisted_decoding_with_transformers_error(tester):
    model = tester.create_model()
    with pytest.raises(ValueError, match="not supported with stateful models"):
        model.generate(tester.prepare_inputs()["input_ids"], prompt_lookup_num_tokens=2)


def test_past_key_values_is_the_deprecated_name_of_cache(tester):
    model = tester.create_model()
    inputs = tester.prepare_inputs()
    step = {"input_ids": inputs["input_ids"], "decoder_input_ids": torch.full((3, 1), BOS), "use_cache": True}
    with torch.no_grad():
        cache = model(**step).cache
        state = cache.state.clone()
        expected = model(**step, cache=LuongGruCache(state.clone())).logits
        with pytest.warns(FutureWarning, match="`past_key_values` is deprecated"):
            renamed = model(**step, past_key_values=LuongGruCache(state.clone())).logits
        with pytest.raises(TypeError, match="must be a LuongGruCache"):
            model(**step, cache=DynamicCache(config=model.config))
    torch.testing.assert_close(renamed, expected, rtol=0, atol=0)


def test_prepare_inputs_for_generation_passes_kwargs_through(tester):
    model = tester.create_model()
    inputs = tester.prepare_inputs()
    decoder_ids = torch.tensor([[BOS, 5, 6]] * 3)
    with torch.no_grad():
        encoder_outputs = model.get_encoder()(inputs["input_ids"])
        cache = model(encoder_outputs=encoder_outputs, decoder_input_ids=decoder_ids[:, :2], use_cache=True).cache
    extra = {"output_hidden_states": True, "output_attentions": True, "use_cache": True, "custom_arg": "value"}
    decoder_attention_mask = torch.ones_like(decoder_ids)
    prepared = model.prepare_inputs_for_generation(
        decoder_ids,
        cache=cache,
        attention_mask=inputs["attention_mask"],
        encoder_outputs=encoder_outputs,
        decoder_attention_mask=decoder_attention_mask,
        **extra,
    )
    assert prepared["decoder_input_ids"].tolist() == [[6]] * 3  # the state holds everything before the new token
    assert prepared["cache"] is cache and prepared["encoder_outputs"] is encoder_outputs
    assert prepared["decoder_attention_mask"] is decoder_attention_mask
    assert torch.equal(prepared["attention_mask"], inputs["attention_mask"])
    assert {key: prepared[key] for key in extra} == extra
    assert model.prepare_inputs_for_generation(decoder_ids)["decoder_input_ids"].shape == (3, 3)  # no cache yet


def one_gru_layer(gru: torch.nn.GRU, layer: int) -> torch.nn.GRU:
    """A one-layer `nn.GRU` holding layer `layer` of `gru`: an independent reference for per-layer outputs."""
    input_size = getattr(gru, f"weight_ih_l{layer}").shape[1]  # 2H above a bidirectional layer
    single = torch.nn.GRU(input_size, gru.hidden_size, 1, batch_first=True, bidirectional=gru.bidirectional)
    suffixes = ("", "_reverse") if gru.bidirectional else ("",)
    single.load_state_dict(
        {
            f"{kind}_l0{suffix}": getattr(gru, f"{kind}_l{layer}{suffix}")
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            for suffix in suffixes
        }
    )
    return single


@pytest.mark.parametrize("packed_decoder", [False, True], ids=["plain", "decoder_attention_mask"])
def test_output_hidden_states_returns_every_layer(packed_decoder):
    tester = LuongGruModelTester(layers=3)
    hidden = tester.hidden_size
    model = tester.create_model()
    inputs = tester.prepare_inputs()
    if packed_decoder:
        inputs["decoder_attention_mask"] = inputs["labels"].ne(-100)
    with torch.no_grad():
        plain = model(**inputs)
        outputs = model(**inputs, output_hidden_states=True)
        model.config.output_hidden_states = True
        from_config = model(**inputs)
    encoder_states, decoder_states = outputs.encoder_hidden_states, outputs.decoder_hidden_states
    assert len(encoder_states) == len(decoder_states) == 3 + 1  # the embeddings, then every GRU layer
    assert all(state.shape == (3, 5, hidden) for state in encoder_states)
    assert all(state.shape == (3, 4, hidden) for state in decoder_states)
    torch.testing.assert_close(outputs.logits, plain.logits)
    torch.testing.assert_close(encoder_states[-1], plain.encoder_last_hidden_state)
    torch.testing.assert_close(from_config.decoder_hidden_states[-1], decoder_states[-1])
    encoder, decoder = model.model.encoder, model.model.decoder
    with torch.no_grad():
        torch.testing.assert_close(encoder_states[0], encoder.embed_tokens(inputs["input_ids"]))
        # Encoder layers 0 and 1 run alone as one-layer nn.GRUs on row 0 (no padding); a layer reads the one below
        # with its directions concatenated, and the hidden states hold them summed.
        embeds = encoder.embed_tokens(inputs["input_ids"][:1])  # (1, S, H)
        layer_0 = one_gru_layer(encoder.gru, 0)(embeds)[0]  # (1, S, 2H)
        layer_1 = one_gru_layer(encoder.gru, 1)(layer_0)[0]
        torch.testing.assert_close(encoder_states[1][:1], layer_0[..., :hidden] + layer_0[..., hidden:])
        torch.testing.assert_close(encoder_states[2][:1], layer_1[..., :hidden] + layer_1[..., hidden:])
        # The decoder's top layer is what the stacked GRU hands the attention, on every real position.
        encoder_outputs = encoder(inputs["input_ids"], inputs["attention_mask"])
        decoder_embeds = decoder.embed_tokens(shift_tokens_right(inputs["labels"], PAD, BOS))
        top = decoder.gru(decoder_embeds, initial_decoder_state(encoder_outputs))[0]  # (B, T, H)
    real = inputs["labels"].ne(-100)  # with labels, the decoder skips their right padding, mask given or not
    torch.testing.assert_close(decoder_states[-1][real], top[real])
    torch.testing.assert_close(decoder_states[0], decoder_embeds)  # eval mode: dropout is the identity


def test_hidden_states_in_generate_and_cross_attentions_with_a_head_dimension(tester):
    model = tester.create_model()
    inputs = tester.prepare_inputs()
    with torch.no_grad():
        out = model.generate(
            inputs["input_ids"],
            eos_token_id=None,
            max_new_tokens=3,
            output_hidden_states=True,
            output_attentions=True,
            return_dict_in_generate=True,
        )
        model.config.output_attentions = True
        from_config = model(**inputs)
    assert len(out.encoder_hidden_states) == tester.layers + 1
    assert [len(step) for step in out.decoder_hidden_states] == [tester.layers + 1] * 3
    assert all(state.shape == (3, 1, tester.hidden_size) for step in out.decoder_hidden_states for state in step)
    assert [tuple(step[0].shape) for step in out.cross_attentions] == [(3, 1, 1, 5)] * 3  # (B, heads, T, S)
    assert out.encoder_attentions is None and not any(out.decoder_attentions)  # no self-attention
    assert from_config.cross_attentions[0].shape == (3, 1, 4, 5)


def test_inputs_embeds_equal_input_ids(tester):
    model = tester.create_model()
    inputs = tester.prepare_inputs()
    decoder_input_ids = shift_tokens_right(inputs["labels"], PAD, BOS)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        from_ids = model(**inputs)
        from_embeds = model(
            inputs_embeds=embed(inputs["input_ids"]),
            attention_mask=inputs["attention_mask"],
            decoder_inputs_embeds=embed(decoder_input_ids),
            labels=inputs["labels"],
        )
    torch.testing.assert_close(from_embeds.logits, from_ids.logits)
    torch.testing.assert_close(from_embeds.loss, from_ids.loss)
    with pytest.raises(ValueError, match="exactly one of `input_ids` and `inputs_embeds`"):
        model(input_ids=inputs["input_ids"], inputs_embeds=embed(inputs["input_ids"]), labels=inputs["labels"])


# Every parameter of the model, by name and shape: the layout checkpoints have had since the first release.
CHECKPOINT_LAYOUT = {
    "model.encoder.embed_tokens.weight": ("V", "H"),
    **{
        f"model.encoder.gru.{kind}_l{layer}{suffix}": shape
        for layer in range(2)
        for suffix in ("", "_reverse")
        for kind, shape in (
            ("weight_ih", ("3H", "2H" if layer else "H")),  # above layer 0, the input is both directions
            ("weight_hh", ("3H", "H")),
            ("bias_ih", ("3H",)),
            ("bias_hh", ("3H",)),
        )
    },
    **{
        f"model.decoder.gru.{kind}_l{layer}": ("3H", "H") if kind.startswith("weight") else ("3H",)
        for layer in range(2)
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    },
    "model.decoder.attention.attn.weight": ("H", "H"),
    "model.decoder.attention.attn.bias": ("H",),
    "model.decoder.concat.weight": ("H", "2H"),
    "model.decoder.concat.bias": ("H",),
    "lm_head.weight": ("V", "H"),
    "lm_head.bias": ("V",),
}


def test_checkpoints_in_the_released_layout_still_load(tester, tmp_path):
    """A checkpoint written with the released parameter names (no model code involved) loads with nothing missing."""
    from safetensors.torch import save_file

    sizes = {
        "V": tester.vocab_size,
        "H": tester.hidden_size,
        "2H": 2 * tester.hidden_size,
        "3H": 3 * tester.hidden_size,
    }
    generator = torch.Generator().manual_seed(0)
    saved = {
        name: torch.randn([sizes[dim] for dim in shape], generator=generator)
        for name, shape in CHECKPOINT_LAYOUT.items()
    }
    tester.get_config(attention_type="general").save_pretrained(tmp_path)
    save_file(saved, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model, info = LuongGruForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert set(model.state_dict()) == set(saved) | {"model.decoder.embed_tokens.weight"}  # tied to the encoder's
    for name, tensor in saved.items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0)
    inputs = tester.prepare_inputs()
    with torch.no_grad():  # the per-layer path reads the same parameters
        torch.testing.assert_close(model(**inputs, output_hidden_states=True).logits, model(**inputs).logits)
