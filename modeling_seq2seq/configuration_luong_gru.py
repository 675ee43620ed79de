"""Configuration of the Luong-attention GRU encoder-decoder (the PyTorch Chatbot Tutorial's model)."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

ATTENTION_TYPES = ("dot", "general", "concat")


@strict
class LuongGruConfig(PreTrainedConfig):
    r"""
    Configuration of a [`LuongGruModel`]: a bidirectional GRU encoder, a GRU decoder with Luong global attention and
    one word embedding shared by both. The defaults are the tutorial's (hidden size 500, two layers each, dropout 0.1,
    `dot` attention), so `LuongGruConfig()` is the tutorial's model.

    Args:
        vocab_size (`int`, *optional*, defaults to 7827):
            Number of tokens in the vocabulary, special tokens included. The default is the vocabulary that the
            tutorial's filters keep on the full Cornell corpus (7,823 words) plus the tokenizer's 4 special tokens.
        hidden_size (`int`, *optional*, defaults to 500):
            Size of the embeddings, of every GRU state and of the attention layer.
        encoder_layers (`int`, *optional*, defaults to 2):
            Number of layers of the bidirectional encoder GRU.
        decoder_layers (`int`, *optional*, defaults to 2):
            Number of layers of the decoder GRU. It must equal `encoder_layers`: decoder layer `l` starts from the
            final states of encoder layer `l` (forward and backward summed).
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout between stacked GRU layers, and on the decoder's input embeddings unless `embedding_dropout` is
            set.
        embedding_dropout (`float`, *optional*):
            Dropout on the word embeddings read by the encoder and by the decoder. `None` (the default) is the
            tutorial's: the decoder's input embeddings only, at `dropout`; the encoder's get none.
        output_dropout (`float`, *optional*, defaults to 0.0):
            Dropout on the decoder's features, before the output layer `lm_head` (the tutorial has none).
        attention_type (`str`, *optional*, defaults to `"dot"`):
            Luong score function: `"dot"` (h·ē), `"general"` (h·(Wē + b)) or `"concat"` (vᵀ tanh(W[h; ē] + b)).
        pad_token_id (`int`, *optional*, defaults to 0):
            Padding token; source positions holding it are masked out of the attention. `None` is allowed (as in
            transformers' configs); every set special id must lie in `[0, vocab_size)`.
        bos_token_id (`int`, *optional*, defaults to 1):
            Beginning-of-sequence token (the tutorial's SOS).
        eos_token_id (`int` or `list[int]`, *optional*, defaults to 2):
            End-of-sequence token(s); generation stops once one is produced. `None` generates to `max_new_tokens`.
        decoder_start_token_id (`int`, *optional*, defaults to 1):
            First decoder input, also used to shift labels right.
        tie_word_embeddings (`bool`, *optional*, defaults to `True`):
            Whether the decoder reads the encoder's embedding matrix (the tutorial's single shared embedding). The
            output projection `lm_head` is its own matrix unless `tie_lm_head` is set.
        tie_lm_head (`bool`, *optional*, defaults to `False`):
            Whether `lm_head.weight` is the shared embedding matrix (both are `(vocab_size, hidden_size)`): a third
            fewer parameters at small sizes. Off by default, as in the tutorial, so its checkpoints load unchanged.
        use_cache (`bool`, *optional*, defaults to `True`):
            Whether the model returns the decoder's GRU state, so that `generate()` runs one decoder step per token.
        is_encoder_decoder (`bool`, *optional*, defaults to `True`):
            Always `True`.

    Example:

    ```python
    >>> from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration

    >>> config = LuongGruConfig(attention_type="general")
    >>> model = LuongGruForConditionalGeneration(config)
    >>> model.config.hidden_size, model.config.vocab_size
    (500, 7827)

    ```
    """

    model_type = "luong_gru"
    attribute_map = {"num_hidden_layers": "encoder_layers"}

    vocab_size: int = 7827
    hidden_size: int = 500
    encoder_layers: int = 2
    decoder_layers: int = 2
    dropout: float | int = 0.1
    embedding_dropout: float | int | None = None
    output_dropout: float | int = 0.0
    attention_type: str = "dot"
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1
    tie_word_embeddings: bool = True
    tie_lm_head: bool = False
    use_cache: bool = True
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        # Checked here rather than only in a `validate_*` hook so that a bad value raises a plain ValueError at once.
        self._check_values()

    def validate_luong_gru(self):
        """Part of `@strict` validation (also run by `save_pretrained`), for configs edited after construction."""
        self._check_values()

    def _check_values(self):
        for name in ("vocab_size", "hidden_size", "encoder_layers", "decoder_layers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LuongGruConfig: `{name}` must be a positive integer, got {getattr(self, name)}.")
        if self.attention_type not in ATTENTION_TYPES:
            raise ValueError(
                f"LuongGruConfig: `attention_type` must be one of {ATTENTION_TYPES}, got {self.attention_type!r}."
            )
        for name in ("dropout", "embedding_dropout", "output_dropout"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ValueError(f"LuongGruConfig: `{name}` must be in [0, 1), got {value}.")
        if self.tie_lm_head and not self.tie_word_embeddings:
            raise ValueError("LuongGruConfig: `tie_lm_head` needs `tie_word_embeddings` (one shared embedding).")
        if self.decoder_layers != self.encoder_layers:
            raise ValueError(
                f"LuongGruConfig: `decoder_layers` ({self.decoder_layers}) must equal `encoder_layers` "
                f"({self.encoder_layers}): decoder layer l starts from the final states of encoder layer l."
            )
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            # Unset ids are allowed (generation tests and users set `eos_token_id=None` to generate to full length).
            token_ids = [] if value is None else value if isinstance(value, list) else [value]
            for token_id in token_ids:
                if not 0 <= token_id < self.vocab_size:
                    raise ValueError(
                        f"LuongGruConfig: `{name}` must be a token id in [0, {self.vocab_size}), got {value}."
                    )
        if not self.is_encoder_decoder:
            raise ValueError("LuongGruConfig: `is_encoder_decoder` must be True.")


__all__ = ["LuongGruConfig"]
