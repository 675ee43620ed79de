"""Greedy chat over an ONNX export with only `onnxruntime`, `tokenizers` and `numpy`: neither torch nor transformers.

`python -m modeling_seq2seq.export` copies this file into the folder it writes, so a deployment can run

    python OUT_DIR/onnx_greedy.py OUT_DIR "hello?" "where am I?"     # or one prompt a line on stdin

Beam search, n-gram blocking, minimum lengths and sampling come from transformers' `generate()`, which needs torch:
use `LuongGruOnnxForConditionalGeneration` (`modeling_seq2seq/onnx_luong_gru.py`) for those. This file is also that
class's loader, and it imports nothing from its package, so that it runs on its own.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MODEL_TYPE = "luong_gru"
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder_step.onnx"
ENCODER_IO = (["input_ids", "attention_mask"], ["last_hidden_state", "final_state", "encoder_attention_mask"])
DECODER_IO = (
    ["decoder_input_ids", "state", "encoder_hidden_states", "encoder_attention_mask"],
    ["logits", "new_state"],
)
# The tutorial's MAX_LENGTH, the default when generation_config.json names no max_new_tokens.
DEFAULT_MAX_NEW_TOKENS = 10


class OnnxFolderError(ValueError):
    """The folder is not a loadable ONNX export of this model; the message is one line meant for the user."""


def read_json(folder: str, name: str) -> dict:
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise OnnxFolderError(f"{path}: missing; expected a folder written by `python -m modeling_seq2seq.export`")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise OnnxFolderError(f"{path}: not readable JSON ({error})") from error


def open_session(folder: str, name: str, expected_io: tuple[list, list], options=None) -> ort.InferenceSession:
    """An `InferenceSession` on `folder/name`, checked to have the exported input and output names."""
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise OnnxFolderError(f"{path}: missing; export the model with `python -m modeling_seq2seq.export`")
    try:
        session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own pybind error types for unreadable files
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OnnxFolderError(f"{path}: not a readable ONNX model ({message})") from error
    names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if names != tuple(expected_io):
        raise OnnxFolderError(f"{path}: inputs, outputs {names}, expected {tuple(expected_io)}: not this model")
    return session


class OnnxLuongGru:
    """
    The two ONNX Runtime sessions of an exported folder, with its `config.json` checked against them.

    Args:
        folder (`str`):
            A folder written by `python -m modeling_seq2seq.export`.
        int8 (`bool`, *optional*, defaults to `False`):
            Run `encoder.int8.onnx` and `decoder_step.int8.onnx` (exported with `--quantize int8`).
        options (`onnxruntime.SessionOptions`, *optional*):
            Session options, e.g. the number of threads.
    """

    def __init__(self, folder: str, int8: bool = False, options: ort.SessionOptions | None = None):
        if not os.path.isdir(folder):
            raise OnnxFolderError(f"{folder}: no such folder; expected the output of `modeling_seq2seq.export`")
        self.config = read_json(folder, "config.json")
        if self.config.get("model_type") != MODEL_TYPE:
            raise OnnxFolderError(
                f"{folder}/config.json: model_type {self.config.get('model_type')!r}, expected {MODEL_TYPE!r}: "
                "a folder from another model"
            )
        suffix = ".int8.onnx" if int8 else ".onnx"
        self.files = [name.replace(".onnx", suffix) for name in (ENCODER_FILE, DECODER_FILE)]
        self.encoder = open_session(folder, self.files[0], ENCODER_IO, options)
        self.decoder = open_session(folder, self.files[1], DECODER_IO, options)
        self.check_sizes(folder)

    def check_sizes(self, folder: str) -> None:
        """The graphs' fixed sizes must be `config.json`'s: files copied in from another export fail here."""
        _, layers, hidden_size = self.encoder.get_outputs()[1].shape  # final_state (B, L, H)
        found = (self.decoder.get_outputs()[0].shape[-1], hidden_size, layers)
        expected = (self.config["vocab_size"], self.config["hidden_size"], self.config["decoder_layers"])
        if found != expected:
            raise OnnxFolderError(
                f"{folder}: the .onnx files have (vocab_size, hidden_size, layers) = {found} but config.json says "
                f"{expected}: files from another model"
            )

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
        """`last_hidden_state` (B, S, H), `final_state` (B, L, H), `encoder_attention_mask` (B, S) bool."""
        feed = {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)}
        return self.encoder.run(None, feed)

    def step(
        self, tokens: np.ndarray, state: np.ndarray, encoder_hidden_states: np.ndarray, mask: np.ndarray
    ) -> list[np.ndarray]:
        """One decoder step: `tokens` (B, 1), `state` (L, B, H) -> `logits` (B, V), `new_state` (L, B, H)."""
        feed = {
            "decoder_input_ids": tokens.astype(np.int64),
            "state": state,
            "encoder_hidden_states": encoder_hidden_states,
            "encoder_attention_mask": mask,
        }
        return self.decoder.run(None, feed)


class OnnxGreedyChatbot:
    """
    Tokenizer, both graphs and greedy search in numpy: replies equal to `generate()`'s greedy replies.

    Args:
        folder (`str`):
            A folder written by `python -m modeling_seq2seq.export`.
        int8 (`bool`, *optional*, defaults to `False`):
            Use the int8 files.

    Example:

    ```python
    >>> bot = OnnxGreedyChatbot("runs/sample-onnx")  # doctest: +SKIP
    >>> bot.replies(["hello?", "where am I?"])  # doctest: +SKIP
    ```
    """

    def __init__(self, folder: str, int8: bool = False, options: ort.SessionOptions | None = None):
        self.model = OnnxLuongGru(folder, int8=int8, options=options)
        tokenizer_config = read_json(folder, "tokenizer_config.json")
        if not os.path.isfile(os.path.join(folder, "tokenizer.json")):
            raise OnnxFolderError(f"{folder}/tokenizer.json: missing; expected the exported tokenizer")
        self.tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        config = self.model.config
        # As the transformers tokenizer with padding=True, truncation=True: right padding, at most model_max_length.
        self.tokenizer.enable_truncation(int(tokenizer_config.get("model_max_length", DEFAULT_MAX_NEW_TOKENS)))
        self.tokenizer.enable_padding(pad_id=config["pad_token_id"], pad_token=tokenizer_config.get("pad_token"))
        generation = read_json(folder, "generation_config.json")
        self.max_new_tokens = generation.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS
        # As generate()'s SuppressTokensLogitsProcessor: these ids are never chosen (a model trained on <unk>).
        self.suppress_tokens = [int(token) for token in generation.get("suppress_tokens") or []]

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded `input_ids` and `attention_mask`, both (B, S) int64."""
        encodings = self.tokenizer.encode_batch(list(texts))
        input_ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        return input_ids, np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)

    def greedy(self, input_ids: np.ndarray, attention_mask: np.ndarray, max_new_tokens: int | None = None) -> list:
        """Token ids of each reply, EOS excluded: argmax at every step, a row stops at EOS."""
        config = self.model.config
        max_new_tokens = max_new_tokens or self.max_new_tokens
        outputs, final_state, mask = self.model.encode(input_ids, attention_mask)
        state = np.ascontiguousarray(final_state.transpose(1, 0, 2))  # (B, L, H) -> (L, B, H)
        tokens = np.full((input_ids.shape[0], 1), config["decoder_start_token_id"], dtype=np.int64)  # (B, 1)
        replies = [[] for _ in range(input_ids.shape[0])]
        running = np.ones(input_ids.shape[0], dtype=bool)
        for _ in range(max_new_tokens):
            logits, state = self.model.step(tokens, state, outputs, mask)
            if self.suppress_tokens:
                logits[..., self.suppress_tokens] = -np.inf
            tokens = logits.argmax(axis=-1)[:, None]  # (B, 1)
            running &= tokens[:, 0] != config["eos_token_id"]
            for row in np.flatnonzero(running):
                replies[row].append(int(tokens[row, 0]))
            if not running.any():
                break
        return replies

    def replies(self, texts: Sequence[str], max_new_tokens: int | None = None) -> list[str]:
        """Greedy replies to `texts`, batched, as plain text without special tokens."""
        if not texts:
            return []
        token_lists = self.greedy(*self.tokenize(texts), max_new_tokens=max_new_tokens)
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in token_lists]


def main(argv: list[str] | None = None) -> int:
    """`onnx_greedy.py FOLDER [PROMPT ...]`: one `Bot: ...` line per prompt (stdin lines when none is given)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: onnx_greedy.py FOLDER [PROMPT ...]  (prompts from stdin, one a line, when none is given)")
        return 0 if argv else 2
    try:
        bot = OnnxGreedyChatbot(argv[0])
    except OnnxFolderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    prompts = argv[1:] or (line.strip() for line in sys.stdin)
    for prompt in prompts:
        if prompt:
            print(f"Bot: {bot.replies([prompt])[0]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
