"""Helpers shared by bench_quality.py and ablation_recipes.py: train a recipe under a wall-clock budget, in process.

Both scripts train through train.py's own pieces (`parse_args` with a recipe file and flags, `build_model`,
`LuongGruTrainer`) and add one callback, `BudgetCallback`: a training clock that leaves evaluation out, the history of
every evaluation on that clock, the best evaluation's weights kept in memory, and a stop at the budget (or after
`patience` evaluations without a better validation NLL).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from typing import Any

import bench_common  # noqa: F401  (puts the repository root on sys.path)
import torch
from transformers import TrainerCallback, set_seed

from luong_chatbot import training

RECIPES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")


class BudgetCallback(TrainerCallback):
    """Stops training when its clock reaches `budget_s`, records each evaluation and keeps the best weights.

    The clock is the process's CPU time (`time.process_time`), not wall time: on a machine shared with other jobs,
    wall time depends on their load, while the CPU time a recipe needs does not. It counts training steps only: the
    time from a step's end to the next step's start (evaluation, logging) is left out, so that evaluating often to see
    the curve costs neither side any budget. Run with one torch thread, the clock equals wall time on an idle core.

    Args:
        budget_s (`float`): training CPU seconds before the run stops (after one last evaluation).
        patience (`int`, *optional*, defaults to 0): stop after this many evaluations without a better NLL (0: never).
    """

    def __init__(self, budget_s: float, patience: int = 0):
        self.budget_s = budget_s
        self.patience = patience
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best: dict[str, float] | None = None
        self._start = self._step_end = 0.0
        self._excluded = 0.0

    def clock(self, now: float | None = None) -> float:
        return (time.process_time() if now is None else now) - self._start - self._excluded

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = self._step_end = time.process_time()

    def on_step_begin(self, args, state, control, **kwargs):
        self._excluded += time.process_time() - self._step_end  # what ran since the last step: evaluation, logging

    def on_step_end(self, args, state, control, **kwargs):
        self._step_end = time.process_time()
        if self.clock(self._step_end) >= self.budget_s:
            control.should_training_stop = True
            control.should_evaluate = True  # the last point of the curve

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        train_s = round(self.clock(self._step_end), 2)
        point = {"step": state.global_step, "train_s": train_s, "nll": metrics["eval_nll"]}
        self.history.append(point)
        if self.best is None or point["nll"] < self.best["nll"]:
            self.best = point
            self.best_state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        elif self.patience and sum(1 for p in self.history if p["step"] > self.best["step"]) >= self.patience:
            control.should_training_stop = True


def train_with_budget(
    recipe_argv: list[str], dataset_dir: str, budget_s: float, eval_steps: int, patience: int = 0
) -> tuple[Any, Any, BudgetCallback, dict[str, Any]]:
    """Trains `recipe_argv` (a recipe file, then flags) on `dataset_dir`; returns the best model, tokenizer, callback.

    Checkpoints are not written (the best weights stay in memory: the same model that `load_best_model_at_end` would
    load), evaluation runs every `eval_steps` steps, and the recipe's own early stopping is replaced by `patience`.
    """
    with tempfile.TemporaryDirectory(prefix="quality-bench-") as output_dir:
        flags = {
            "dataset_dir": dataset_dir,
            "output_dir": output_dir,
            "eval_strategy": "steps",
            "eval_steps": eval_steps,
            "save_strategy": "no",
            "load_best_model_at_end": False,
            "early_stopping_patience": 0,
            "logging_steps": max(eval_steps, 10),
            "disable_tqdm": True,
            "report_to": "none",
            "dataloader_num_workers": 0,
        }
        argv = recipe_argv[:1] + [f"--{key}={value}" for key, value in flags.items()] + recipe_argv[1:]
        data_args, model_args, args = training.parse_args(argv)
        train_dataset, eval_dataset, tokenizer = training.load_data(dataset_dir)
        set_seed(args.seed)
        model = training.build_model(model_args, tokenizer, training.trains_on_unknown_words(dataset_dir))
        budget = BudgetCallback(budget_s, patience)
        trainer = training.build_trainer(model, args, train_dataset, eval_dataset, tokenizer, [budget])
        started = time.perf_counter()
        trainer.train()
        wall_s = time.perf_counter() - started
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.load_state_dict(budget.best_state)
    run = {
        "recipe_argv": recipe_argv,
        "steps": trainer.state.global_step,
        "train_s": round(budget.clock(budget._step_end), 2),
        "wall_s": round(wall_s, 2),
        "steps_per_s": round(trainer.state.global_step / max(budget.clock(budget._step_end), 1e-9), 3),
        "best": budget.best,
        "history": budget.history,
        "parameters": model.num_parameters(),
        "generation_config": copy.deepcopy(model.generation_config.to_diff_dict()),
    }
    return model.eval(), tokenizer, budget, run


def recipe_path(name: str) -> str:
    """`tutorial` -> recipes/tutorial.yaml; a path is kept as it is."""
    return name if name.endswith(training.RECIPE_SUFFIXES) else os.path.join(RECIPES_DIR, f"{name}.yaml")


def recipe_filters(recipe_argv: list[str]) -> dict[str, Any]:
    """The pair filters a recipe's data arguments ask for, as `build_dataset` keywords."""
    data_args, _, _ = training.parse_args(recipe_argv[:1] + ["--output_dir", tempfile.gettempdir()] + recipe_argv[1:])
    names = ("max_length", "min_count", "train_max_length", "train_max_unknown")
    return {name: getattr(data_args, name) for name in names}


def ensure_dataset(
    dataset_dir: str | None, corpus_dir: str | None, work_dir: str, filters: dict[str, Any] | None = None
) -> str:
    """A built dataset: `dataset_dir` as given, or one built from `corpus_dir` into `work_dir` with `filters`.

    Builds with the same filters are shared; each other set of filters gets its own folder.
    """
    if dataset_dir:
        return dataset_dir
    if not corpus_dir:
        raise SystemExit("error: give --dataset-dir, --corpus-dir or set CORNELL_SAMPLE_DIR")
    from data_scripts.build_dataset import build_dataset

    filters = filters or {}
    name = "-".join(f"{key}={value}" for key, value in sorted(filters.items()) if value is not None)
    built = os.path.join(work_dir, f"data-{name}" if name else "data")
    if not os.path.isfile(os.path.join(built, "stats.json")):
        build_dataset(corpus_dir, built, **filters)
    return built


def write_json(results: dict[str, Any], path: str) -> None:
    """Writes `results` to `path` through a temporary file and a rename, so a reader never sees half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".tmp", delete=False, encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    os.replace(handle.name, path)
