"""Held-out evaluation of a trained chatbot: the metric the tutorial never reports.

    luong-evaluate runs/sample --dataset-dir runs/sample/data [--split test] [--output eval.json]

Prints (and with `--output`, writes) one JSON object with:
- teacher-forced `loss` (token-mean NLL over the non-pad target tokens), `perplexity` and `token_accuracy`;
- over replies generated for the split's queries: corpus `bleu` (sacrebleu) against the split's responses,
  `distinct_1` and `distinct_2` (unique over total n-grams of all replies), `bland_share` (the share of replies in
  the fixed list `BLAND_REPLIES`, such as "i don t know ." and "what ?") and `avg_reply_length` in words;
- `tutorial_prompts`: the replies to the tutorial's ten sample prompts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from sacrebleu.metrics import BLEU
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed

from .cli import (
    OneLineErrorParser,
    add_decoding_arguments,
    add_model_loading_arguments,
    generate_kwargs_from_args,
    quiet_transformers,
)
from .inference import (
    DEFAULT_MAX_NEW_TOKENS,
    TUTORIAL_PROMPTS,
    ModelLoadError,
    generate_replies,
    load_model_and_tokenizer,
)


class EvaluationInputError(Exception):
    """Bad user input (dataset folder or split); the message is one line meant for the user."""


def load_split(dataset_dir: str, split: str, max_examples: int | None = None):
    """The `split` of `DATASET_DIR/dataset` written by `data_scripts.build_dataset`, optionally cut to its head."""
    from datasets import load_from_disk

    from data_scripts.build_dataset import check_build

    path = os.path.join(dataset_dir, "dataset")
    if not os.path.isdir(path):
        raise EvaluationInputError(f"{dataset_dir}: no dataset/ folder; expected the output of build_dataset")
    try:
        check_build(dataset_dir)
        splits = load_from_disk(path)
    except (OSError, ValueError, FileNotFoundError) as error:
        raise EvaluationInputError(f"{path}: not a saved DatasetDict ({error})") from error
    except IndexError:  # datasets cannot load a DatasetDict holding a saved empty split
        raise EvaluationInputError(f"{path}: a split is empty; datasets cannot load it") from None
    if split not in splits:
        raise EvaluationInputError(f"{path}: no split {split!r}; it has {', '.join(splits)}")
    data = splits[split]
    for column in ("input_ids", "labels"):
        if column not in data.column_names:
            raise EvaluationInputError(f"{path}: split {split!r} has no {column!r} column")
    if not len(data):
        raise EvaluationInputError(f"{path}: split {split!r} is empty")
    if max_examples is not None:
        data = data.select(range(min(max_examples, len(data))))
    return data


def check_vocabulary(data, vocab_size: int, dataset_dir: str, split: str) -> None:
    """Refuses a split holding token ids the model has no embedding for (a dataset built with a bigger vocabulary)."""
    import pyarrow.compute as pc

    for column in ("input_ids", "labels"):
        largest = pc.max(pc.list_flatten(data.with_format("arrow")[column])).as_py()
        if largest is not None and largest >= vocab_size:
            raise EvaluationInputError(
                f"{dataset_dir}: split {split!r} holds token id {largest} in {column}, but the model has only "
                f"{vocab_size} tokens: the dataset was built with another vocabulary than the model's"
            )


def check_output_path(path: str, overwrite: bool) -> None:
    """Checks `--output` before the evaluation runs: a file path in a writable folder, never someone else's file.

    An existing file is replaced only when it is an earlier result of this command, or with `--overwrite-output`.
    """
    if os.path.isdir(path):
        raise EvaluationInputError(f"--output {path}: expected a file path, found a folder")
    if os.path.exists(path) and not overwrite and not _is_evaluation_result(path):
        raise EvaluationInputError(
            f"--output {path}: the file exists and is not an evaluation result; pass --overwrite-output to replace it"
        )
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):  # the folders missing on the way are created when the result is written
        folder = os.path.dirname(folder)
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        raise EvaluationInputError(f"--output {path}: cannot write there ({error.strerror or error})") from None


def _is_evaluation_result(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            result = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(result, dict) and {"model", "dataset_dir", "split", "pairs"} <= set(result)


def batches(data, batch_size: int, pad_token_id: int) -> Iterator[dict[str, torch.Tensor]]:
    """Padded batches: `input_ids` and `attention_mask` (B, S), `labels` (B, T) with -100 at padding."""
    for start in range(0, len(data), batch_size):
        rows = data[start : start + batch_size]
        queries = [torch.tensor(ids) for ids in rows["input_ids"]]
        responses = [torch.tensor(ids) for ids in rows["labels"]]
        input_ids = torch.nn.utils.rnn.pad_sequence(queries, batch_first=True, padding_value=pad_token_id)
        yield {
            "input_ids": input_ids,  # (B, S)
            "attention_mask": input_ids.ne(pad_token_id).long(),  # (B, S)
            "labels": torch.nn.utils.rnn.pad_sequence(responses, batch_first=True, padding_value=-100),  # (B, T)
        }


@torch.inference_mode()
def teacher_forced_metrics(
    model: PreTrainedModel, data, batch_size: int, pad_token_id: int, progress: tqdm | None = None
) -> dict[str, float]:
    """Token-mean NLL, perplexity and next-token accuracy with the reference reply fed to the decoder."""
    nll_sum, correct, n_tokens = 0.0, 0, 0
    for batch in batches(data, batch_size, pad_token_id):
        labels = batch["labels"]
        mask = labels.ne(-100)  # (B, T)
        # The mask lets the decoder skip padding; the logits at real positions are the same.
        logits = model(**batch, decoder_attention_mask=mask).logits  # (B, T, V)
        nll_sum += F.cross_entropy(logits[mask].float(), labels[mask], reduction="sum").item()
        correct += int(logits.argmax(dim=-1)[mask].eq(labels[mask]).sum())
        n_tokens += int(mask.sum())
        if progress is not None:
            progress.update(labels.size(0))
    loss = nll_sum / max(n_tokens, 1)
    return {
        "loss": loss,
        "perplexity": math.exp(loss),
        "token_accuracy": correct / max(n_tokens, 1),
        "tokens": n_tokens,
    }


@torch.inference_mode()
def generated_replies(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data,
    batch_size: int,
    generate_kwargs: dict[str, Any],
    progress: tqdm | None = None,
) -> list[str]:
    """The model's reply to each query of `data`, decoded without special tokens."""
    replies = []
    for batch in batches(data, batch_size, tokenizer.pad_token_id):
        sequences = model.generate(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **generate_kwargs
        )
        replies.extend(reply.strip() for reply in tokenizer.batch_decode(sequences, skip_special_tokens=True))
        if progress is not None:
            progress.update(batch["input_ids"].size(0))
    return replies


def distinct_n(replies: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al., 2016): unique n-grams over all n-grams of all replies; 0 when there are none."""
    ngrams = [
        tuple(words[i : i + n]) for words in (reply.split() for reply in replies) for i in range(len(words) - n + 1)
    ]
    return len(set(ngrams)) / len(ngrams) if ngrams else 0.0


# Generic replies that fit any prompt (Li et al., 2016's "i don t know" problem), written as the tokenizer normalizes
# text, plus the empty reply. The list is fixed, so that the bland shares of different models and decodings compare.
BLAND_REPLIES: frozenset[str] = frozenset(
    {
        "i don t know .",
        "i don t know",
        "i m sorry .",
        "i know .",
        "what ?",
        "what .",
        "no .",
        "yes .",
        "yeah .",
        "ok .",
        "okay .",
        "oh .",
        "i m not .",
        "i m not sure .",
        "what do you mean ?",
        "what are you doing ?",
        "i don t .",
        "you re not .",
        "why ?",
        "huh ?",
        "",
    }
)


PUNCTUATION_TOKENS = frozenset({".", "!", "?"})


def bland_key(reply: str) -> str:
    """`reply` with a run of closing punctuation cut to its first mark: "yeah . . ." and "what ? ?" are bland too."""
    words = reply.split()
    end = len(words)
    while end > 1 and words[end - 1] in PUNCTUATION_TOKENS and words[end - 2] in PUNCTUATION_TOKENS:
        end -= 1
    return " ".join(words[:end])


def bland_share(replies: Sequence[str]) -> float:
    """Share of the replies that are one of `BLAND_REPLIES` (whole reply, see `bland_key`); 0 when there are none."""
    return sum(bland_key(reply) in BLAND_REPLIES for reply in replies) / len(replies) if replies else 0.0


def generation_metrics(replies: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Corpus BLEU against one reference each, distinct-1/2, the bland share and the mean reply length in words."""
    # The texts are already normalized and split by the tokenizer; force=True only silences sacrebleu's warning
    # that its input looks tokenized.
    bleu = BLEU(force=True)
    score = bleu.corpus_score(list(replies), [list(references)])
    return {
        "bleu": score.score,
        "bleu_signature": str(bleu.get_signature()),
        "distinct_1": distinct_n(replies, 1),
        "distinct_2": distinct_n(replies, 2),
        "bland_share": bland_share(replies),
        "avg_reply_length": sum(len(reply.split()) for reply in replies) / max(len(replies), 1),
        "avg_reference_length": sum(len(ref.split()) for ref in references) / max(len(references), 1),
    }


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data,
    batch_size: int = 256,
    generate_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """All the metrics of this module for one split, as a JSON-ready dict (see the module docstring)."""
    generate_kwargs = {"max_new_tokens": DEFAULT_MAX_NEW_TOKENS, **(generate_kwargs or {})}
    references = [reply.strip() for reply in tokenizer.batch_decode(list(data["labels"]), skip_special_tokens=True)]
    # One bar over both passes; tqdm hides itself when stderr is not a terminal.
    with tqdm(total=2 * len(data), desc="evaluating", unit="pair", disable=None, file=sys.stderr) as progress:
        results = teacher_forced_metrics(model, data, batch_size, tokenizer.pad_token_id, progress)
        replies = generated_replies(model, tokenizer, data, batch_size, generate_kwargs, progress)
    results.update(generation_metrics(replies, references))
    results["decoding"] = generate_kwargs
    prompts_replies = generate_replies(model, tokenizer, TUTORIAL_PROMPTS, **generate_kwargs)
    results["tutorial_prompts"] = [
        {"prompt": prompt, "reply": reply} for prompt, reply in zip(TUTORIAL_PROMPTS, prompts_replies, strict=True)
    ]
    return results


def write_json_atomically(data: dict[str, Any], path: str) -> None:
    """Write to a temporary file next to `path`, then rename, so a reader never sees half a file.

    The file gets the mode of any new file (the temporary one is private), and no temporary file outlives a failure.
    """
    from data_scripts.output_dir import default_file_mode

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False, encoding="utf-8") as handle:
        try:
            json.dump(data, handle, indent=2)
            handle.write("\n")
        except BaseException:
            handle.close()
            os.remove(handle.name)
            raise
    try:
        os.chmod(handle.name, default_file_mode())
        os.replace(handle.name, path)
    except BaseException:
        os.remove(handle.name)
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="luong-evaluate", description="Evaluate a trained chatbot on a held-out split.")
    parser.add_argument("model", help="A model folder written by train.py, or a Hub repository id.")
    parser.add_argument("--dataset-dir", required=True, help="A folder written by data_scripts.build_dataset.")
    parser.add_argument("--split", default="test", help="Which split to evaluate (default: test).")
    parser.add_argument("--output", help="Also write the JSON here (checked before the evaluation runs).")
    parser.add_argument(
        "--overwrite-output",
        action="store_true",
        help="Replace an existing --output file that is not an earlier result of this command.",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="Pairs per forward / generate() call.")
    parser.add_argument("--max-examples", type=int, help="Evaluate only the first N pairs of the split.")
    add_decoding_arguments(parser)
    add_model_loading_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_transformers()
    if args.batch_size < 1 or (args.max_examples is not None and args.max_examples < 1):
        print("error: --batch-size and --max-examples must be at least 1", file=sys.stderr)
        return 2
    try:
        if args.output:
            check_output_path(args.output, args.overwrite_output)
        data = load_split(args.dataset_dir, args.split, args.max_examples)
        model, tokenizer = load_model_and_tokenizer(
            args.model, quantize=args.quantize, trust_remote_code=args.trust_remote_code
        )
        check_vocabulary(data, model.config.vocab_size, args.dataset_dir, args.split)
    except (EvaluationInputError, ModelLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.seed is not None:
        set_seed(args.seed)
    try:
        results = evaluate(model, tokenizer, data, args.batch_size, generate_kwargs_from_args(args))
    except ValueError as error:
        print(f"error: bad decoding flags: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    results = {
        "model": args.model,
        "dataset_dir": args.dataset_dir,
        "split": args.split,
        "pairs": len(data),
        **results,
    }
    print(json.dumps(results, indent=2))  # first: a failed write must not lose the results
    if args.output:
        try:
            write_json_atomically(results, args.output)
        except OSError as error:
            print(f"error: --output {args.output}: could not write it ({error.strerror or error})", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
