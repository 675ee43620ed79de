"""Resume after SIGKILL: a run killed after a checkpoint and resumed ends exactly where an uninterrupted run ends."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import REPO_ROOT, run_python, subprocess_env, tiny_run_flags, write_tiny_corpus

from data_scripts.build_dataset import build_dataset

# train.main in a process that stalls right after saving checkpoint-4, so that the test can SIGKILL it there.
STALL_AFTER_CHECKPOINT_4 = """
import sys, time
from luong_chatbot import training as train
from transformers import TrainerCallback

class Stall(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 4:
            print("stalling", flush=True)
            time.sleep(600)

class StallingTrainer(train.LuongGruTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(Stall())

train.LuongGruTrainer = StallingTrainer
sys.exit(train.main(sys.argv[1:]))
"""


def logged(run_dir: Path, key: str) -> list[tuple[int, float]]:
    state = json.loads((run_dir / "checkpoint-8" / "trainer_state.json").read_text())
    return [(entry["step"], entry[key]) for entry in state["log_history"] if key in entry]


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    dataset = tmp_path / "dataset"
    build_dataset(write_tiny_corpus(tmp_path / "corpus"), dataset)
    # Dropout and a teacher-forcing ratio of 0.5 make the run depend on every RNG that resuming must restore.
    flags = {"max_steps": 8, "save_steps": 4, "eval_steps": 4, "teacher_forcing_ratio": 0.5, "dropout": 0.2}
    reference_dir, resumed_dir = tmp_path / "reference", tmp_path / "resumed"
    with open(tmp_path / "reference.log", "w") as reference_log, open(tmp_path / "killed.log", "w") as killed_log:
        reference = subprocess.Popen(
            [sys.executable, "train.py", *tiny_run_flags(dataset, reference_dir, **flags)],
            cwd=REPO_ROOT,
            env=subprocess_env(),
            stdout=reference_log,
            stderr=subprocess.STDOUT,
        )
        killed = subprocess.Popen(
            [sys.executable, "-c", STALL_AFTER_CHECKPOINT_4, *tiny_run_flags(dataset, resumed_dir, **flags)],
            cwd=REPO_ROOT,
            env=subprocess_env(),
            stdout=killed_log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 240
        while "stalling" not in (tmp_path / "killed.log").read_text():
            assert killed.poll() is None, (tmp_path / "killed.log").read_text()
            assert time.monotonic() < deadline, "the run never reached checkpoint-4"
            time.sleep(0.2)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert reference.wait(timeout=240) == 0, (tmp_path / "reference.log").read_text()

    assert not (resumed_dir / "checkpoint-8").exists() and not (resumed_dir / "config.json").exists()
    half_written = resumed_dir / "checkpoint-6"  # as if a later save had been cut off: resuming must skip it
    half_written.mkdir()
    (half_written / "config.json").write_text("{}")
    (half_written / "model.safetensors").write_bytes(b"\0" * 10)

    resumed = run_python(["train.py", *tiny_run_flags(dataset, resumed_dir, **flags), "--resume_from_checkpoint=True"])
    assert resumed.returncode == 0, resumed.stderr
    assert f"Skipping {half_written}" in resumed.stderr

    final_reference, final_resumed = (
        load_file(reference_dir / "model.safetensors"),
        load_file(resumed_dir / "model.safetensors"),
    )
    assert final_reference.keys() == final_resumed.keys()
    for name, tensor in final_reference.items():
        torch.testing.assert_close(
            final_resumed[name], tensor, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}"
        )
    for key in ("loss", "grad_norm", "eval_nll"):
        reference_values, resumed_values = logged(reference_dir, key), logged(resumed_dir, key)
        assert [step for step, _ in resumed_values] == [step for step, _ in reference_values]
        assert [value for _, value in resumed_values] == pytest.approx(
            [value for _, value in reference_values], rel=1e-5
        )
    assert len(logged(resumed_dir, "loss")) == 8
