"""The exported Luong GRU chatbot run by ONNX Runtime under transformers' `generate()`.

The model's weights live in the two ONNX files; this class only moves tensors between torch and ONNX Runtime, so
that greedy and beam search, n-gram blocking, minimum lengths and sampling all come from `generate()` itself. The
decoder's GRU state travels as the usual [`LuongGruCache`], which beam search reorders like the PyTorch model's.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn
from transformers import GenerationConfig, GenerationMixin
from transformers.modeling_outputs import Seq2SeqLMOutput

from .configuration_luong_gru import LuongGruConfig
from .modeling_luong_gru import (
    LuongGruCache,
    LuongGruEncoderOutput,
    LuongGruForConditionalGeneration,
    LuongGruPreTrainedModel,
    initial_decoder_state,
    shift_tokens_right,
    token_mean_nll,
)
from .onnx_greedy import OnnxFolderError, OnnxLuongGru


class LuongGruOnnxEncoder(nn.Module):
    """`encoder.onnx` behind the PyTorch encoder's interface, for `generate()`'s `get_encoder()`."""

    main_input_name = "input_ids"

    def __init__(self, runtime: OnnxLuongGru):
        super().__init__()
        self.runtime = runtime

    def forward(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> LuongGruEncoderOutput:
        if attention_mask is None:
            attention_mask = input_ids.ne(self.runtime.config["pad_token_id"])
        if (attention_mask[:, 1:].bool() > attention_mask[:, :-1].bool()).any():
            raise ValueError("LuongGruOnnxEncoder expects right-padded inputs: a real token follows padding in a row.")
        outputs, final_state, mask = self.runtime.encode(input_ids.numpy(), attention_mask.numpy())
        return LuongGruEncoderOutput(
            last_hidden_state=torch.from_numpy(outputs),  # (B, S, H)
            final_state=torch.from_numpy(final_state),  # (B, L, H)
            attention_mask=torch.from_numpy(mask),  # (B, S)
        )


class LuongGruOnnxForConditionalGeneration(LuongGruPreTrainedModel, GenerationMixin):
    """
    An exported [`LuongGruForConditionalGeneration`] on ONNX Runtime (CPU), with the PyTorch model's `generate()`.

    Args:
        config ([`LuongGruConfig`]): the exported model's configuration.
        runtime (`OnnxLuongGru`): its two ONNX Runtime sessions.

    Example:

    ```python
    >>> from transformers import AutoTokenizer
    >>> from modeling_seq2seq.onnx_luong_gru import LuongGruOnnxForConditionalGeneration

    >>> model = LuongGruOnnxForConditionalGeneration.from_pretrained("runs/sample-onnx")  # doctest: +SKIP
    >>> tokenizer = AutoTokenizer.from_pretrained("runs/sample-onnx")  # doctest: +SKIP
    >>> batch = tokenizer(["hello?"], return_tensors="pt")  # doctest: +SKIP
    >>> model.generate(**batch, num_beams=5, no_repeat_ngram_size=3)  # doctest: +SKIP
    ```
    """

    _supports_default_dynamic_cache = LuongGruForConditionalGeneration._supports_default_dynamic_cache

    def __init__(self, config: LuongGruConfig, runtime: OnnxLuongGru):
        super().__init__(config)
        self.runtime = runtime
        self.encoder = LuongGruOnnxEncoder(runtime)
        self.post_init()

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, int8: bool = False, session_options=None
    ) -> LuongGruOnnxForConditionalGeneration:
        """
        Loads a folder written by `python -m modeling_seq2seq.export`.

        Args:
            folder (`str` or `os.PathLike`): the exported folder.
            int8 (`bool`, *optional*, defaults to `False`): run the `--quantize int8` files.
            session_options (`onnxruntime.SessionOptions`, *optional*): e.g. the number of threads.

        Raises:
            `OnnxFolderError`: with a one-line message for a missing or unreadable file or another model's folder.
        """
        folder = os.fspath(folder)
        runtime = OnnxLuongGru(folder, int8=int8, options=session_options)
        config = LuongGruConfig.from_pretrained(folder)
        model = cls(config, runtime)
        model.generation_config = GenerationConfig.from_pretrained(folder)
        return model.eval()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # ONNX Runtime's CPU provider; the model has no torch parameters

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def get_encoder(self) -> LuongGruOnnxEncoder:
        return self.encoder

    def prepare_inputs_for_generation(
        self, input_ids: torch.LongTensor, cache: LuongGruCache | None = None, **kwargs
    ) -> dict:
        """As the PyTorch model's: once a state exists, only the newest token is fed."""
        if cache is not None:
            input_ids = input_ids[:, -1:]  # (B, 1)
        kwargs.pop("next_sequence_length", None)  # the slicing above replaces the key/value caches' slicing
        return GenerationMixin.prepare_inputs_for_generation(self, input_ids, cache=cache, **kwargs)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        encoder_outputs: LuongGruEncoderOutput | None = None,
        cache: LuongGruCache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> Seq2SeqLMOutput | tuple:
        """
        The PyTorch model's forward, one `decoder_step.onnx` call per decoder input; the arguments are those of
        [`LuongGruForConditionalGeneration.forward`]. Attentions are not exported, and `decoder_attention_mask` is
        not needed: padding never changes the logits at earlier positions.
        """
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = shift_tokens_right(
                labels, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        if decoder_input_ids is None:
            raise ValueError("LuongGruOnnxForConditionalGeneration needs `decoder_input_ids` or `labels`")
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask)
        mask = attention_mask.bool() if attention_mask is not None else encoder_outputs.attention_mask
        state = (cache.state if cache is not None else initial_decoder_state(encoder_outputs)).numpy()  # (L, B, H)
        keys, mask = encoder_outputs.last_hidden_state.numpy(), mask.numpy()
        all_logits = []
        for position in range(decoder_input_ids.shape[1]):
            tokens = decoder_input_ids[:, position : position + 1].numpy()  # (B, 1)
            logits, state = self.runtime.step(tokens, np.ascontiguousarray(state), keys, mask)  # (B, V), (L, B, H)
            all_logits.append(torch.from_numpy(logits))
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        logits = torch.stack(all_logits, dim=1)  # (B, T, V)
        output = Seq2SeqLMOutput(
            loss=None if labels is None else token_mean_nll(logits, labels),
            logits=logits,
            cache=LuongGruCache(torch.from_numpy(state)) if use_cache else None,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
        )
        return output if (return_dict if return_dict is not None else self.config.return_dict) else output.to_tuple()


__all__ = ["LuongGruOnnxEncoder", "LuongGruOnnxForConditionalGeneration", "OnnxFolderError"]
