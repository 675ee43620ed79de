"""The benchmark scripts run end to end in --quick mode (tiny model, no corpus) and print the promised JSON.

No timing is asserted: the CI machine is shared. The tutorial re-implementation is checked for the behaviour the
benchmarks rely on.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))

import bench_quality  # noqa: E402
import compare_decoding  # noqa: E402
import tutorial_reference as tr  # noqa: E402


def run_bench(script: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, f"bench/{script}", "--quick", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_tutorial_greedy_decoder_always_runs_max_length_steps():
    torch.manual_seed(0)
    model = tr.TutorialSeq2Seq(vocab_size=12, hidden_size=8, encoder_layers=1, decoder_layers=1).eval()
    assert len(tr.greedy_decode(model, [5, 6, tr.EOS_ID])) == tr.MAX_LENGTH
    assert tr.reply_text([5, tr.EOS_ID, 6, tr.PAD_ID], {5: "hello", 6: "there"}) == "hello there"


def test_tutorial_train_step_lowers_the_loss_on_a_repeated_batch():
    torch.manual_seed(0)
    model = tr.TutorialSeq2Seq(vocab_size=12, hidden_size=16, encoder_layers=2, decoder_layers=2, dropout=0.0)
    optimizers = model.optimizers(learning_rate=1e-2)
    batch = tr.make_batch([([4, 5, 2], [6, 2]), ([7, 2], [8, 9, 10, 2]), ([4, 4, 4, 2], [11, 2])])
    assert batch["input_seq"].shape == (4, 3) and batch["lengths"].tolist() == [4, 3, 2]
    assert batch["mask"].sum() == 8 and batch["max_target_len"] == 4
    losses = [tr.train_step(model, optimizers, batch) for _ in range(20)]
    assert losses[-1] < losses[0]


def test_tutorial_attention_rejects_unknown_methods():
    with pytest.raises(ValueError, match="unknown attention method"):
        tr.TutorialAttention("cosine", 8)


@pytest.mark.slow
def decoding_result(distinct_2: float, bland_share: float, bleu: float, do_sample: bool = False) -> dict:
    return {
        "generate_kwargs": {"do_sample": do_sample},
        "distinct_2": distinct_2,
        "bland_share": bland_share,
        "bleu": bleu,
    }


def test_decoding_rule_takes_the_least_bland_candidate_as_diverse_as_greedy():
    results = {
        "greedy": decoding_result(0.10, 0.50, 1.0),
        "least bland but less diverse": decoding_result(0.05, 0.10, 3.0),
        "chosen": decoding_result(0.12, 0.20, 2.0),
        "as bland, lower BLEU": decoding_result(0.15, 0.20, 1.5),
        "sampling, not better on every count": decoding_result(0.30, 0.05, 1.0, do_sample=True),
    }
    assert compare_decoding.choose(results) == "chosen"
    results["sampling, better on every count"] = decoding_result(0.30, 0.05, 2.5, do_sample=True)
    assert compare_decoding.choose(results) == "sampling, better on every count"


def test_bench_train_quick():
    result = run_bench("bench_train.py")
    variants = {"tutorial", "train_py", "forward_labels_adam", "train_py_bf16_autocast", "nn_gru_ablation"}
    assert set(result["median_ms_per_iteration"]) >= variants | {"full_head_ablation"}
    assert result["speedup_vs_tutorial (median of paired per-iteration ratios)"]["train_py"] > 0
    assert result["target_tokens_per_iteration"] > 0
    assert result["useful_share_of_matmul_peak"]["train_py"] > 0
    stages = result["where_time_goes_ms_per_iteration"]["train_py"]
    assert set(stages) == {"encoder", "decoder_gru", "attention", "head_loss", "optimizer", "other"}


@pytest.mark.slow
def test_bench_chat_quick():
    result = run_bench("bench_chat.py")
    medians = result["median_ms_per_reply"]
    assert set(medians) == {
        "generate_greedy",
        "generate_beam5_ngram3",
        "lean_greedy",
        "generate_greedy_int8",
        "tutorial_greedy",
        "onnx_generate_greedy",
        "onnx_generate_greedy_int8",
        "onnx_numpy_greedy",
        "onnx_numpy_greedy_int8",
    }
    assert result["ratio_to_tutorial"]["tutorial_greedy"] == 1.0
    assert len(result["replies"]["generate_greedy"]) == 10
    # Same weights, same search: ONNX Runtime's replies are generate()'s.
    identical = result["onnx_replies_identical_to_generate"]
    assert identical["onnx_generate_greedy"] == identical["onnx_numpy_greedy"] == 10
    assert identical["onnx_generate_beam5_ngram3"] == 10
    assert all(value > 0 for value in result["replies_per_second_at_batch_32"].values())
    assert set(result["where_time_goes_ms_per_reply"]["onnx_numpy_greedy"]) == {
        "encoder",
        "decoder_step",
        "python_overhead",
    }
    assert 0 <= result["int8_quantization"]["replies_identical_to_fp32"] <= 10


def _quality_result(seed: int, default_perplexity: float) -> dict:
    metrics = dict.fromkeys(("loss", "token_accuracy", "distinct_1", "avg_reply_length", "bleu"), 1.0)
    test = {
        "tutorial": {**metrics, "perplexity": 40.0, "distinct_2": 0.1, "bland_share": 0.5},
        "default": {**metrics, "perplexity": default_perplexity, "distinct_2": 0.2, "bland_share": 0.4},
    }
    run = {side: {"test": test[side]} for side in test}
    run.update(seed=seed, test_perplexity_ratio=default_perplexity / 40.0, time_to_quality_ratio=0.1)
    return {"machine": {"cpu": seed}, "protocol": {"budget_s": 9.0, "seeds": [seed]}, "seeds": [run]}


def test_bench_quality_merges_seeds_run_apart(tmp_path):
    paths = []
    for seed, perplexity in ((0, 20.0), (1, 36.0)):
        paths.append(tmp_path / f"seed{seed}.json")
        paths[-1].write_text(json.dumps(_quality_result(seed, perplexity)))
    merged = bench_quality.merge_results([str(path) for path in paths])
    assert merged["protocol"]["seeds"] == [0, 1] and [run["seed"] for run in merged["seeds"]] == [0, 1]
    assert merged["summary"]["test_perplexity_ratios"] == [0.5, 0.9]
    assert merged["summary"]["test_means"]["default"]["perplexity"] == 28.0
    goals = merged["summary"]["goals"]
    assert not goals["test_perplexity_at_most_0.7x"] and goals["higher_distinct_2"] and goals["lower_bland_share"]
    other = _quality_result(2, 30.0)
    other["protocol"]["budget_s"] = 1.0
    paths[1].write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="different protocols"):
        bench_quality.merge_results([str(path) for path in paths])
