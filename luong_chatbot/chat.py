"""Chat with a trained GRU encoder-decoder chatbot, from a local model folder or a Hub repository id.

Interactive, like the PyTorch Chatbot Tutorial's `evaluateInput`, but over any `save_pretrained` folder:

    python chat.py runs/sample                       # `> ` prompt, `Bot: ...` replies, q / quit / Ctrl-D ends
    python chat.py runs/sample --num-beams 5 --no-repeat-ngram-size 3
    printf 'hello?\\nwhere am I?\\n' | python chat.py runs/sample   # scripted: one `Bot: ...` line per input line

Unlike the tutorial, an unknown word is not an error: it becomes `<unk>`, the reply still comes, and a notice on
stderr names the words the model does not know. `python chat.py evaluate MODEL --dataset-dir OUT` (or
`luong-evaluate`) runs the held-out evaluation in `luong_chatbot.evaluation`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed

from .cli import OneLineErrorParser, add_decoding_arguments, generate_kwargs_from_args, quiet_transformers
from .inference import ModelLoadError, generate_replies, load_model_and_tokenizer, reply_with_notices

QUIT_COMMANDS = ("q", "quit")


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
        reply, notices = reply_with_notices(model, tokenizer, query, **generate_kwargs)
        for notice in notices:
            print(notice, file=sys.stderr)
        print(f"Bot: {reply}", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "evaluate":
        from . import evaluation

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
