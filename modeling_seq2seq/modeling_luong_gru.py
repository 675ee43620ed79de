"""PyTorch Luong-attention GRU encoder-decoder: the PyTorch Chatbot Tutorial's model as a `transformers` model.

Everything is batch-first. Shapes in comments use B (batch), S (source length), T (target length), H (hidden size),
L (layers) and V (vocabulary size).
"""

import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, LinearAttentionLayer
from transformers.modeling_outputs import Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.utils import ModelOutput
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_luong_gru import ATTENTION_TYPES, LuongGruConfig
from .packed_gru import PackedGru

# nn.GRU's parameters of one layer and direction, in the order its kernel takes them.
GRU_WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


@dataclass
class LuongGruEncoderOutput(ModelOutput):
    r"""
    Output of [`LuongGruEncoder`]. Every field is batch-first, so that `generate()` can expand it for beam search.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, source_length, hidden_size)`):
            Encoder outputs with the forward and backward directions summed; zeros at padded positions.
        final_state (`torch.FloatTensor` of shape `(batch_size, encoder_layers, hidden_size)`):
            Final state of every encoder layer, forward and backward directions summed: the decoder's initial state.
        attention_mask (`torch.BoolTensor` of shape `(batch_size, source_length)`):
            Source positions holding real tokens. Kept here because decoding steps in `generate()` only see
            `encoder_outputs`, so they mask exactly what the encoder read.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            The embeddings, then the outputs of every GRU layer (directions summed), each `(B, S, H)`; the last one
            equals `last_hidden_state`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    final_state: torch.FloatTensor | None = None
    attention_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class LuongGruCacheLayer(LinearAttentionLayer):
    """
    One decoder GRU layer's state: a recurrent state with no sequence dimension, as transformers' linear-attention
    layers hold it (batch first, so that beam search reorders dimension 0).

    Each step replaces the state rather than copying into a fixed buffer: gradients can then run through decoding
    steps, and a continued batch may have another size.
    """

    # `generate()` auto-compiles the forward for compileable caches on accelerators; the packed GRU does not compile.
    is_compileable = False

    def update_recurrent_state(self, recurrent_states: torch.Tensor, state_idx: int = 0, **kwargs) -> torch.Tensor:
        self.dtype, self.device = recurrent_states.dtype, recurrent_states.device
        self.recurrent_states[state_idx] = recurrent_states
        self.is_recurrent_states_initialized[state_idx] = True
        self.has_previous_state[state_idx] = True
        return recurrent_states


class LuongGruCache(Cache):
    """
    The decoder's recurrent state between `generate()` steps: with it, each new token costs one decoder step.

    A transformers [`~cache_utils.Cache`] of one [`LuongGruCacheLayer`] per decoder layer. Like transformers' own
    caches it is updated in place by the forward that receives it, so `generate(..., cache=previous.cache)` continues
    from where a previous call stopped (pass that call's `sequences` as `decoder_input_ids`).

    Args:
        state (`torch.FloatTensor` of shape `(decoder_layers, batch_size, hidden_size)`):
            Hidden state of every decoder GRU layer after the tokens decoded so far.
    """

    def __init__(self, state: torch.Tensor):
        super().__init__(layers=[LuongGruCacheLayer() for _ in range(state.shape[0])])
        self.update_state(state)

    @property
    def state(self) -> torch.Tensor:
        """The state of every layer, stacked as `nn.GRU` takes it: `(L, B, H)`."""
        return torch.stack([self.get_recurrent_state(index) for index in range(len(self.layers))])

    def update_state(self, state: torch.Tensor) -> None:
        """Replaces the state of every layer with `state` `(L, B, H)`."""
        if state.shape[0] != len(self.layers):
            raise ValueError(f"LuongGruCache holds {len(self.layers)} layers, got a state of {state.shape[0]}.")
        for index, layer_state in enumerate(state.unbind(0)):
            self.update_recurrent_state(layer_state, index)  # (B, H)


def gru_layer_by_layer(
    gru: nn.GRU, inputs: torch.Tensor | PackedSequence, state: torch.Tensor | None = None
) -> tuple[list[torch.Tensor | PackedSequence], torch.Tensor]:
    """
    Runs a stacked `nn.GRU` one layer at a time with its own parameters, to return the outputs of every layer (a
    stacked call returns only the top layer's). Same results as `gru(inputs, state)`; dropout between layers is
    drawn independently.

    Args:
        gru (`nn.GRU`): a batch-first GRU with biases.
        inputs (`torch.FloatTensor` of shape `(batch_size, length, input_size)` or `PackedSequence`).
        state (`torch.FloatTensor` of shape `(num_layers * directions, batch_size, hidden_size)`, *optional*):
            Initial state, in the batch's order; zeros when absent.

    Returns:
        The outputs of each layer (like `inputs`: tensors or packed sequences, directions concatenated) and the final
        state `(num_layers * directions, batch_size, hidden_size)`, as `nn.GRU` returns them.
    """
    directions = 2 if gru.bidirectional else 1
    packed = isinstance(inputs, PackedSequence)
    data = inputs.data if packed else inputs
    if state is None:
        batch_size = int(inputs.batch_sizes[0]) if packed else inputs.shape[0]
        state = data.new_zeros(gru.num_layers * directions, batch_size, gru.hidden_size)
    elif packed and inputs.sorted_indices is not None:
        state = state.index_select(1, inputs.sorted_indices)  # packed rows are sorted by length, as in nn.GRU
    layer_outputs, finals = [], []
    for layer in range(gru.num_layers):
        if layer > 0:
            data = F.dropout(data, gru.dropout, gru.training)
        weights = [
            getattr(gru, f"{kind}_l{layer}{suffix}")
            for suffix in ("", "_reverse")[:directions]
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]  # nn.GRU's flat-weights order for one layer
        layer_state = state[layer * directions : (layer + 1) * directions]  # (directions, B, H)
        if packed:
            data, final = torch._VF.gru(
                data, inputs.batch_sizes, layer_state, weights, True, 1, 0.0, gru.training, gru.bidirectional
            )
            layer_outputs.append(
                PackedSequence(data, inputs.batch_sizes, inputs.sorted_indices, inputs.unsorted_indices)
            )
        else:
            data, final = torch._VF.gru(
                data,
                layer_state,
                weights,
                True,
                1,
                0.0,
                gru.training,
                gru.bidirectional,
                True,  # batch_first
            )
            layer_outputs.append(data)
        finals.append(final)
    final = torch.cat(finals)  # (L * directions, B, H)
    if packed and inputs.unsorted_indices is not None:
        final = final.index_select(1, inputs.unsorted_indices)
    return layer_outputs, final


def shift_tokens_right(
    labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None
) -> torch.Tensor:
    """Builds teacher-forcing decoder inputs: the labels shifted one step right, -100 replaced by `pad_token_id`."""
    # Adapted from transformers.models.bart.modeling_bart.shift_tokens_right
    if decoder_start_token_id is None or pad_token_id is None:
        raise ValueError("Deriving decoder inputs from labels needs `decoder_start_token_id` and `pad_token_id`.")
    shifted = labels.new_full(labels.shape, decoder_start_token_id)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


def initial_decoder_state(encoder_outputs: LuongGruEncoderOutput) -> torch.Tensor:
    """
    Decoder layer l starts from encoder layer l's final state, forward and backward summed: (B, L, H) -> (L, B, H).

    This fixes the tutorial's `encoder_hidden[:decoder_n_layers]`, a slice of PyTorch's (layers * directions, B, H)
    state that hands decoder layer 0 the forward and decoder layer 1 the backward state of encoder layer 0 only.
    """
    return encoder_outputs.final_state.transpose(0, 1).contiguous()


def reverse_within_lengths(sequences: torch.Tensor, reversal: torch.Tensor) -> torch.Tensor:
    """Reorders each row of `sequences` (B, S, D) by `reversal` (B, S, 1): real positions reversed, padding kept."""
    return sequences.gather(1, reversal.expand(-1, -1, sequences.shape[-1]))  # (B, S, D)


class LuongGruAttention(nn.Module):
    """
    Luong global attention over the encoder outputs, with padded source positions masked out.

    One score function per `config.attention_type`; all of them score every query against every source position
    with batched matrix products, so one call serves a single decoding step or a whole teacher-forced target.
    """

    def __init__(self, config: LuongGruConfig):
        super().__init__()
        if config.attention_type not in ATTENTION_TYPES:
            raise ValueError(f"Unknown attention_type {config.attention_type!r}; expected one of {ATTENTION_TYPES}.")
        self.attention_type = config.attention_type
        self.hidden_size = config.hidden_size
        if self.attention_type == "general":
            self.attn = nn.Linear(config.hidden_size, config.hidden_size)
        elif self.attention_type == "concat":
            self.attn = nn.Linear(2 * config.hidden_size, config.hidden_size)
            # The tutorial leaves `v` uninitialised; `_init_weights` gives it the Linear default instead.
            self.v = nn.Parameter(torch.empty(config.hidden_size))

    def dot_score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return query @ keys.transpose(1, 2)  # (B, T, S)

    def general_score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return query @ self.attn(keys).transpose(1, 2)  # (B, T, S)

    def concat_score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        # W[h; ē] + b == W_h h + (W_e ē + b): project queries and keys separately, then broadcast over (T, S).
        w_query, w_keys = self.attn.weight.split(self.hidden_size, dim=1)  # (H, H) each
        projected_query = F.linear(query, w_query)[:, :, None]  # (B, T, 1, H)
        projected_keys = F.linear(keys, w_keys, self.attn.bias)[:, None]  # (B, 1, S, H)
        return torch.tanh(projected_query + projected_keys) @ self.v  # (B, T, S)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            query (`torch.FloatTensor` of shape `(batch_size, target_length, hidden_size)`): decoder GRU outputs.
            keys (`torch.FloatTensor` of shape `(batch_size, source_length, hidden_size)`): encoder outputs.
            mask (`torch.BoolTensor` of shape `(batch_size, source_length)`): real (not padded) source positions.

        Returns:
            `tuple(torch.FloatTensor)`: the context vectors `(B, T, H)` and the attention weights `(B, T, S)`.
        """
        scores = getattr(self, f"{self.attention_type}_score")(query, keys)  # (B, T, S)
        # The smallest finite value rather than -inf: a row with no real position gets uniform weights, not NaN.
        scores = scores.masked_fill(~mask[:, None, :], torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)  # (B, T, S)
        return weights @ keys, weights  # (B, T, H), (B, T, S)


class LuongGruEncoder(nn.Module):
    """
    Embedding, then a bidirectional GRU run over packed sequences; the two directions are summed.

    The GRU is a [`PackedGru`]: `nn.GRU`'s parameters, with a faster implementation for CPU training.
    """

    def __init__(self, config: LuongGruConfig):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.num_layers = config.encoder_layers
        self.pad_token_id = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        # The tutorial drops nothing on the encoder's input: `embedding_dropout` None means 0 here.
        self.embedding_dropout = nn.Dropout(config.embedding_dropout or 0.0)
        self.gru = PackedGru(
            config.hidden_size,
            config.hidden_size,
            config.encoder_layers,
            dropout=config.dropout if config.encoder_layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        output_hidden_states: bool = False,
        **kwargs,
    ) -> LuongGruEncoderOutput:
        """
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, source_length)`, *optional*):
                Right-padded source token ids. Give either these or `inputs_embeds`.
            attention_mask (`torch.Tensor` of shape `(batch_size, source_length)`, *optional*):
                1 for real tokens, 0 for padding; derived from `pad_token_id` when absent (all ones for
                `inputs_embeds`).
            inputs_embeds (`torch.FloatTensor` of shape `(batch_size, source_length, hidden_size)`, *optional*):
                Source embeddings, used instead of looking `input_ids` up in `embed_tokens`.
            output_hidden_states (`bool`, *optional*, defaults to `False`):
                Whether to return the embeddings and every GRU layer's outputs as `hidden_states`.
            kwargs (*optional*):
                Ignored; accepted because `generate()` passes `output_attentions` and `return_dict` to every encoder.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("LuongGruEncoder needs exactly one of `input_ids` and `inputs_embeds`.")
        embeds = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, S, H)
        batch_size, source_length = embeds.shape[:2]
        if attention_mask is None:
            attention_mask = (
                embeds.new_ones(batch_size, source_length)
                if input_ids is None or self.pad_token_id is None
                else input_ids.ne(self.pad_token_id)
            )
        attention_mask = attention_mask.bool()
        # A data-dependent branch cannot be traced: `torch.export`, the ONNX exporter and `torch.compile` skip it.
        tracing = torch.compiler.is_exporting() or torch.compiler.is_compiling()
        if not tracing and (attention_mask[:, 1:] > attention_mask[:, :-1]).any():
            raise ValueError("LuongGruEncoder expects right-padded inputs: a real token follows padding in a row.")
        embeds = self.embedding_dropout(embeds)  # (B, S, H); the tutorial's has none (embedding_dropout unset)
        lengths = attention_mask.sum(dim=1).clamp(min=1)  # (B,); an all-padding row reads its first token
        hidden_states = None
        if torch.compiler.is_exporting():
            # Packing needs the lengths on the host, which export cannot trace; eagerly packing is the faster of the
            # two at batch 32 (the same at batch 1), so only export takes the exact padded formulation.
            padded_outputs, final = self._padded_gru(embeds, lengths)  # (B, S, 2H), (L * 2, B, H)
            outputs = padded_outputs[..., : self.hidden_size] + padded_outputs[..., self.hidden_size :]  # (B, S, H)
        else:
            # Packing starts the backward direction at each sequence's last real token instead of at its padding.
            packed = pack_padded_sequence(embeds, lengths.cpu(), batch_first=True, enforce_sorted=False)
            if output_hidden_states:
                layer_outputs, final = gru_layer_by_layer(self.gru, packed)
                hidden_states = (embeds, *(self.sum_directions(output, source_length) for output in layer_outputs))
                outputs = hidden_states[-1]
            else:
                packed_outputs, final = self.gru(packed)  # final: (L * 2, B, H), layer by layer, forward first
                outputs = self.sum_directions(packed_outputs, source_length)
        final = final.view(self.num_layers, 2, batch_size, self.hidden_size).sum(dim=1)  # (L, B, H)
        return LuongGruEncoderOutput(
            last_hidden_state=outputs,
            final_state=final.transpose(0, 1),
            attention_mask=attention_mask,
            hidden_states=hidden_states,
        )

    def sum_directions(self, packed_outputs: PackedSequence, source_length: int) -> torch.Tensor:
        """Unpacks one GRU layer's outputs and sums its two directions: (B, S, 2H) -> (B, S, H), zeros at padding."""
        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=source_length)
        return outputs[..., : self.hidden_size] + outputs[..., self.hidden_size :]

    def _padded_gru(self, embeds: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Exactly what the packed GRU computes, with the same weights, as traceable ops over the padded batch. Per
        layer, the forward direction runs over the padded rows as they are, since right padding never reaches an
        earlier position; the backward direction runs over each row reversed within its length, so that it too reads
        the real tokens before the padding. Each direction's final state is its output at position length - 1.
        """
        batch_size, source_length, _ = embeds.shape
        positions = torch.arange(source_length, device=embeds.device)[None]  # (1, S)
        reversal = torch.where(positions < lengths[:, None], lengths[:, None] - 1 - positions, positions)  # (B, S)
        reversal = reversal[..., None]  # (B, S, 1): reversing twice restores the order
        last = (lengths - 1)[:, None, None].expand(batch_size, 1, self.hidden_size)  # (B, 1, H)
        layer_input, finals = embeds, []
        for layer in range(self.num_layers):
            directions = []
            for suffix in ("", "_reverse"):
                weights = [getattr(self.gru, f"{name}_l{layer}{suffix}") for name in GRU_WEIGHT_NAMES]
                hidden = reverse_within_lengths(layer_input, reversal) if suffix else layer_input
                initial = embeds.new_zeros(1, batch_size, self.hidden_size)  # (1, B, H)
                # One layer, one direction of nn.GRU's own kernel: the ONNX exporter maps it onto ONNX's GRU.
                out, _ = torch.ops.aten.gru.input(hidden, initial, weights, True, 1, 0.0, False, False, True)
                finals.append(out.gather(1, last).squeeze(1))  # (B, H), the state after the last real token
                directions.append(reverse_within_lengths(out, reversal) if suffix else out)  # (B, S, H), source order
            layer_input = torch.cat(directions, dim=-1)  # (B, S, 2H); padding is junk, never read by real positions
            if layer < self.num_layers - 1:  # nn.GRU's dropout between layers
                layer_input = F.dropout(layer_input, self.gru.dropout, self.training)
        read = (positions < lengths[:, None])[..., None]  # (B, S, 1); an all-padding row reads its first position
        # Zeros after each row's length, as pad_packed_sequence gives.
        return layer_input * read, torch.stack(finals)  # (B, S, 2H), (L * 2, B, H)


class LuongGruDecoder(nn.Module):
    """
    Embedding and dropout, a unidirectional GRU, Luong attention on its outputs, then tanh(Linear([gru_out; context]))
    and dropout (`output_dropout`) before the output layer.

    Nothing is fed back into the GRU input, so the same code runs one step (generation) or, under teacher forcing,
    the whole target in one GRU call with the attention of all steps as batched matrix products.
    """

    def __init__(self, config: LuongGruConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        embedding_dropout = config.dropout if config.embedding_dropout is None else config.embedding_dropout
        self.dropout = nn.Dropout(embedding_dropout)
        self.output_dropout = nn.Dropout(config.output_dropout)
        self.gru = PackedGru(
            config.hidden_size,
            config.hidden_size,
            config.decoder_layers,
            dropout=config.dropout if config.decoder_layers > 1 else 0.0,
            batch_first=True,
        )
        self.attention = LuongGruAttention(config)
        self.concat = nn.Linear(2 * config.hidden_size, config.hidden_size)

    def forward(
        self,
        input_ids: torch.LongTensor | None,
        state: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        lengths: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, target_length)`): decoder input ids, or `None` with
                `inputs_embeds`.
            state (`torch.FloatTensor` of shape `(decoder_layers, batch_size, hidden_size)`): initial GRU state.
            encoder_hidden_states (`torch.FloatTensor` of shape `(batch_size, source_length, hidden_size)`).
            encoder_attention_mask (`torch.BoolTensor` of shape `(batch_size, source_length)`).
            lengths (`torch.Tensor` of shape `(batch_size,)`, *optional*):
                Real (right-padded) input positions per row. When given, the GRU skips the padding: its outputs there
                are zeros and the returned state is each row's state after its last real input.
            inputs_embeds (`torch.FloatTensor` of shape `(batch_size, target_length, hidden_size)`, *optional*):
                Decoder input embeddings, used instead of looking `input_ids` up in `embed_tokens`.
            output_hidden_states (`bool`, *optional*, defaults to `False`):
                Whether to also return the embeddings and every GRU layer's outputs.

        Returns:
            `tuple(torch.FloatTensor)`: features `(B, T, H)` (before `lm_head`), the GRU state after the last input
            `(L, B, H)` and the attention weights `(B, T, S)`; with `output_hidden_states`, a fourth item: the
            embeddings (after dropout) and every GRU layer's outputs, each `(B, T, H)`.
        """
        embeds = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        embeds = self.dropout(embeds)  # (B, T, H)
        gru_outputs, state, hidden_states = self.run_gru(embeds, state, lengths, output_hidden_states)
        context, weights = self.attention(gru_outputs, encoder_hidden_states, encoder_attention_mask)  # (B, T, H)
        features = torch.tanh(self.concat(torch.cat([gru_outputs, context], dim=-1)))  # (B, T, 2H) -> (B, T, H)
        features = self.output_dropout(features)  # before lm_head (config.output_dropout; the tutorial has none)
        if output_hidden_states:
            return features, state, weights, (embeds, *hidden_states)
        return features, state, weights

    def run_gru(
        self, embeds: torch.Tensor, state: torch.Tensor, lengths: torch.Tensor | None, output_hidden_states: bool
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """The decoder GRU over `embeds` (B, T, H) from `state` (L, B, H): top outputs, final state, layer outputs."""
        target_length = embeds.shape[1]
        inputs = embeds
        if lengths is not None:
            # Teacher forcing on padded targets: on CPU the GRU's per-step matrix products are most of the decoder's
            # training time, and packing runs them only on each step's real rows.
            inputs = pack_padded_sequence(embeds, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        if output_hidden_states:
            layer_outputs, state = gru_layer_by_layer(self.gru, inputs, state)
        else:
            top_outputs, state = self.gru(inputs, state)  # state: (L, B, H), in the batch's order
            layer_outputs = [top_outputs]
        if lengths is not None:
            layer_outputs = [
                pad_packed_sequence(output, batch_first=True, total_length=target_length)[0]
                for output in layer_outputs
            ]  # (B, T, H) each
        return layer_outputs[-1], state, tuple(layer_outputs) if output_hidden_states else None


class LuongGruPreTrainedModel(PreTrainedModel):
    config: LuongGruConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    # The cache is a GRU state, which cannot be rolled back to a shorter prefix: `generate()` then refuses assisted
    # decoding and prompt lookup with its own error.
    _is_stateful = True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args, **kwargs):
        """
        [`PreTrainedModel.from_pretrained`], safetensors-only by default (`use_safetensors=True`: loading never
        unpickles), and with one clear `ValueError` naming the weights whose shapes do not fit the configuration
        (for example another `vocab_size`) instead of a pointer to a logged report.
        """
        kwargs.setdefault("use_safetensors", True)
        if kwargs.get("ignore_mismatched_sizes"):
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        return_loading_info = kwargs.pop("output_loading_info", False)
        kwargs.update(ignore_mismatched_sizes=True, output_loading_info=True)
        model, loading_info = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        if loading_info["mismatched_keys"]:
            shapes = "; ".join(
                f"{key} is {tuple(saved)} in the checkpoint but {tuple(expected)} in the model"
                for key, saved, expected in sorted(loading_info["mismatched_keys"])
            )
            raise ValueError(
                f"The weights in {pretrained_model_name_or_path} do not fit this configuration: {shapes}. Load them "
                "with the config.json saved next to them (same vocab_size and hidden_size)."
            )
        return (model, loading_info) if return_loading_info else model

    def _init_weights(self, module: nn.Module) -> None:
        """
        PyTorch's own defaults, which the tutorial trains from: embeddings N(0, 1), GRU and Linear weights and biases
        uniform(±1/√fan). transformers' usual N(0, 0.02) would change training at the tutorial's lr of 1e-4 a lot.
        """
        # `reset_parameters` goes through torch.nn.init, which from_pretrained guards so that loaded weights stay.
        if isinstance(module, (nn.Embedding, nn.GRU, nn.Linear)):
            module.reset_parameters()
        elif isinstance(module, LuongGruAttention) and module.attention_type == "concat":
            bound = module.hidden_size**-0.5
            nn.init.uniform_(module.v, -bound, bound)


class LuongGruModel(LuongGruPreTrainedModel):
    """
    The encoder and the decoder without the output projection; `last_hidden_state` is the decoder's features.

    Args:
        config ([`LuongGruConfig`]): model configuration.
    """

    # The tutorial's single embedding: the decoder reads the encoder's matrix (when `config.tie_word_embeddings`).
    _tied_weights_keys = {"decoder.embed_tokens.weight": "encoder.embed_tokens.weight"}

    def __init__(self, config: LuongGruConfig):
        super().__init__(config)
        self.encoder = LuongGruEncoder(config)
        self.decoder = LuongGruDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.encoder.embed_tokens = value
        if self.config.tie_word_embeddings:
            self.decoder.embed_tokens = value

    @deprecate_kwarg("past_key_values", version="6.0.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: LuongGruEncoderOutput | None = None,
        cache: LuongGruCache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        decoder_inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Seq2SeqModelOutput | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, source_length)`, *optional*):
                Right-padded source token ids; not needed when `encoder_outputs` or `inputs_embeds` is given.
            attention_mask (`torch.Tensor` of shape `(batch_size, source_length)`, *optional*):
                1 for real source tokens, 0 for padding; derived from `pad_token_id` when absent.
            decoder_input_ids (`torch.LongTensor` of shape `(batch_size, target_length)`):
                Decoder inputs; with `cache`, only the newest token(s).
            decoder_attention_mask (`torch.Tensor` of shape `(batch_size, target_length)`, *optional*):
                1 for real decoder inputs, 0 for right padding (e.g. `labels != -100`). Optional: the decoder reads
                left to right, so padding never changes earlier positions; given, it only lets the decoder GRU skip
                the padding (faster training; zeros come out there). Mask the loss with -100 labels either way.
            encoder_outputs ([`LuongGruEncoderOutput`], *optional*):
                Precomputed encoder outputs.
            cache ([`LuongGruCache`], *optional*):
                Decoder state after the previous tokens, updated in place; when absent the decoder starts from the
                encoder's states. `past_key_values`, its older name, is accepted with a deprecation warning.
            inputs_embeds (`torch.FloatTensor` of shape `(batch_size, source_length, hidden_size)`, *optional*):
                Source embeddings instead of `input_ids`.
            decoder_inputs_embeds (`torch.FloatTensor` of shape `(batch_size, target_length, hidden_size)`,
                *optional*): decoder input embeddings instead of `decoder_input_ids`.
            use_cache (`bool`, *optional*, defaults to `config.use_cache`):
                Whether to return the decoder state as `cache`.
            output_attentions (`bool`, *optional*, defaults to `config.output_attentions`):
                Whether to return the attention weights `(B, 1, T, S)` (one head) as `cross_attentions`. The model
                has no self-attention, so `encoder_attentions` and `decoder_attentions` stay `None`.
            output_hidden_states (`bool`, *optional*, defaults to `config.output_hidden_states`):
                Whether to return `encoder_hidden_states` and `decoder_hidden_states`: the embeddings, then the
                outputs of every GRU layer. The GRU layers then run one at a time, with the same weights.
            return_dict (`bool`, *optional*, defaults to `config.return_dict`):
                Whether to return a [`Seq2SeqModelOutput`] instead of a tuple.
            kwargs (*optional*):
                Ignored; accepted so that `generate()` and `Trainer` can pass their generic flags.
        """
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError(
                "LuongGruModel needs `decoder_input_ids` (the ForConditionalGeneration model derives them from labels)"
            )
        if cache is not None and not isinstance(cache, LuongGruCache):
            raise TypeError(f"`cache` must be a LuongGruCache (a previous output's), got {type(cache).__name__}.")
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids, attention_mask, inputs_embeds=inputs_embeds, output_hidden_states=output_hidden_states
            )
        mask = attention_mask.bool() if attention_mask is not None else encoder_outputs.attention_mask
        state = cache.state if cache is not None else initial_decoder_state(encoder_outputs)  # (L, B, H)
        target_length = (decoder_input_ids if decoder_input_ids is not None else decoder_inputs_embeds).shape[1]
        lengths = None
        if decoder_attention_mask is not None and target_length > 1:
            lengths = decoder_attention_mask.sum(dim=1)  # (B,)
        features, state, weights, *decoder_hidden_states = self.decoder(
            decoder_input_ids,
            state,
            encoder_outputs.last_hidden_state,
            mask,
            lengths,
            inputs_embeds=decoder_inputs_embeds,
            output_hidden_states=output_hidden_states,
        )
        if use_cache and cache is not None:
            cache.update_state(state)
        output = Seq2SeqModelOutput(
            last_hidden_state=features,
            cache=(cache if cache is not None else LuongGruCache(state)) if use_cache else None,
            decoder_hidden_states=decoder_hidden_states[0] if output_hidden_states else None,
            cross_attentions=(weights[:, None],) if output_attentions else None,  # (B, 1, T, S): one head
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states if output_hidden_states else None,
        )
        return output if return_dict else output.to_tuple()


class LuongGruForConditionalGeneration(LuongGruPreTrainedModel, GenerationMixin):
    """
    [`LuongGruModel`] with the output projection `lm_head` (Linear(H, V): its own matrix as in the tutorial, or
    the shared embedding's with `config.tie_lm_head`).

    Args:
        config ([`LuongGruConfig`]): model configuration.

    Example:

    ```python
    >>> import torch
    >>> from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration

    >>> model = LuongGruForConditionalGeneration(LuongGruConfig(vocab_size=20, hidden_size=16)).eval()
    >>> input_ids = torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]])
    >>> labels = torch.tensor([[10, 11, 2], [12, 2, -100]])
    >>> model(input_ids=input_ids, labels=labels).logits.shape
    torch.Size([2, 3, 20])
    >>> model.generate(input_ids, num_beams=3, max_new_tokens=5).shape[0]
    2

    ```
    """

    def __init__(self, config: LuongGruConfig):
        super().__init__(config)
        self.model = LuongGruModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size)
        if config.tie_lm_head:  # an instance attribute: post_init and from_pretrained read it to tie (and not save) it
            self._tied_weights_keys = {"lm_head.weight": "model.encoder.embed_tokens.weight"}
        self.post_init()
        # The tutorial's reply length (MAX_LENGTH words, EOS included); generation stops earlier at EOS.
        self.generation_config.max_new_tokens = 10

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # The GRU state is the whole cache: `generate()` must not build a key/value cache, the model returns its own.
        return False

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    @deprecate_kwarg("past_key_values", version="6.0.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: LuongGruEncoderOutput | None = None,
        cache: LuongGruCache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        decoder_inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput | tuple:
        r"""
        Args:
            labels (`torch.LongTensor` of shape `(batch_size, target_length)`, *optional*):
                Target token ids, -100 where there is no target (padding). Without `decoder_input_ids` (and
                `decoder_inputs_embeds`), the decoder inputs are the labels shifted right (teacher forcing). The loss
                is the token-mean negative log-likelihood over the positions that are not -100. When the -100s are
                only right padding and no `decoder_attention_mask` is given, the decoder skips that padding (packed
                GRU, `lm_head` only on the real positions): the loss and the real positions' logits are unchanged,
                the padded positions' logits are 0.

            The other arguments are those of [`LuongGruModel.forward`].
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        target_mask = None
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = shift_tokens_right(
                    labels, self.config.pad_token_id, self.config.decoder_start_token_id
                )
            if decoder_attention_mask is None and labels.shape[1] > 1:
                target_mask = right_padding_mask(labels)  # (B, T) or None
                decoder_attention_mask = target_mask  # the decoder GRU skips the padding
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        if target_mask is None:
            logits = self.lm_head(outputs.last_hidden_state)  # (B, T, V)
            loss = None if labels is None else token_mean_nll(logits, labels)
        else:
            logits, loss = self.padding_free_logits_and_loss(outputs.last_hidden_state, labels, target_mask)
        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
        )
        return output if return_dict else output.to_tuple()

    def padding_free_logits_and_loss(
        self, features: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        `lm_head` and the loss on the real target positions only; the padded positions' logits are 0.

        The labels' right padding has no target and, the decoder reading left to right, no influence on the real
        positions: skipping it changes neither the loss nor any real logit, and saves the output layer's and the
        cross-entropy's work there (`bench/bench_train.py` measures it).

        Returns:
            `tuple(torch.FloatTensor)`: the logits `(B, T, V)` and the token-mean NLL.
        """
        real_logits = self.lm_head(features[target_mask])  # (N, V), N real target tokens
        logits = real_logits.new_zeros(*labels.shape, real_logits.shape[-1])  # (B, T, V)
        logits = logits.masked_scatter(target_mask[..., None], real_logits)
        # The loss reads the real rows back out of `logits`, so that it is a function of the returned logits.
        total = F.cross_entropy(logits[target_mask].float(), labels[target_mask], reduction="sum")
        return logits, total / target_mask.sum().clamp(min=1)

    def forward_free_running(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, max_target_length: int = 10
    ) -> torch.Tensor:
        """
        Decodes step by step, feeding the model its own greedy choice (the tutorial's teacher forcing "off").

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, source_length)`): right-padded source ids.
            attention_mask (`torch.Tensor` of shape `(batch_size, source_length)`, *optional*):
                Derived from `pad_token_id` when absent.
            max_target_length (`int`, *optional*, defaults to 10): number of steps (the padded target length).

        Returns:
            `torch.FloatTensor` of shape `(batch_size, max_target_length, vocab_size)`: the logits of every step, to
            be scored against the labels like the teacher-forced logits.
        """
        encoder_outputs = self.model.encoder(input_ids, attention_mask)
        state = initial_decoder_state(encoder_outputs)  # (L, B, H)
        tokens = input_ids.new_full((input_ids.shape[0], 1), self.config.decoder_start_token_id)  # (B, 1)
        all_logits = []
        for _ in range(max_target_length):
            features, state, _ = self.model.decoder(
                tokens, state, encoder_outputs.last_hidden_state, encoder_outputs.attention_mask
            )
            step_logits = self.lm_head(features)  # (B, 1, V)
            all_logits.append(step_logits)
            tokens = step_logits.argmax(dim=-1)  # (B, 1); argmax carries no gradient, as in the tutorial
        return torch.cat(all_logits, dim=1)  # (B, T, V)

    def prepare_inputs_for_generation(
        self, input_ids: torch.LongTensor, cache: LuongGruCache | None = None, **kwargs
    ) -> dict:
        """
        [`GenerationMixin.prepare_inputs_for_generation`], which passes every other keyword argument through, except
        that once a state exists only the newest token is fed: the state already holds everything before it, also
        when `generate()` continues from a returned cache.
        """
        if cache is not None:
            input_ids = input_ids[:, -1:]  # (B, 1)
        kwargs.pop("next_sequence_length", None)  # the slicing above replaces the key/value caches' slicing
        return super().prepare_inputs_for_generation(input_ids, cache=cache, **kwargs)


def right_padding_mask(labels: torch.Tensor) -> torch.Tensor | None:
    """The labels' real positions `(B, T)` when every row is right-padded with -100, else None (nothing to skip)."""
    mask = labels.ne(-100)  # (B, T)
    return None if (mask[:, 1:] > mask[:, :-1]).any() else mask


def token_mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over the label positions that are not -100 (log-softmax inside cross_entropy)."""
    total = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100, reduction="sum")
    return total / labels.ne(-100).sum().clamp(min=1)


__all__ = [
    "LuongGruAttention",
    "LuongGruCache",
    "LuongGruDecoder",
    "LuongGruEncoder",
    "LuongGruEncoderOutput",
    "LuongGruForConditionalGeneration",
    "LuongGruModel",
    "LuongGruPreTrainedModel",
    "shift_tokens_right",
]
