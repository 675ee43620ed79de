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
import codecs
import os
import sys
from typing import IO, Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed

from .cli import (
    OneLineErrorParser,
    add_decoding_arguments,
    add_model_loading_arguments,
    generate_kwargs_from_args,
    quiet_transformers,
)
from .inference import ModelLoadError, generate_replies, load_model_and_tokenizer, reply_with_notices

QUIT_COMMANDS = ("q", "quit")
# The model reads 10 words: a longer line is cut to its start before it is decoded and normalized (normalizing a
# 50 MB line took minutes and gigabytes), and the rest of it is skipped.
MAX_LINE_BYTES = 4096
FALLBACK_ENCODING = "iso-8859-1"  # the corpus's own: every byte sequence decodes


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="luong-chat",
        description="Chat with a trained chatbot. `luong-chat evaluate MODEL --dataset-dir OUT` evaluates it instead.",
    )
    parser.add_argument("model", help="A model folder written by train.py, or a Hub repository id.")
    add_decoding_arguments(parser)
    add_model_loading_arguments(parser)
    return parser


def decode_line(raw: bytes, cut: bool = False) -> str:
    """Input bytes as text: UTF-8 if they are, else ISO-8859-1 (Latin-1 input such as `caf\\xe9` reads as `café`).

    A line `cut` at `MAX_LINE_BYTES` may end inside a UTF-8 character: that partial character is dropped.
    """
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(raw, final=not cut)
    except UnicodeDecodeError:
        return raw.decode(FALLBACK_ENCODING)


def _read_raw_line(stream: IO) -> tuple[bytes, bool] | None:
    """The next line's first `MAX_LINE_BYTES` bytes and whether it was longer (the rest is skipped); `None` at EOF."""
    source = getattr(stream, "buffer", stream)  # bytes from a real stdin; a text stream (tests) is re-encoded
    line = source.readline(MAX_LINE_BYTES)
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogateescape")
    if not line:
        return None
    cut = len(line) >= MAX_LINE_BYTES and not line.endswith(b"\n")
    rest = line if cut else b"\n"
    while rest and not rest.endswith(b"\n"):
        rest = source.readline(1 << 16)
        rest = rest.encode("utf-8", "surrogateescape") if isinstance(rest, str) else rest
    return line, cut


def _read_interactive_line() -> tuple[bytes, bool]:
    """A line typed at the `> ` prompt (with line editing), as bytes, cut like piped input."""
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="surrogateescape")  # bytes that are not UTF-8 come through, not an exception
    raw = input("> ").encode("utf-8", "surrogateescape")
    return raw[:MAX_LINE_BYTES], len(raw) > MAX_LINE_BYTES


def read_queries(stream: IO, interactive: bool):
    """Yield stripped user inputs until EOF or a quit command; interactive input shows the `> ` prompt.

    Any bytes are accepted (see `decode_line`); a line longer than `MAX_LINE_BYTES` is cut, with a notice on stderr.
    """
    while True:
        try:
            read = _read_interactive_line() if interactive else _read_raw_line(stream)
        except (EOFError, KeyboardInterrupt):
            return
        if read is None:
            return
        raw, cut = read
        if cut:
            print(f"Note: your line is longer than {MAX_LINE_BYTES} bytes: only its start is read.", file=sys.stderr)
        query = decode_line(raw, cut).strip()
        if query.lower() in QUIT_COMMANDS:
            return
        if query:
            yield query


def chat(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    generate_kwargs: dict[str, Any],
    stream: IO = sys.stdin,
    interactive: bool = False,
) -> None:
    """Answer each query from `stream` with a `Bot: ...` line on stdout; notices go to stderr."""
    for query in read_queries(stream, interactive):
        reply, notices = reply_with_notices(model, tokenizer, query, **generate_kwargs)
        for notice in notices:
            print(notice, file=sys.stderr)
        print(f"Bot: {reply}", flush=True)


def _discard_stdout() -> None:
    """Points stdout at /dev/null, so that the interpreter's last flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _closed_streams_error() -> str | None:
    if sys.stdin is None:
        return "stdin is closed: pipe the queries in, or run it on a terminal"
    if sys.stdout is None:
        return "stdout is closed: there is nowhere to write the replies"
    return None


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    closed = _closed_streams_error()
    if closed:
        if sys.stderr is not None:
            print(f"error: {closed}", file=sys.stderr)
        return 2
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")  # a notice echoing the input never fails to print
    quiet_transformers()
    generate_kwargs = generate_kwargs_from_args(args)
    try:
        model, tokenizer = load_model_and_tokenizer(
            args.model, quantize=args.quantize, trust_remote_code=args.trust_remote_code
        )
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
    try:
        if interactive:
            print("Chatting with", args.model, "- type q or quit to stop.")
        chat(model, tokenizer, generate_kwargs, sys.stdin, interactive)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head -1`): nothing is wrong, stop quietly
        _discard_stdout()
    except OSError as error:  # a full disk, /dev/full
        _discard_stdout()
        print(f"error: cannot write the replies to stdout ({error.strerror or error})", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "evaluate":
        from . import evaluation

        return evaluation.main(argv[1:])
    try:
        return _run(argv)
    except KeyboardInterrupt:  # Ctrl-C while loading or replying: end like the tutorial's loop, without a traceback
        if sys.stderr is not None:
            print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
