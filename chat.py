"""Chat with a trained GRU encoder-decoder chatbot, from a local model folder or a Hub repository id.

Interactive, like the PyTorch Chatbot Tutorial's `evaluateInput`, but over any `save_pretrained` folder:

    python chat.py runs/sample                       # `> ` prompt, `Bot: ...` replies, q / quit / Ctrl-D ends
    python chat.py runs/sample --num-beams 5 --no-repeat-ngram-size 3
    printf 'hello?\\nwhere am I?\\n' | python chat.py runs/sample   # scripted: one `Bot: ...` line per input line

Unlike the tutorial, an unknown word is not an error: it becomes `<unk>`, the reply still comes, and a notice on
stderr names the words the model does not know. `python -m chat evaluate MODEL --dataset-dir OUT` runs the held-out
evaluation in `evaluation.py`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, set_seed

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
QUIT_COMMANDS = ("q", "quit")
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
    >>> from chat import TUTORIAL_PROMPTS, generate_replies, load_model_and_tokenizer
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


def generate_kwargs_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Map the decoding flags onto `generate()` keyword arguments, leaving unset ones to the generation config."""
    names = (
        "num_beams",
        "no_repeat_ngram_size",
        "min_new_tokens",
        "length_penalty",
        "top_k",
        "top_p",
        "temperature",
        "max_new_tokens",
    )
    kwargs = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.do_sample:
        kwargs["do_sample"] = True
    return kwargs


def _number(kind: type, minimum: float, inclusive: bool = True, maximum: float | None = None):
    """An argparse type: `kind` within [minimum, maximum] (or (minimum, maximum] when not `inclusive`)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        too_small = value < minimum if inclusive else value <= minimum
        if too_small or (maximum is not None and value > maximum):
            low = "[" if inclusive else "("
            raise argparse.ArgumentTypeError(f"expected a value in {low}{minimum}, {maximum or 'inf'}], got {text}")
        return value

    return parse


class OneLineErrorParser(argparse.ArgumentParser):
    """Reports a bad flag as one line (`error: ...`) and exit code 2, without the usage block."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """The decoding flags shared by chat and evaluation; `generate_kwargs_from_args` maps them onto `generate()`."""
    decoding = parser.add_argument_group("decoding (passed to generate(); unset flags keep the model's defaults)")
    decoding.add_argument("--num-beams", type=_number(int, 1), help="Beam search width (1 = greedy).")
    decoding.add_argument("--no-repeat-ngram-size", type=_number(int, 0), help="Never repeat an n-gram this long.")
    decoding.add_argument("--min-new-tokens", type=_number(int, 0), help="Do not end a reply before this many tokens.")
    decoding.add_argument("--length-penalty", type=float, help="Beam search: > 0 favours longer replies.")
    decoding.add_argument("--do-sample", action="store_true", help="Sample instead of greedy or beam search.")
    decoding.add_argument("--top-k", type=_number(int, 0), help="Sampling: keep the k most likely tokens.")
    decoding.add_argument(
        "--top-p",
        type=_number(float, 0, False, 1),
        help="Sampling: keep the smallest set with this total probability.",
    )
    decoding.add_argument("--temperature", type=_number(float, 0, False), help="Sampling: divide the logits by this.")
    decoding.add_argument(
        "--max-new-tokens",
        type=_number(int, 1),
        help=f"Longest reply in tokens, EOS included (default {DEFAULT_MAX_NEW_TOKENS}).",
    )
    decoding.add_argument("--seed", type=int, help="Seed for reproducible sampling.")
    parser.add_argument(
        "--quantize", action="store_true", help="int8 dynamic quantization of the GRU and Linear layers (CPU)."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="luong-chat",
        description="Chat with a trained chatbot. `luong-chat evaluate MODEL --dataset-dir OUT` evaluates it instead.",
    )
    parser.add_argument("model", help="A model folder written by train.py, or a Hub repository id.")
    add_decoding_arguments(parser)
    return parser


def read_queries(stream: TextIO, interactive: bool):
    """Yield stripped user inputs until EOF or a quit command; interactive input shows the `> ` prompt."""
    while True:
        try:
            line = input("> ") if interactive else stream.readline()
        except (EOFError, KeyboardInterrupt):
            return
        if not interactive and not line:
            return
        query = line.strip()
        if query.lower() in QUIT_COMMANDS:
            return
        if query:
            yield query


def chat(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    generate_kwargs: dict[str, Any],
    stream: TextIO = sys.stdin,
    interactive: bool = False,
) -> None:
    """Answer each query from `stream` with a `Bot: ...` line on stdout; notices go to stderr."""
    for query in read_queries(stream, interactive):
        unknown = unknown_words(tokenizer, query)
        if unknown:
            print(f"Note: unknown words, read as {tokenizer.unk_token}: {', '.join(unknown)}", file=sys.stderr)
        notice = truncation_notice(tokenizer, query)
        if notice:
            print(notice, file=sys.stderr)
        (reply,) = generate_replies(model, tokenizer, [query], **generate_kwargs)
        print(f"Bot: {reply}", flush=True)


def quiet_transformers() -> None:
    """Keep the terminal for the conversation: no weight-loading progress bars or advisory warnings."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "evaluate":
        import evaluation

        return evaluation.main(argv[1:])
    args = build_parser().parse_args(argv)
    quiet_transformers()
    generate_kwargs = generate_kwargs_from_args(args)
    try:
        model, tokenizer = load_model_and_tokenizer(args.model, quantize=args.quantize)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        # One throwaway reply checks the decoding flags together before the user types anything.
        generate_replies(model, tokenizer, ["hello"], **generate_kwargs)
    except ValueError as error:
        print(f"error: bad decoding flags: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    if args.seed is not None:
        set_seed(args.seed)
    interactive = sys.stdin.isatty()
    if interactive:
        print("Chatting with", args.model, "- type q or quit to stop.")
    chat(model, tokenizer, generate_kwargs, sys.stdin, interactive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
