"""Command-line pieces shared by the chat, evaluation and web entry points: one-line errors and the decoding flags."""

from __future__ import annotations

import argparse
from typing import Any

from .inference import DEFAULT_MAX_NEW_TOKENS


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


def add_model_loading_arguments(parser: argparse.ArgumentParser) -> None:
    """How the model is loaded: by default only with this package's own code, never a model folder's."""
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="Run the Python files that come with the model folder or Hub repository (only for sources you trust).",
    )


def quiet_transformers() -> None:
    """Keep the terminal for the conversation: no weight-loading progress bars or advisory warnings."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
