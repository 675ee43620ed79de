"""Loading a trained chatbot and replying with it: what the terminal chat, evaluation, training and the web page share.

>>> from luong_chatbot.inference import TUTORIAL_PROMPTS, generate_replies, load_model_and_tokenizer
>>> model, tokenizer = load_model_and_tokenizer("runs/sample")  # doctest: +SKIP
>>> generate_replies(model, tokenizer, TUTORIAL_PROMPTS[:2])  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

# The tutorial's sample conversation prompts, in its order.
TUTORIAL_PROMPTS: list[str] = [
    "hello?",
    "where am I?",
    "who are you?",
    "how are you doing?",
    "are you my friend?",
    "you're under arrest",
    "i'm just kidding",
    "where are you from?",
    "it's time for me to leave",
    "goodbye",
]
# The tutorial's MAX_LENGTH: replies of at most 10 tokens, EOS included.
DEFAULT_MAX_NEW_TOKENS = 10
# `namespace/name` or `name`, as the Hub spells repository ids; anything else is only tried as a local path.
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelLoadError(Exception):
    """The model or tokenizer could not be loaded; the message is one line meant for the user."""


def load_model_and_tokenizer(
    path_or_hub_id: str, *, quantize: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a saved chatbot and its tokenizer, in eval mode on the CPU.

    Args:
        path_or_hub_id (`str`):
            A folder written by `save_pretrained` (e.g. `train.py --output-dir`) or a Hub repository id.
        quantize (`bool`, *optional*, defaults to `False`):
            Apply int8 dynamic quantization to the GRU and Linear layers (see `quantize_for_cpu`).

    Raises:
        `ModelLoadError`: with a one-line message when the path is missing or holds no loadable model.
    """
    import modeling_seq2seq  # noqa: F401  (registers the luong_gru config, model and tokenizer with the Auto classes)

    if os.path.exists(path_or_hub_id):
        if not os.path.isdir(path_or_hub_id):
            raise ModelLoadError(f"{path_or_hub_id}: expected a model folder (config.json, model.safetensors, ...)")
        if not os.path.isfile(os.path.join(path_or_hub_id, "config.json")):
            raise ModelLoadError(f"{path_or_hub_id}: no config.json here; expected a folder written by train.py")
    elif not HUB_ID_PATTERN.match(path_or_hub_id) or os.path.isdir(path_or_hub_id.split("/")[0]):
        # `runs/typo` matches the Hub's `user/name` form, but with a local `runs/` it is a mistyped folder: say so
        # now rather than after the Hub client's retries.
        raise ModelLoadError(f"{path_or_hub_id}: no such model folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path_or_hub_id)
        model = AutoModelForSeq2SeqLM.from_pretrained(path_or_hub_id)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{path_or_hub_id}: could not load a model and tokenizer ({first_line})") from error
    model.eval()
    if quantize:
        model = quantize_for_cpu(model)
    return model, tokenizer


def quantize_for_cpu(model: PreTrainedModel) -> PreTrainedModel:
    """Return `model` with int8 dynamically quantized GRU and Linear layers, for faster CPU chat.

    Each decoding step reads every GRU and Linear weight, so on a CPU a step is bound by memory bandwidth; int8 weights
    are a quarter of the bytes. Embeddings stay fp32. torch 2.13 marks `torch.ao.quantization` as deprecated in favour
    of torchao, whose eager `quantize_` API has no GRU support, so the deprecation warning is silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)  # quantized tensor types are deprecated too
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError as error:
            message = f"--quantize needs torch.ao.quantization, which torch {torch.__version__} no longer has"
            raise ModelLoadError(message) from error
        return quantize_dynamic(model, {torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8)


def generate_replies(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], **generate_kwargs: Any
) -> list[str]:
    """Reply to each prompt with `model.generate()`, as plain text without special tokens.

    Args:
        model (`PreTrainedModel`):
            A seq2seq model such as `LuongGruForConditionalGeneration`.
        tokenizer (`PreTrainedTokenizerBase`):
            Its tokenizer; it normalizes the text like the tutorial and truncates to `model_max_length`.
        prompts (`Sequence[str]`):
            Raw user inputs, batched together in one `generate()` call.
        generate_kwargs:
            Passed to `generate()` (`num_beams`, `do_sample`, ...). `max_new_tokens` defaults to the tutorial's 10.

    Example:

    ```python
    >>> from luong_chatbot.inference import TUTORIAL_PROMPTS, generate_replies, load_model_and_tokenizer
    >>> model, tokenizer = load_model_and_tokenizer("runs/sample")
    >>> replies = generate_replies(model, tokenizer, TUTORIAL_PROMPTS, num_beams=5, no_repeat_ngram_size=3)
    ```
    """
    if not prompts:
        return []
    if "max_new_tokens" not in generate_kwargs and "max_length" not in generate_kwargs:
        generate_kwargs["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS
    batch = tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        sequences = model.generate(
            input_ids=batch["input_ids"].to(model.device),
            attention_mask=batch["attention_mask"].to(model.device),
            **generate_kwargs,
        )
    return [reply.strip() for reply in tokenizer.batch_decode(sequences, skip_special_tokens=True)]


def normalized_words(tokenizer: PreTrainedTokenizerBase, text: str) -> list[str]:
    """The words the tokenizer sees in `text`: normalized like the tutorial, split on whitespace."""
    backend = tokenizer.backend_tokenizer
    normalized = backend.normalizer.normalize_str(text) if backend.normalizer else text
    return [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalized)]


def unknown_words(tokenizer: PreTrainedTokenizerBase, text: str) -> list[str]:
    """The words of `text`, normalized like the tutorial, that are not in the vocabulary (in order, once each)."""
    vocab = tokenizer.get_vocab()
    return list(dict.fromkeys(word for word in normalized_words(tokenizer, text) if word not in vocab))


def truncation_notice(tokenizer: PreTrainedTokenizerBase, text: str) -> str | None:
    """A notice when `text` has more words than the model reads (EOS takes one place); `None` when it fits."""
    limit = tokenizer.model_max_length - 1
    words = normalized_words(tokenizer, text)
    if len(words) <= limit:
        return None
    return f"Note: the model reads at most {limit} words; your input was cut to: {' '.join(words[:limit])}"


def input_notices(tokenizer: PreTrainedTokenizerBase, text: str) -> list[str]:
    """What the user should know about how the model reads `text`: nothing readable, unknown words, a cut input."""
    if not normalized_words(tokenizer, text):
        return ["Note: the model reads only letters and . ! ?, and your input has none of them"]
    notices = []
    unknown = unknown_words(tokenizer, text)
    if unknown:
        notices.append(f"Note: unknown words, read as {tokenizer.unk_token}: {', '.join(unknown)}")
    cut = truncation_notice(tokenizer, text)
    if cut:
        notices.append(cut)
    return notices


def reply_with_notices(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, query: str, **generate_kwargs: Any
) -> tuple[str, list[str]]:
    """One reply to one user input, with the notices about how the model read it: what the chat and the web page show.

    Args:
        model (`PreTrainedModel`):
            A seq2seq model such as `LuongGruForConditionalGeneration`.
        tokenizer (`PreTrainedTokenizerBase`):
            Its tokenizer.
        query (`str`):
            One user input, already stripped of surrounding whitespace.
        generate_kwargs:
            Passed to `generate_replies`.

    Returns:
        `tuple[str, list[str]]`: the reply and the notices of `input_notices`, each one line.
    """
    notices = input_notices(tokenizer, query)
    (reply,) = generate_replies(model, tokenizer, [query], **generate_kwargs)
    return reply, notices
