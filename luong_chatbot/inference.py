"""Loading a trained chatbot and replying with it: what the terminal chat, evaluation, training and the web page share.

>>> from luong_chatbot.inference import TUTORIAL_PROMPTS, generate_replies, load_model_and_tokenizer
>>> model, tokenizer = load_model_and_tokenizer("runs/sample")  # doctest: +SKIP
>>> generate_replies(model, tokenizer, TUTORIAL_PROMPTS[:2])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import socket
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

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


MODEL_TYPE = "luong_gru"  # the only model type loaded: no other architecture's code or weights ever run here
WEIGHTS_NAME = "model.safetensors"  # safetensors only: a pytorch_model.bin is a pickle, and unpickling runs code
HUB_PROBE_TIMEOUT_S = 5.0  # how long to wait for the Hub before saying it cannot be reached


class ModelLoadError(Exception):
    """The model or tokenizer could not be loaded; the message is one line meant for the user."""


def safetensors_is_whole(path: str | os.PathLike) -> bool:
    """Whether a safetensors file holds every byte its header promises (a cut-off write or copy leaves it shorter)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            header_size = int.from_bytes(handle.read(8), "little")
            if header_size > size - 8:
                return False
            header = json.loads(handle.read(header_size))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except (OSError, ValueError, AttributeError, KeyError, TypeError, IndexError):
        return False
    return size == 8 + header_size + max(ends, default=0)


def _check_local_folder(folder: str) -> None:
    """Checks a model folder before transformers reads it: a luong_gru config and whole safetensors weights."""
    if not os.path.isdir(folder):
        raise ModelLoadError(f"{folder}: expected a model folder (config.json, model.safetensors, ...)")
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except FileNotFoundError:
        raise ModelLoadError(f"{folder}: no config.json here; expected a folder written by train.py") from None
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{folder}/config.json: not a readable JSON file ({error})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != MODEL_TYPE:
        raise ModelLoadError(f"{folder}/config.json: expected model_type {MODEL_TYPE!r}, found {model_type!r}")
    weights = os.path.join(folder, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        raise ModelLoadError(
            f"{folder}: no {WEIGHTS_NAME}; only safetensors weights are loaded (a .bin file is a pickle, which can "
            "run code)"
        )
    if not safetensors_is_whole(weights):
        raise ModelLoadError(f"{weights}: truncated or damaged (shorter than its header says); save or copy it again")


def _hub_is_reachable() -> str | None:
    """`None` if a TCP connection to the Hub endpoint opens within `HUB_PROBE_TIMEOUT_S`, else why not."""
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as error:
        return f"{constants.ENDPOINT} cannot be reached: {error.strerror or error}"
    return None


def _hub_files_only_local(hub_id: str) -> bool:
    """Whether to read `hub_id` from the local cache only: offline mode, or a Hub that cannot be reached.

    Without this, transformers retries an unreachable Hub for most of a minute, with a warning per retry.
    """
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    if constants.is_offline_mode():
        if not cached:
            raise ModelLoadError(
                f"{hub_id}: no such local folder, and not in the Hugging Face cache (HF_HUB_OFFLINE is set, so the "
                "Hub is not asked)"
            )
        return True
    unreachable = _hub_is_reachable()
    if unreachable is None:
        return False
    if not cached:
        raise ModelLoadError(
            f"{hub_id}: no such local folder, and the Hub {unreachable}; check the path or the network "
            "(HF_HUB_OFFLINE=1 uses the local cache only)"
        )
    return True


def load_model_and_tokenizer(
    path_or_hub_id: str, *, quantize: bool = False, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a saved chatbot and its tokenizer, in eval mode on the CPU.

    Only `luong_gru` models with safetensors weights load, whose tokenizer has `config.vocab_size` tokens; by default
    with this package's own modeling code, never a model folder's.

    Args:
        path_or_hub_id (`str`):
            A folder written by `save_pretrained` (e.g. `train.py --output-dir`) or a Hub repository id.
        quantize (`bool`, *optional*, defaults to `False`):
            Apply int8 dynamic quantization to the GRU and Linear layers (see `quantize_for_cpu`).
        trust_remote_code (`bool`, *optional*, defaults to `False`):
            Run the Python files of the model folder or repository instead of this package's (`--trust-remote-code`).

    Raises:
        `ModelLoadError`: with a one-line message when the path is missing or holds no loadable model.
    """
    import modeling_seq2seq  # noqa: F401  (registers the luong_gru config, model and tokenizer with the Auto classes)

    local_files_only = False
    if os.path.exists(path_or_hub_id):
        _check_local_folder(path_or_hub_id)
    elif not HUB_ID_PATTERN.match(path_or_hub_id) or os.path.isdir(path_or_hub_id.split("/")[0]):
        # `runs/typo` matches the Hub's `user/name` form, but with a local `runs/` it is a mistyped folder: say so
        # now rather than after the Hub client's retries.
        raise ModelLoadError(f"{path_or_hub_id}: no such model folder")
    else:
        local_files_only = _hub_files_only_local(path_or_hub_id)
    kwargs = {"trust_remote_code": trust_remote_code, "local_files_only": local_files_only}
    try:
        config = AutoConfig.from_pretrained(path_or_hub_id, **kwargs)
        if config.model_type != MODEL_TYPE:
            raise ModelLoadError(f"{path_or_hub_id}: expected model_type {MODEL_TYPE!r}, found {config.model_type!r}")
        tokenizer = AutoTokenizer.from_pretrained(path_or_hub_id, **kwargs)
        model = AutoModelForSeq2SeqLM.from_pretrained(path_or_hub_id, config=config, use_safetensors=True, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, SafetensorError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{path_or_hub_id}: could not load a model and tokenizer ({first_line})") from error
    if len(tokenizer) != config.vocab_size:
        raise ModelLoadError(
            f"{path_or_hub_id}: the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
            f"{config.vocab_size}: they are not from the same training run"
        )
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
