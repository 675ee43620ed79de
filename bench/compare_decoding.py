"""Decoding strategies compared on the validation split, to choose a model's default decoding (JSON).

    python bench/compare_decoding.py --model runs/chatbot --dataset-dir runs/chatbot/data \\
        --output bench/results/compare_decoding.json

For each candidate (greedy; beam search with `no_repeat_ngram_size` and a length penalty; nucleus sampling with a
temperature, over several seeds whose metrics are averaged) it generates a reply to every validation query and reports
distinct-1/2, the bland share (`luong_chatbot.evaluation.BLAND_REPLIES`), the average reply length and BLEU, plus the
replies to the tutorial's ten prompts. The rule, fixed before measuring the default recipe's final model: the
deterministic candidate with the lowest bland share among those whose distinct-2 is at least greedy's (fewer stock
replies without fewer distinct ones; BLEU breaks ties); a sampling candidate replaces it only if it is better on
distinct-2, bland share and BLEU at once (sampling gives up reproducible replies, so it has to win on every count).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import bench_common as bc
import torch
from transformers import set_seed

from luong_chatbot import evaluation
from luong_chatbot.inference import TUTORIAL_PROMPTS, generate_replies, load_model_and_tokenizer

CANDIDATES: dict[str, dict[str, Any]] = {
    "greedy": {"num_beams": 1},
    "beam 5, no_repeat_ngram_size 3": {"num_beams": 5, "no_repeat_ngram_size": 3},
    "beam 5, no_repeat_ngram_size 3, length_penalty 1.5": {
        "num_beams": 5,
        "no_repeat_ngram_size": 3,
        "length_penalty": 1.5,
    },
    "beam 5, no_repeat_ngram_size 2, length_penalty 1.5": {
        "num_beams": 5,
        "no_repeat_ngram_size": 2,
        "length_penalty": 1.5,
    },
    "beam 5, no_repeat_ngram_size 3, length_penalty 2.0": {
        "num_beams": 5,
        "no_repeat_ngram_size": 3,
        "length_penalty": 2.0,
    },
    "beam 5, no_repeat_ngram_size 2, length_penalty 2.0": {
        "num_beams": 5,
        "no_repeat_ngram_size": 2,
        "length_penalty": 2.0,
    },
    "sampling top_p 0.5, temperature 0.7": {"do_sample": True, "top_p": 0.5, "temperature": 0.7, "top_k": 0},
    "sampling top_p 0.7, temperature 0.7": {"do_sample": True, "top_p": 0.7, "temperature": 0.7, "top_k": 0},
    "sampling top_p 0.9, temperature 0.8": {"do_sample": True, "top_p": 0.9, "temperature": 0.8, "top_k": 0},
    "sampling top_p 0.9, temperature 1.0": {"do_sample": True, "top_p": 0.9, "temperature": 1.0, "top_k": 0},
}


# The metrics of a candidate, averaged over the seeds of a sampling one.
METRICS = ("bleu", "distinct_1", "distinct_2", "bland_share", "avg_reply_length")


def measure(model, tokenizer, data, kwargs: dict[str, Any], seed: int) -> dict[str, Any]:
    """Metrics of one candidate on `data`, and its replies to the tutorial's prompts."""
    kwargs = {"max_new_tokens": evaluation.DEFAULT_MAX_NEW_TOKENS, **kwargs}
    references = [text.strip() for text in tokenizer.batch_decode(list(data["labels"]), skip_special_tokens=True)]
    set_seed(seed)
    replies = evaluation.generated_replies(model, tokenizer, data, 256, kwargs)
    metrics = evaluation.generation_metrics(replies, references)
    metrics.pop("bleu_signature")
    set_seed(seed)
    prompts = generate_replies(model, tokenizer, TUTORIAL_PROMPTS, **kwargs)
    prompt_replies = dict(zip(TUTORIAL_PROMPTS, prompts, strict=True))
    return {"generate_kwargs": kwargs, **metrics, "tutorial_prompts": prompt_replies}


def measure_seeds(model, tokenizer, data, kwargs: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """`measure` once for a deterministic candidate; for a sampling one, per seed, its metrics averaged over seeds."""
    if not kwargs.get("do_sample"):
        return measure(model, tokenizer, data, kwargs, seeds[0])
    runs = [measure(model, tokenizer, data, kwargs, seed) for seed in seeds]
    averaged = {name: statistics.fmean(run[name] for run in runs) for name in METRICS}
    per_seed = {name: [run[name] for run in runs] for name in METRICS}
    return {**runs[0], **averaged, "seeds": seeds, "per_seed": per_seed}  # the prompts' replies: the first seed's


def choose(results: dict[str, dict[str, Any]]) -> str:
    """The rule of the module docstring."""
    greedy = results["greedy"]
    deterministic = {name: r for name, r in results.items() if not r["generate_kwargs"].get("do_sample")}
    eligible = {name: r for name, r in deterministic.items() if r["distinct_2"] >= greedy["distinct_2"]}
    chosen = min(eligible, key=lambda name: (eligible[name]["bland_share"], -eligible[name]["bleu"]))
    for name, r in results.items():
        best = results[chosen]
        if r["generate_kwargs"].get("do_sample") and all(
            (r["distinct_2"] > best["distinct_2"], r["bland_share"] < best["bland_share"], r["bleu"] > best["bleu"])
        ):
            chosen = name
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="A model folder written by train.py.")
    parser.add_argument("--dataset-dir", required=True, help="A folder written by data_scripts.build_dataset.")
    parser.add_argument("--split", default="validation", help="Where to choose (default: validation).")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds of the sampling candidates (averaged)."
    )
    parser.add_argument("--output", help="Also write the JSON here.")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, tokenizer = load_model_and_tokenizer(args.model)
    for name, value in {"num_beams": 1, "no_repeat_ngram_size": 0, "length_penalty": 1.0, "do_sample": False}.items():
        setattr(model.generation_config, name, value)  # every candidate starts from greedy, whatever the model saved
    data = evaluation.load_split(args.dataset_dir, args.split)
    results = {name: measure_seeds(model, tokenizer, data, kwargs, args.seeds) for name, kwargs in CANDIDATES.items()}
    for name, result in results.items():
        print(f"--- {name}", file=sys.stderr)
        for prompt, reply in result["tutorial_prompts"].items():
            print(f"> {prompt}\nBot: {reply}", file=sys.stderr)
    output = {
        "machine": bc.machine_record(),
        "model": args.model,
        "split": args.split,
        "pairs": len(data),
        "candidates": results,
        "chosen": choose(results),
    }
    bc.emit_json(output, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
