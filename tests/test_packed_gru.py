"""Tests of PackedGru against nn.GRU (outputs, final states, every gradient), and of the model using it."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration
from modeling_seq2seq.packed_gru import PackedGru

HIDDEN = 8


def random_lengths(batch_size: int, generator: torch.Generator, max_length: int = 7) -> torch.Tensor:
    """Random lengths in [1, max_length], the first row of length 1 and (batch > 1) one of max_length."""
    lengths = torch.randint(1, max_length + 1, (batch_size,), generator=generator)
    lengths[0] = 1
    if batch_size > 1:
        lengths[-1] = max_length
    return lengths


def run_and_differentiate(gru: nn.GRU, inputs, lengths, initial_state) -> list[torch.Tensor]:
    """Outputs (padded), final state and the gradients of a loss touching both, w.r.t. inputs, state and weights."""
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    packed_outputs, final = gru(packed, initial_state)
    outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True)  # (B, T, D * H)
    weights = torch.linspace(-1, 1, outputs.numel()).view_as(outputs)  # distinct weight per output element
    loss = (outputs * weights).sum() + (final * final.flip(-1)).sum()
    wrt = [inputs] + ([initial_state] if initial_state is not None else []) + list(gru.parameters())
    return [outputs, final, *torch.autograd.grad(loss, wrt)]


@pytest.mark.parametrize("batch_size", [1, 64])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_outputs_states_and_all_gradients_equal_nn_gru(batch_size, num_layers, bidirectional, with_initial_state):
    generator = torch.Generator().manual_seed(batch_size * 100 + num_layers * 10 + bidirectional)
    torch.manual_seed(num_layers)
    reference = nn.GRU(HIDDEN, HIDDEN, num_layers, batch_first=True, bidirectional=bidirectional)
    packed_gru = PackedGru(HIDDEN, HIDDEN, num_layers, batch_first=True, bidirectional=bidirectional)
    packed_gru.load_state_dict(reference.state_dict())
    lengths = random_lengths(batch_size, generator)
    inputs = torch.randn(batch_size, int(lengths.max()), HIDDEN, generator=generator, requires_grad=True)
    directions = 2 if bidirectional else 1
    initial_state = None
    if with_initial_state:
        initial_state = torch.randn(num_layers * directions, batch_size, HIDDEN, generator=generator)
        initial_state.requires_grad_()
    packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
    assert packed_gru.uses_packed_path(packed)
    expected = run_and_differentiate(reference, inputs, lengths, initial_state)
    actual = run_and_differentiate(packed_gru, inputs, lengths, initial_state)
    names = ["outputs", "final state", "input grad"] + (["state grad"] if with_initial_state else [])
    names += [name + " grad" for name, _ in packed_gru.named_parameters()]
    assert len(actual) == len(expected) == len(names)
    for name, got, want in zip(names, actual, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


def test_same_parameter_names_and_shapes_as_nn_gru():
    reference = nn.GRU(HIDDEN, 2 * HIDDEN, 2, bidirectional=True, batch_first=True)
    packed_gru = PackedGru(HIDDEN, 2 * HIDDEN, 2, bidirectional=True, batch_first=True)
    shapes = {name: tensor.shape for name, tensor in reference.state_dict().items()}
    assert {name: tensor.shape for name, tensor in packed_gru.state_dict().items()} == shapes
    assert "weight_hh_l1_reverse" in shapes


def test_nn_gru_kernels_serve_inference_autocast_and_unpacked_inputs():
    gru = PackedGru(HIDDEN, HIDDEN, batch_first=True)
    packed = pack_padded_sequence(torch.randn(2, 3, HIDDEN), [3, 1], batch_first=True)
    assert gru.uses_packed_path(packed)
    assert not gru.uses_packed_path(torch.randn(2, 3, HIDDEN))
    with torch.no_grad():
        assert not gru.uses_packed_path(packed)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not gru.uses_packed_path(packed)


def test_with_dropout_training_lowers_the_loss_and_eval_is_deterministic():
    torch.manual_seed(0)
    gru = PackedGru(HIDDEN, HIDDEN, 3, dropout=0.3, bidirectional=True, batch_first=True)
    lengths = torch.tensor([5, 1, 3, 4])
    inputs = torch.randn(4, 5, HIDDEN)
    targets = torch.randn(4, 5, 2 * HIDDEN).tanh()
    mask = torch.arange(5)[None, :] < lengths[:, None]  # (B, T)
    optimizer = torch.optim.Adam(gru.parameters(), lr=1e-2)

    def loss_of_one_pass() -> torch.Tensor:
        packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
        outputs, _ = pad_packed_sequence(gru(packed)[0], batch_first=True)  # (B, T, 2H)
        return (outputs - targets)[mask].pow(2).mean()

    losses = []
    for _ in range(60):
        loss = loss_of_one_pass()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10]), losses
    gru.eval()
    with torch.enable_grad():  # the packed path, in eval mode: dropout off
        first, second = loss_of_one_pass(), loss_of_one_pass()
    assert first.item() == second.item()


def tiny_model(gru_class: type[nn.GRU], state_dict: dict | None = None, **overrides):
    """A tiny seeded model whose encoder and decoder GRUs are `gru_class` (PackedGru is the model's own)."""
    torch.manual_seed(0)
    config = LuongGruConfig(vocab_size=30, hidden_size=HIDDEN, encoder_layers=2, decoder_layers=2, **overrides)
    model = LuongGruForConditionalGeneration(config)
    for module in (model.model.encoder, model.model.decoder):
        old = module.gru
        module.gru = gru_class(
            old.input_size, old.hidden_size, old.num_layers, True, True, old.dropout, old.bidirectional
        )  # bias, batch_first
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model


def model_batch() -> dict[str, torch.Tensor]:
    """Right-padded sources and -100-padded labels, one target of length 1."""
    input_ids = torch.tensor([[5, 6, 7, 8, 2], [9, 2, 0, 0, 0], [10, 11, 12, 2, 0]])
    labels = torch.tensor([[13, 14, 15, 2], [2, -100, -100, -100], [16, 17, 2, -100]])
    return {"input_ids": input_ids, "attention_mask": input_ids.ne(0).long(), "labels": labels}


def loss_logits_and_grads(model, **batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    outputs = model(**batch)
    outputs.loss.backward()
    return outputs.loss, outputs.logits, {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("attention_type", ["dot", "general", "concat"])
def test_model_with_packed_gru_equals_model_with_nn_gru(attention_type):
    model = LuongGruForConditionalGeneration(
        LuongGruConfig(vocab_size=30, hidden_size=HIDDEN, encoder_layers=2, decoder_layers=2)
    )
    assert isinstance(model.model.encoder.gru, PackedGru) and isinstance(model.model.decoder.gru, PackedGru)
    ours = tiny_model(PackedGru, attention_type=attention_type, dropout=0.0)
    reference = tiny_model(nn.GRU, ours.state_dict(), attention_type=attention_type, dropout=0.0)
    batch = model_batch()
    loss, logits, grads = loss_logits_and_grads(ours, **batch)
    ref_loss, ref_logits, ref_grads = loss_logits_and_grads(reference, **batch)
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_labels_without_decoder_mask_equal_labels_with_one():
    model = tiny_model(PackedGru, dropout=0.0)
    batch = model_batch()
    mask = batch["labels"].ne(-100)
    loss, logits, grads = loss_logits_and_grads(model, **batch)
    masked_loss, masked_logits, masked_grads = loss_logits_and_grads(model, **batch, decoder_attention_mask=mask)
    torch.testing.assert_close(loss, masked_loss, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(logits[mask], masked_logits[mask], atol=1e-6, rtol=1e-6)
    assert logits.shape == masked_logits.shape == (3, 4, 30)
    assert logits[~mask].abs().max() == 0  # padded positions are not computed
    for name, grad in grads.items():
        torch.testing.assert_close(grad, masked_grads[name], atol=1e-6, rtol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_labels_with_inner_minus_100_run_the_full_head():
    model = tiny_model(PackedGru, dropout=0.0).eval()
    batch = model_batch()
    batch["labels"][0, 1] = -100  # not right padding: nothing may be skipped
    with torch.no_grad():
        outputs = model(**batch)
        unpacked = model(**batch, decoder_attention_mask=torch.ones_like(batch["labels"]))
    torch.testing.assert_close(outputs.logits, unpacked.logits)
    torch.testing.assert_close(outputs.loss, unpacked.loss)
