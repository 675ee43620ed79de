"""The PyTorch Chatbot Tutorial's Luong-attention GRU encoder-decoder as a Hugging Face model.

Importing this package registers the configuration, the models and the tokenizer with the Auto classes, and marks
the configuration and models for `register_for_auto_class`, so that `save_pretrained` writes `auto_map` and copies
the modeling files: the saved folder then loads with `trust_remote_code=True` where this package is not installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

from .configuration_luong_gru import LuongGruConfig
from .modeling_luong_gru import (
    LuongGruCache,
    LuongGruEncoderOutput,
    LuongGruForConditionalGeneration,
    LuongGruModel,
    LuongGruPreTrainedModel,
    shift_tokens_right,
)
from .tokenization_luong_gru import LuongGruTokenizer

AutoConfig.register(LuongGruConfig.model_type, LuongGruConfig, exist_ok=True)
AutoModel.register(LuongGruConfig, LuongGruModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(LuongGruConfig, LuongGruForConditionalGeneration, exist_ok=True)
AutoTokenizer.register(LuongGruConfig, tokenizer_class=LuongGruTokenizer, exist_ok=True)
LuongGruConfig.register_for_auto_class()
LuongGruModel.register_for_auto_class("AutoModel")
LuongGruForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")

__all__ = [
    "LuongGruCache",
    "LuongGruConfig",
    "LuongGruEncoderOutput",
    "LuongGruForConditionalGeneration",
    "LuongGruModel",
    "LuongGruPreTrainedModel",
    "LuongGruTokenizer",
    "shift_tokens_right",
]
