"""The tutorial's recipe against the package's default recipe, at equal compute, on held-out data (JSON).

    python bench/bench_quality.py --corpus-dir ../shared/data/cornell-sample \\
        --output bench/results/bench_quality.json

or one seed per core, then merged (the clock is CPU time, so the two processes do not skew each other):

    python bench/bench_quality.py --corpus-dir ../shared/data/cornell-sample --seeds 0 --output seed0.json &
    python bench/bench_quality.py --corpus-dir ../shared/data/cornell-sample --seeds 1 --output seed1.json
    python bench/bench_quality.py --merge seed0.json seed1.json --output bench/results/bench_quality.json

Each recipe's dataset is built with its own pair filters (the default recipe adds training pairs), and the two must
have the same validation and test splits: they do, since a looser filter changes only the train split. For each seed,
both recipes train from the same seed, one after the other in this process, each for
the same training budget (`--budget-s` CPU seconds of one thread, evaluation left out: see
quality_common.BudgetCallback), evaluating the validation NLL every `--eval-steps` steps and keeping the weights of its
best evaluation; a side stops early after `--patience` evaluations without a better one (the best it keeps is the same
as at the full budget as long as its validation curve does not come back down: the tutorial recipe's 4000-step curve
only rises after its best, README "The tutorial's recipe on the sample"). Then each is scored on the test split under
its own default decoding (the generation config its recipe saves): teacher-forced NLL, perplexity and token accuracy;
distinct-1/2, bland share, average length and BLEU of the replies; the replies to the tutorial's ten prompts. Time to
quality is the training time each recipe needs to first reach the tutorial recipe's best validation NLL of the same
seed. `--quick` runs a tiny configuration (tests).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
from typing import Any

import bench_common as bc
import quality_common as qc
import torch

from luong_chatbot import evaluation

SIDES = ("tutorial", "default")
# The package's default recipe (the README's main command trains it).
DEFAULT_RECIPE = "small-regularized"
QUICK_FLAGS = ["--hidden_size", "16", "--per_device_train_batch_size", "16"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-dir", help="A folder written by data_scripts.build_dataset.")
    parser.add_argument("--corpus-dir", default=os.environ.get("CORNELL_SAMPLE_DIR"), help="Or build from this.")
    parser.add_argument("--tutorial-recipe", default="tutorial", help="Recipe name or file (default: tutorial).")
    parser.add_argument("--default-recipe", default=DEFAULT_RECIPE, help=f"Recipe name or file ({DEFAULT_RECIPE}).")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=2700.0,
        help="Training CPU seconds per recipe and seed (default: about what the tutorial's 4000 steps need).",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="Seeds (at least 2 for a claim).")
    parser.add_argument("--eval-steps", type=int, default=25, help="Validation NLL every N steps, both recipes.")
    parser.add_argument(
        "--patience",
        type=int,
        default=10,
        help="Stop a side after this many evaluations without a better validation NLL (0: run the whole budget).",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1).")
    parser.add_argument("--quick", action="store_true", help="A tiny configuration for the tests.")
    parser.add_argument("--output", help="Also write the JSON here.")
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="Instead of measuring: merge results of other seeds into one."
    )
    return parser.parse_args(argv)


def recipes(args: argparse.Namespace) -> dict[str, str]:
    """Each side's recipe, name or file, in SIDES order."""
    return {"tutorial": args.tutorial_recipe, "default": args.default_recipe}


def time_to_reach(history: list[dict[str, float]], target: float) -> float | None:
    """Training seconds of the first evaluation at or below `target`; `None` if none got there."""
    return next((point["train_s"] for point in history if point["nll"] <= target), None)


def score_on_test(model, tokenizer, test_split) -> dict[str, Any]:
    """Test metrics under the model's own generation config (`evaluate` adds only max_new_tokens)."""
    results = evaluation.evaluate(model, tokenizer, test_split, batch_size=256)
    results.pop("bleu_signature")
    return results


def run_seed(args: argparse.Namespace, dataset_dirs: dict[str, str], test_split, seed: int) -> dict[str, Any]:
    """Both recipes for one seed; the default's time to reach the tutorial's best validation NLL."""
    sides = {}
    for side, recipe in recipes(args).items():
        argv = [qc.recipe_path(recipe), "--seed", str(seed), *(QUICK_FLAGS if args.quick else [])]
        print(f"--- seed {seed}: {side} ({argv[0]})", file=sys.stderr, flush=True)
        model, tokenizer, _, run = qc.train_with_budget(
            argv, dataset_dirs[side], args.budget_s, args.eval_steps, args.patience
        )
        sides[side] = {**run, "test": score_on_test(model, tokenizer, test_split)}
    target = sides["tutorial"]["best"]["nll"]
    for side in SIDES:
        sides[side]["time_to_tutorial_best_s"] = time_to_reach(sides[side]["history"], target)
    tutorial_time, default_time = (sides[side]["time_to_tutorial_best_s"] for side in SIDES)
    return {
        "seed": seed,
        "tutorial_best_validation_nll": target,
        **sides,
        "test_perplexity_ratio": sides["default"]["test"]["perplexity"] / sides["tutorial"]["test"]["perplexity"],
        "time_to_quality_ratio": None if default_time is None else default_time / max(tutorial_time, 1e-9),
    }


def side_datasets(args: argparse.Namespace, work_dir: str) -> dict[str, str]:
    """Each side's dataset, built with its recipe's pair filters (or `--dataset-dir` for both)."""
    return {
        side: qc.ensure_dataset(
            args.dataset_dir, args.corpus_dir, work_dir, qc.recipe_filters([qc.recipe_path(recipe)])
        )
        for side, recipe in recipes(args).items()
    }


def same_test_split(dataset_dirs: dict[str, str]):
    """The test split, which must be the same pairs for both sides (a looser filter adds training pairs only)."""
    tutorial, default = (evaluation.load_split(dataset_dirs[side], "test") for side in SIDES)
    if tutorial["input_ids"] != default["input_ids"] or tutorial["labels"] != default["labels"]:
        raise SystemExit("error: the two recipes' datasets have different test splits; compare on the same pairs")
    return tutorial


def merge_results(paths: list[str]) -> dict[str, Any]:
    """One result from runs of other seeds with the same protocol (seeds run in parallel, one process each)."""
    results = [json.loads(pathlib.Path(path).read_text(encoding="utf-8")) for path in paths]
    protocols = [{key: value for key, value in result["protocol"].items() if key != "seeds"} for result in results]
    if any(protocol != protocols[0] for protocol in protocols):
        raise SystemExit("error: --merge: the results were measured with different protocols")
    seeds = [run for result in results for run in result["seeds"]]
    protocol = {**results[0]["protocol"], "seeds": [run["seed"] for run in seeds]}
    machines = [result["machine"] for result in results]
    return {
        "machine": machines[0],
        "machines": machines,
        "protocol": protocol,
        "seeds": seeds,
        "summary": summarize(seeds),
    }


def summarize(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-metric means over seeds and the goals, met only when met for every seed."""
    metrics = ("perplexity", "loss", "token_accuracy", "distinct_1", "distinct_2", "bland_share", "avg_reply_length")
    means = {
        side: {name: statistics.fmean(run[side]["test"][name] for run in seeds) for name in (*metrics, "bleu")}
        for side in SIDES
    }
    ratios = [run["time_to_quality_ratio"] for run in seeds]
    return {
        "test_means": means,
        "goals": {
            "test_perplexity_at_most_0.7x": all(run["test_perplexity_ratio"] <= 0.7 for run in seeds),
            "higher_distinct_2": all(
                run["default"]["test"]["distinct_2"] > run["tutorial"]["test"]["distinct_2"] for run in seeds
            ),
            "lower_bland_share": all(
                run["default"]["test"]["bland_share"] < run["tutorial"]["test"]["bland_share"] for run in seeds
            ),
            "time_to_quality_at_most_one_fifth": all(ratio is not None and ratio <= 0.2 for ratio in ratios),
        },
        "test_perplexity_ratios": [round(run["test_perplexity_ratio"], 3) for run in seeds],
        "time_to_quality_ratios": [None if ratio is None else round(ratio, 3) for ratio in ratios],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.budget_s, args.eval_steps = min(args.budget_s, 2.0), 2
    if args.merge:
        bc.emit_json(merge_results(args.merge), args.output)
        return 0
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as work_dir:
        dataset_dirs = side_datasets(args, work_dir)
        test_split = same_test_split(dataset_dirs)
        train_pairs = {side: len(evaluation.load_split(path, "train")) for side, path in dataset_dirs.items()}
        seeds = [run_seed(args, dataset_dirs, test_split, seed) for seed in args.seeds]
    result = {
        "machine": bc.machine_record(),
        "protocol": {
            "budget_s": args.budget_s,
            "clock": "CPU seconds of the training steps (evaluation left out), one torch thread",
            "eval_steps": args.eval_steps,
            "patience": args.patience,
            "seeds": args.seeds,
            "recipes": recipes(args),
            "train_pairs": train_pairs,
            "kept": "the weights of each run's best validation NLL",
            "test_pairs": len(test_split),
            "quick": args.quick,
        },
        "seeds": seeds,
        "summary": summarize(seeds),
    }
    bc.emit_json(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
