"""Training throughput: train.py's step and the model's plain forward(labels=...) against the tutorial's loop.

    python bench/bench_train.py                 # tutorial config on the sample corpus ($CORNELL_SAMPLE_DIR)
    python bench/bench_train.py --quick         # tiny model, a few seconds, no corpus needed
    python bench/bench_train.py --device cuda   # the same variants on a GPU (bf16 there is CUDA autocast)

Every side trains the tutorial configuration (hidden 500, 2+2 GRU layers, dot attention, batch 64 drawn with
replacement, Adam at 1e-4 with the decoder at 5x, clipping at 50, teacher forcing on) from the same initial weights
on the same batches, iterations interleaved so that machine load hits them alike:
- `tutorial`: `bench/tutorial_reference.py`'s step, one decoder call per target position with `-log(softmax)`;
- `train_py`: what train.py's `LuongGruTrainer` runs: its `compute_loss` (the model's forward with labels), backward,
  clipping and train.py's fused Adam step;
- `forward_labels_adam`: the plain path of any loop: `model(**batch).loss.backward()`, clipping, `torch.optim.Adam`;
- `train_py_bf16_autocast`: train.py's step under bf16 autocast, what `train.py --bf16` runs (on a CPU it is fast
  only with native bf16: see `machine.cpu_native_bf16`);
- `nn_gru_ablation`: train.py's step with `nn.GRU` in place of the model's `PackedGru` (same weights);
- `full_head_ablation`: train.py's step with the decoder mask given, so that `lm_head` and the loss also run on the
  padded target positions (the decoder GRU still skips them).

Prints JSON: median ms per iteration and target tokens/s, the speedups (median of per-iteration ratios to the
tutorial), the share of the machine's measured fp32 matmul FLOP/s that the useful (non-pad) FLOPs reach, the mean
loss of the last repeat (the variants must agree) and where each step's time goes (CPU only).
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import tempfile
import time
from typing import Any

import bench_common as bc  # also puts the repository root on sys.path
import torch
import tutorial_reference as tr

from luong_chatbot.training import LuongGruTrainer, LuongGruTrainingArguments, cpu_has_native_bf16
from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration

Pair = tuple[list[int], list[int]]


def load_pairs(args: argparse.Namespace, workdir: str) -> tuple[list[Pair], int]:
    """The training (query ids, response ids) pairs and the vocabulary size."""
    loaded = None if args.quick else bc.load_dataset_dir(args.dataset_dir, args.corpus_dir, workdir)
    if loaded is None:
        if not args.quick:
            raise SystemExit("error: give --dataset-dir or --corpus-dir, or set CORNELL_SAMPLE_DIR")
        tokenizer = bc.quick_tokenizer()
        from luong_chatbot.inference import TUTORIAL_PROMPTS

        ids = [tokenizer(prompt)["input_ids"] for prompt in TUTORIAL_PROMPTS]
        return list(zip(ids, ids[1:] + ids[:1], strict=True)), len(tokenizer)
    splits, tokenizer = loaded
    return list(zip(splits["train"]["input_ids"], splits["train"]["labels"], strict=True)), len(tokenizer)


def our_batch(pairs: list[Pair], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """What the training collator gives the model: right-padded ids and mask (B, S), -100-padded labels (B, T)."""
    pad = torch.nn.utils.rnn.pad_sequence
    input_ids = pad([torch.tensor(query) for query, _ in pairs], batch_first=True, padding_value=pad_token_id)
    return {
        "input_ids": input_ids,
        "attention_mask": input_ids.ne(pad_token_id).long(),
        "labels": pad([torch.tensor(response) for _, response in pairs], batch_first=True, padding_value=-100),
    }


def make_trainer(model, workdir: str, device: str) -> LuongGruTrainer:
    """A `LuongGruTrainer` with train.py's default arguments: its `compute_loss` and `create_optimizer` are timed."""
    args = LuongGruTrainingArguments(output_dir=workdir, report_to="none", eval_strategy="no", use_cpu=device == "cpu")
    return LuongGruTrainer(model=model, args=args)


def with_nn_gru(model):
    """A copy of the model whose GRUs are plain `nn.GRU`s holding the same weights (the ablation)."""
    ablation = copy.deepcopy(model)
    for module in (ablation.model.encoder, ablation.model.decoder):
        gru = module.gru
        plain = torch.nn.GRU(
            gru.input_size, gru.hidden_size, gru.num_layers, True, True, gru.dropout, gru.bidirectional
        ).to(next(gru.parameters()).device)  # bias, batch_first
        plain.load_state_dict(gru.state_dict())
        module.gru = plain
    return ablation


def train_step(
    model,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    trainer: LuongGruTrainer | None = None,
    bf16: bool = False,
    clip: float = 50.0,
) -> float:
    """One step: the loss (train.py's `compute_loss` with `trainer`, else `model(**batch).loss`), backward, clip, Adam.

    With `bf16`, the forward and the loss run under bf16 autocast, as `train.py --bf16` does through accelerate.
    """
    device_type = batch["labels"].device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        loss = trainer.compute_loss(model, batch) if trainer is not None else model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def useful_flops(pairs: list[Pair], hidden: int, vocab: int, encoder_layers: int, decoder_layers: int) -> float:
    """Matmul FLOPs of one training step over the real (non-pad) tokens only: 3x the forward (forward + backward).

    A GRU layer costs 2 * 3H * (input + H) per token and direction; the encoder's first layer reads H, the next ones
    2H (both directions). Per target token the decoder adds its GRU layers, dot attention over the query's S tokens
    (scores and context, 4 * S * H), the concat layer (2 * 2H * H) and the output layer (2 * H * V).
    """
    h = hidden
    encoder_per_token = 2 * (6 * h * (h + h) + (encoder_layers - 1) * 6 * h * (2 * h + h))
    decoder_per_token = decoder_layers * 6 * h * (h + h) + 4 * h * h + 2 * h * vocab
    forward = sum(
        len(query) * encoder_per_token + len(response) * (decoder_per_token + 4 * len(query) * h)
        for query, response in pairs
    )
    return 3.0 * forward


def stage_scopes_model(model, optimizer) -> list[tuple[Any, str, str]]:
    decoder = model.model.decoder
    return [
        (model.model.encoder, "forward", "encoder"),
        (decoder.gru, "forward", "decoder_gru"),
        (decoder.attention, "forward", "attention"),
        (decoder.concat, "forward", "attention"),
        (model.lm_head, "forward", "head_loss"),
        (torch.nn.functional, "cross_entropy", "head_loss"),
        (torch.nn.utils, "clip_grad_norm_", "optimizer"),
        (optimizer, "step", "optimizer"),
        (optimizer, "zero_grad", "optimizer"),
    ]


def stage_scopes_tutorial(tutorial, optimizers) -> list[tuple[Any, str, str]]:
    scopes = [
        (tutorial.encoder, "forward", "encoder"),
        (tutorial.decoder.gru, "forward", "decoder_gru"),
        (tutorial.decoder, "attend", "attention"),
        (tutorial.decoder, "predict", "head_loss"),
        (tr, "masked_nll", "head_loss"),
        (torch.nn.utils, "clip_grad_norm_", "optimizer"),
    ]
    return scopes + [(opt, name, "optimizer") for opt in optimizers for name in ("step", "zero_grad")]


def build_variants(args: argparse.Namespace, pairs: list[Pair], vocab_size: int, workdir: str) -> dict[str, Any]:
    """Every variant's model, optimizer and step function, all from the same initial weights."""
    sizes = {"hidden_size": args.hidden_size, "encoder_layers": args.layers, "decoder_layers": args.layers}
    torch.manual_seed(0)
    model = LuongGruForConditionalGeneration(LuongGruConfig(vocab_size=vocab_size, **sizes)).to(args.device).train()
    tutorial = bc.tutorial_from_model(model).to(args.device)
    trainer = make_trainer(model, workdir, args.device)
    models = {
        "train_py": model,
        "forward_labels_adam": copy.deepcopy(model),
        "train_py_bf16_autocast": copy.deepcopy(model),
        "nn_gru_ablation": with_nn_gru(model),
        "full_head_ablation": copy.deepcopy(model),
    }
    optimizers = {name: make_trainer(m, workdir, args.device).create_optimizer() for name, m in models.items()}
    # The plain loop's optimizer: torch.optim.Adam with its defaults (foreach), same groups and learning rates.
    groups = [{"params": g["params"], "lr": g["lr"]} for g in optimizers["forward_labels_adam"].param_groups]
    optimizers["forward_labels_adam"] = torch.optim.Adam(groups)
    tutorial_optimizers = tutorial.optimizers()

    def model_step(name: str, through_trainer: bool = True, bf16: bool = False, full_head: bool = False):
        def step(batches: tuple) -> float:
            batch = batches[0]
            if full_head:  # a decoder mask given: the model then computes lm_head on every position
                batch = {**batch, "decoder_attention_mask": batch["labels"].ne(-100)}
            return train_step(models[name], optimizers[name], batch, trainer if through_trainer else None, bf16)

        return step

    steps = {
        "tutorial": lambda b: tr.train_step(tutorial, tutorial_optimizers, b[1]),
        "train_py": model_step("train_py"),
        "forward_labels_adam": model_step("forward_labels_adam", through_trainer=False),
        "train_py_bf16_autocast": model_step("train_py_bf16_autocast", bf16=True),
        "nn_gru_ablation": model_step("nn_gru_ablation"),
        "full_head_ablation": model_step("full_head_ablation", full_head=True),
    }
    scopes = {"tutorial": stage_scopes_tutorial(tutorial, tutorial_optimizers)}
    scopes.update({name: stage_scopes_model(m, optimizers[name]) for name, m in models.items()})
    return {"sizes": sizes, "steps": steps, "scopes": scopes}


def time_interleaved(args: argparse.Namespace, steps: dict[str, Any], batches: list) -> tuple[dict, dict]:
    """Milliseconds and losses of every iteration of every variant, the variants taking turns on each batch."""
    synchronize = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    for step in steps.values():  # warm-up: allocator, thread pool, Adam state
        step(batches[0])
    times = {name: [] for name in steps}  # ms of every iteration, in the order run
    losses = {name: [] for name in steps}  # all sides train on the same batches: their losses should agree
    for _ in range(args.repeats):
        for batch in batches:
            for name, step in steps.items():
                synchronize()
                start = time.perf_counter()
                losses[name].append(step(batch))
                synchronize()
                times[name].append(1000 * (time.perf_counter() - start))
    return times, losses


def matmul_flops(device: str, size: int) -> float:
    """The device's measured fp32 matmul FLOP/s (bench_common's CPU measurement; on CUDA the same, synchronized)."""
    if device == "cpu":
        return bc.matmul_flops(size)
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    torch.mm(a, b)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        torch.mm(a, b)
    torch.cuda.synchronize()
    return 10 * 2 * size**3 / (time.perf_counter() - start)


def to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    """The batch's tensors on `device`; the tutorial's `lengths` stay on the CPU, where packing reads them."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) and k != "lengths" else v for k, v in batch.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        pairs, vocab_size = load_pairs(args, workdir)
        variants = build_variants(args, pairs, vocab_size, workdir)
    steps = variants["steps"]
    rng = random.Random(0)
    # The tutorial's sampling: each batch drawn with replacement; both sides get the very same batches.
    drawn = [[rng.choice(pairs) for _ in range(args.batch_size)] for _ in range(args.iterations)]
    batches = [(to_device(our_batch(b), args.device), to_device(tr.make_batch(b), args.device), b) for b in drawn]
    times, losses = time_interleaved(args, steps, batches)
    ms = {name: bc.median(values) for name, values in times.items()}
    # Each iteration of every variant ran right next to the tutorial's on the same batch: the median of these paired
    # ratios holds up when other jobs load the shared machine for a while.
    paired = {
        name: bc.median([slow / fast for slow, fast in zip(times["tutorial"], values, strict=True)])
        for name, values in times.items()
    }
    per_repeat = {
        name: [bc.mean(values[i : i + len(batches)]) for i in range(0, len(values), len(batches))]
        for name, values in times.items()
    }
    tokens = sum(len(response) for _, _, batch in batches for _, response in batch) / len(batches)
    flops = bc.median([useful_flops(b, args.hidden_size, vocab_size, args.layers, args.layers) for *_, b in batches])
    peak = matmul_flops(args.device, 512 if args.quick else 2048)
    profiled = batches[: min(3, len(batches))]
    machine = {**bc.machine_info(), "device": args.device, "cpu_native_bf16": cpu_has_native_bf16()}
    if args.device == "cuda":
        machine["gpu"] = torch.cuda.get_device_name()
    return {
        "benchmark": "training step, tutorial configuration, sample corpus",
        "machine": machine,
        "config": {**variants["sizes"], "vocab_size": vocab_size, "batch_size": args.batch_size, "attention": "dot"},
        "iterations_per_repeat": args.iterations,
        "repeats": args.repeats,
        "median_ms_per_iteration": {name: round(value, 2) for name, value in ms.items()},
        "mean_ms_per_repeat": {name: [round(v, 2) for v in values] for name, values in per_repeat.items()},
        "target_tokens_per_iteration": tokens,
        "mean_loss_last_repeat": {name: round(bc.mean(v[-len(batches) :]), 4) for name, v in losses.items()},
        "target_tokens_per_s": {name: round(1000 * tokens / value, 1) for name, value in ms.items()},
        "speedup_vs_tutorial (median of paired per-iteration ratios)": {k: round(v, 3) for k, v in paired.items()},
        "goal_at_least_80_percent_of_matmul_rate_fp32": {
            name: flops / (ms[name] / 1000) / peak >= 0.8 for name in ("train_py", "forward_labels_adam")
        },
        "matmul_gflops_measured": round(peak / 1e9, 1),
        "useful_gflop_per_iteration": round(flops / 1e9, 3),
        "useful_share_of_matmul_peak": {name: round(flops / (value / 1000) / peak, 3) for name, value in ms.items()},
        # The profiler measures CPU time: on a GPU it would count kernel launches, not the work.
        "where_time_goes_ms_per_iteration": None
        if args.device == "cuda"
        else {
            name: scaled_stages(
                bc.stage_times(lambda name=name: [steps[name](b) for b in profiled], scopes, len(profiled)), ms[name]
            )
            for name, scopes in variants["scopes"].items()
        },
    }


def scaled_stages(stages: dict[str, float], step_ms: float) -> dict[str, float]:
    """Profiled stage times rescaled to the unprofiled median step time (the profiler itself slows every op)."""
    total = sum(stages.values()) or 1.0
    return {stage: round(step_ms * value / total, 1) for stage, value in stages.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset-dir", help="A built dataset folder (default: build from --corpus-dir).")
    parser.add_argument("--corpus-dir", help="The corpus to build it from (default: $CORNELL_SAMPLE_DIR).")
    parser.add_argument("--batch-size", type=int, default=64, help="Tutorial's batch_size.")
    parser.add_argument("--hidden-size", type=int, default=500, help="Tutorial's hidden_size.")
    parser.add_argument("--layers", type=int, default=2, help="Encoder and decoder GRU layers (tutorial: 2 + 2).")
    parser.add_argument("--iterations", type=int, default=10, help="Timed iterations per repeat.")
    parser.add_argument("--repeats", type=int, default=3, help="Repeats; the medians are over these.")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice).")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="Where every variant trains.")
    parser.add_argument("--output", help="Also write the JSON to this file.")
    parser.add_argument("--quick", action="store_true", help="Tiny model, few iterations: checks the script runs.")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.quick:
        args.batch_size, args.hidden_size, args.layers, args.iterations, args.repeats = 8, 16, 2, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    bc.emit_json(run(args), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
