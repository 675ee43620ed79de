"""Shared helpers for the train.py tests: a tiny synthetic Cornell corpus and the flags of a tiny, fast run."""

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
SEPARATOR = " +++$+++ "
SENTENCES = [
    "Hello?",
    "Hello.",
    "Where am I?",
    "You're in a hospital.",
    "Who are you?",
    "I'm a lawyer.",
    "How are you doing?",
    "I'm fine.",
    "Are you my friend?",
    "No.",
    "Where are you from?",
    "San Francisco.",
    "I know.",
    "Goodbye.",
]

# A model small enough that a few steps take well under a second on one CPU core.
TINY_MODEL_FLAGS = ["--hidden_size", "16", "--encoder_layers", "2", "--decoder_layers", "2"]


def write_tiny_corpus(directory: Path, conversations: int = 60, seed: int = 0) -> Path:
    """Writes movie_lines.txt and movie_conversations.txt in the corpus's format (ISO-8859-1, ` +++$+++ ` fields)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    lines, convs, line_id = [], [], 0
    for conversation in range(conversations):
        ids = []
        for turn in range(4):
            line_id += 1
            speaker = f"u{2 * conversation + turn % 2}"
            lines.append(SEPARATOR.join([f"L{line_id}", speaker, "m0", "NAME", rng.choice(SENTENCES)]))
            ids.append(f"L{line_id}")
        convs.append(SEPARATOR.join([f"u{2 * conversation}", f"u{2 * conversation + 1}", "m0", str(ids)]))
    (directory / "movie_lines.txt").write_text("\n".join(reversed(lines)) + "\n", encoding="iso-8859-1")
    (directory / "movie_conversations.txt").write_text("\n".join(convs) + "\n", encoding="iso-8859-1")
    return directory


def tiny_run_flags(dataset_dir: Path, output_dir: Path, max_steps: int = 4, **overrides: object) -> list[str]:
    """Flags of a tiny training run: hidden size 16, batch 8, eval and save every 2 steps, no progress bar."""
    flags = {
        "dataset_dir": dataset_dir,
        "output_dir": output_dir,
        "max_steps": max_steps,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "save_steps": 2,
        "eval_steps": 2,
        "logging_steps": 1,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        **overrides,
    }
    argv = [f"--{key}={value}" for key, value in flags.items() if value is not None]
    return argv + TINY_MODEL_FLAGS


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a training subprocess: one thread per process (the CI machine has 2 cores)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra}


def run_python(
    args: list[str], timeout: float = 240, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Runs `python ARGS` from the repository root and captures its output.

    On timeout the command and every process it started are killed: torchrun's workers must not outlive the test.
    """
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env or subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # torchrun starts its workers in sessions of their own: kill them by ancestry, then the group.
        for child in psutil.Process(process.pid).children(recursive=True):
            child.kill()
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        raise AssertionError(f"timed out after {timeout} s: {args}\n{stdout}\n{stderr}") from None
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)
