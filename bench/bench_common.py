"""Helpers shared by bench_train.py and bench_chat.py: timing, machine facts and a per-stage CPU-time profiler."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # so `python bench/x.py` finds train.py, chat.py and modeling_seq2seq/

BACKWARD_PREFIX = "autograd::engine::evaluate_function: "


# The instructions that decide the speed of torch's and ONNX Runtime's fp32, bf16 and int8 kernels.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags() -> dict[str, bool]:
    """Which of `CPU_FLAGS` the CPU has (Linux's /proc/cpuinfo; all False where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        flags = []
    return {name: name in flags for name in CPU_FLAGS}


def machine_info() -> dict[str, Any]:
    """CPU model and flags, core count and library versions, so every figure says where it was measured."""
    model_name = platform.processor() or "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                model_name = line.split(":", 1)[1].strip()
    return {
        "cpu": model_name,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cpu_flags": cpu_flags(),
    }


def machine_record() -> dict[str, Any]:
    """`machine_info()` plus the fp32 matmul rate measured now, in GFLOP/s: what every benchmark's JSON records."""
    return {**machine_info(), "matmul_gflops": round(matmul_flops() / 1e9, 1)}


def time_call(function: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def emit_json(result: dict[str, Any], output: str | None) -> None:
    """Prints the result as JSON and, with `output`, also writes it there (via a temporary file, then a rename)."""
    text = json.dumps(result, indent=2)
    if output:
        with open(output + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(output + ".tmp", output)
    print(text)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def matmul_flops(size: int = 2048, repeats: int = 5) -> float:
    """The machine's measured fp32 matmul FLOP/s: median over `repeats` products of two (size, size) matrices."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up: thread pool and allocator
    return 2 * size**3 / median([time_call(lambda: torch.mm(a, b)) for _ in range(repeats)])


@contextlib.contextmanager
def stage_scope(owner: Any, attribute: str, stage: str) -> Iterator[None]:
    """Temporarily run `owner.attribute` (a module's forward, a method or a function) inside a profiler range."""
    original = getattr(owner, attribute)
    was_own = attribute in vars(owner)

    def scoped(*args, **kwargs):
        with record_function(stage):
            return original(*args, **kwargs)

    setattr(owner, attribute, scoped)
    try:
        yield
    finally:
        if was_own:
            setattr(owner, attribute, original)
        else:
            delattr(owner, attribute)


def _first_ancestor(event, names: set[str] | None = None, prefix: str | None = None):
    while event is not None:
        if (names is not None and event.name in names) or (prefix is not None and event.name.startswith(prefix)):
            return event
        event = event.cpu_parent
    return None


def stage_times(step: Callable[[], Any], scopes: list[tuple[Any, str, str]], repeats: int = 1) -> dict[str, float]:
    """Milliseconds of CPU time per stage (forward and backward together) of `step`, averaged over `repeats`.

    Each `(owner, attribute, stage)` of `scopes` runs inside a profiler range named `stage`. A forward op belongs to
    the innermost stage around it; a backward op belongs to the stage of the forward op that recorded it (autograd's
    sequence number links the two). What no stage claims is `other` (embedding lookups, dropout, glue).
    """
    names = {stage for _, _, stage in scopes}
    with contextlib.ExitStack() as stack:
        for owner, attribute, stage in scopes:
            stack.enter_context(stage_scope(owner, attribute, stage))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                step()
    events = prof.events()
    stage_of_sequence = {}
    for event in events:
        if event.sequence_nr >= 0 and not event.name.startswith(BACKWARD_PREFIX):
            scope = _first_ancestor(event, names=names)
            stage_of_sequence.setdefault(event.sequence_nr, scope.name if scope else "other")
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        backward_root = _first_ancestor(event, prefix=BACKWARD_PREFIX)
        if backward_root is not None:
            stage = stage_of_sequence.get(backward_root.sequence_nr, "other")
        else:
            scope = _first_ancestor(event, names=names)
            stage = scope.name if scope else "other"
        totals[stage] += event.self_cpu_time_total / 1000 / repeats
    return {stage: round(totals.get(stage, 0.0), 2) for stage in [*dict.fromkeys(s for _, _, s in scopes), "other"]}


def quick_tokenizer():
    """A word-level tokenizer over the tutorial's prompts and replies, for `--quick` runs that need no corpus."""
    from luong_chatbot.inference import TUTORIAL_PROMPTS
    from modeling_seq2seq import LuongGruTokenizer

    replies = "hello . you re in a hospital i m lawyer fine no trying to help sorry san francisco know goodbye !"
    words = " ".join(TUTORIAL_PROMPTS).lower().replace("?", " ?").replace("'", " ").split() + replies.split()
    return LuongGruTokenizer.from_words(sorted(set(words)))


def load_dataset_dir(dataset_dir: str | None, corpus_dir: str | None, workdir: str):
    """The built dataset (DatasetDict) and tokenizer: from `dataset_dir`, else built from `corpus_dir` into `workdir`.

    Returns `None` when neither is given and `CORNELL_SAMPLE_DIR` is unset.
    """
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    if dataset_dir is None:
        corpus_dir = corpus_dir or os.environ.get("CORNELL_SAMPLE_DIR")
        if not corpus_dir:
            return None
        from data_scripts.build_dataset import build_dataset

        dataset_dir = os.path.join(workdir, "data")
        build_dataset(corpus_dir, dataset_dir)
    return load_from_disk(os.path.join(dataset_dir, "dataset")), AutoTokenizer.from_pretrained(
        os.path.join(dataset_dir, "tokenizer")
    )


def tutorial_from_model(model) -> Any:
    """A `TutorialSeq2Seq` holding the same weights as a `LuongGruForConditionalGeneration` (in the same mode)."""
    from tutorial_reference import TutorialSeq2Seq

    config = model.config
    tutorial = TutorialSeq2Seq(
        config.vocab_size,
        config.hidden_size,
        config.encoder_layers,
        config.decoder_layers,
        config.dropout,
        config.attention_type,
    )
    source = model.state_dict()
    # Our encoder's embedding is the tutorial's shared one; GRU weights do not depend on batch_first.
    renames = {
        "embedding.": "model.encoder.embed_tokens.",
        "encoder.embedding.": "model.encoder.embed_tokens.",
        "decoder.embedding.": "model.encoder.embed_tokens.",
        "encoder.gru.": "model.encoder.gru.",
        "decoder.gru.": "model.decoder.gru.",
        "decoder.concat.": "model.decoder.concat.",
        "decoder.out.": "lm_head.",
        "decoder.attn.": "model.decoder.attention.",
    }
    target = {}
    for name in tutorial.state_dict():
        prefix = next(prefix for prefix in renames if name.startswith(prefix))
        target[name] = source[renames[prefix] + name[len(prefix) :]]
    tutorial.load_state_dict(target)
    return tutorial.train(model.training)
