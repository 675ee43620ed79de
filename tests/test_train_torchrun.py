"""`torchrun --nproc_per_node 2 train.py` on CPU (gloo) trains like one process with the same global batch."""

import json
from pathlib import Path

import pytest
from train_helpers import run_python, tiny_run_flags, write_tiny_corpus
from transformers import AutoModelForSeq2SeqLM

import modeling_seq2seq  # noqa: F401  (registers luong_gru with the Auto classes)
from data_scripts.build_dataset import build_dataset


def log_history(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_the_same_global_batch(tmp_path):
    dataset = tmp_path / "dataset"
    build_dataset(write_tiny_corpus(tmp_path / "corpus"), dataset)
    # No dropout: the only difference left between the runs is how the batch is split and the gradients summed.
    flags = {"max_steps": 4, "save_steps": 4, "eval_steps": 2, "dropout": 0.0}
    single = run_python(
        ["train.py", *tiny_run_flags(dataset, tmp_path / "single", per_device_train_batch_size=8, **flags)]
    )
    assert single.returncode == 0, single.stderr
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train.py"]
    ddp = run_python([*torchrun, *tiny_run_flags(dataset, tmp_path / "ddp", per_device_train_batch_size=4, **flags)])
    assert ddp.returncode == 0, ddp.stderr

    single_logs, ddp_logs = log_history(tmp_path / "single"), log_history(tmp_path / "ddp")
    for key in ("loss", "grad_norm", "eval_nll"):
        expected = [(entry["step"], entry[key]) for entry in single_logs if key in entry]
        found = [(entry["step"], entry[key]) for entry in ddp_logs if key in entry]
        assert [step for step, _ in found] == [step for step, _ in expected] and expected
        assert [value for _, value in found] == pytest.approx([value for _, value in expected], rel=1e-4), key
    card = (tmp_path / "ddp" / "README.md").read_text()
    assert "| batch size (per device x processes x accumulation) | 4 x 2 x 1 = 8 |" in card
    assert ddp.stdout.count("Validation perplexity") == 1  # the final save and the summary come from rank 0 only
    AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ddp")
