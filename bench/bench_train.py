"""Training throughput: our training step against the tutorial's loop, same size, same batches, same weights.

    python bench/bench_train.py                 # tutorial config on the sample corpus ($CORNELL_SAMPLE_DIR)
    python bench/bench_train.py --quick         # tiny model, a few seconds, no corpus needed

Every side trains the tutorial configuration (hidden 500, 2+2 GRU layers, dot attention, batch 64 drawn with
replacement, Adam at 1e-4 with the decoder at 5x, clipping at 50, teacher forcing on) from the same initial weights
on the same batches, iterations interleaved so that machine load hits them alike:
- `tutorial`: `bench/tutorial_reference.py`'s step, one decoder call per target position with `-log(softmax)`;
- `ours`: what `train.py`'s `LuongGruTrainer.compute_loss` runs (one teacher-forced pass through the model, `lm_head`
  and cross-entropy only on the real target tokens, the decoder GRU packed by `decoder_attention_mask` so that it
  skips padding), then backward, clipping and train.py's fused Adam step;
- `ours_bf16_autocast`: the same under CPU bf16 autocast, what `train.py --bf16` runs on a CPU;
- `ours_one_pass_only`: an ablation, one-pass teacher forcing alone: the decoder GRU also runs over the padding and
  Adam is the unfused (foreach) one.

Prints JSON: median ms per iteration and target tokens/s, the speedups (median of per-iteration ratios), the share
of the machine's measured fp32 matmul FLOP/s that the useful (non-pad) FLOPs reach, the mean loss of the last repeat
(the variants must agree) and where each step's time goes.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import tempfile
import time
from types import SimpleNamespace
from typing import Any

import bench_common as bc  # also puts the repository root on sys.path
import torch
import tutorial_reference as tr

from luong_chatbot.training import LuongGruTrainer, LuongGruTrainingArguments
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


def train_py_optimizer(model, workdir: str) -> torch.optim.Optimizer:
    """The optimizer `LuongGruTrainer.create_optimizer` builds with train.py's default arguments."""
    args = LuongGruTrainingArguments(output_dir=workdir, report_to="none")
    return LuongGruTrainer.create_optimizer(SimpleNamespace(optimizer=None, model=model, args=args))


def our_step(
    model,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    bf16: bool = False,
    unpacked: bool = False,
    clip: float = 50.0,
) -> float:
    """One training step as train.py takes it: the Trainer's teacher-forced NLL, backward, global clip, Adam.

    With `bf16`, the forward and the loss run under CPU autocast, as `train.py --bf16` does on a CPU through
    accelerate. With `unpacked`, the decoder GRU also runs over the padding.
    """
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        # (N,) over the real target tokens
        token_nll = LuongGruTrainer._teacher_forced_nll(model, **batch, skip_decoder_padding=not unpacked)
    loss = token_nll.sum() / token_nll.numel()
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


def stage_scopes_ours(model, optimizer) -> list[tuple[Any, str, str]]:
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = {"hidden_size": args.hidden_size, "encoder_layers": args.layers, "decoder_layers": args.layers}
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as workdir:
        pairs, vocab_size = load_pairs(args, workdir)
        model = LuongGruForConditionalGeneration(LuongGruConfig(vocab_size=vocab_size, **sizes)).train()
        tutorial = bc.tutorial_from_model(model)  # the same initial weights
        optimizer = train_py_optimizer(model, workdir)
        # The same start for every variant of our step; the ablation swaps train.py's fused Adam for the foreach one.
        copies = {name: copy.deepcopy(model) for name in ("bf16", "one_pass_only")}
        optimizers = {name: train_py_optimizer(copy_, workdir) for name, copy_ in copies.items()}
    groups = [{"params": group["params"], "lr": group["lr"]} for group in optimizers["one_pass_only"].param_groups]
    optimizers["one_pass_only"] = torch.optim.Adam(groups, foreach=True)
    tutorial_optimizers = tutorial.optimizers()
    rng = random.Random(0)
    # The tutorial's sampling: each batch drawn with replacement; both sides get the very same batches.
    drawn = [[rng.choice(pairs) for _ in range(args.batch_size)] for _ in range(args.iterations)]
    batches = [(our_batch(batch), tr.make_batch(batch), batch) for batch in drawn]
    steps = {
        "tutorial": lambda b: tr.train_step(tutorial, tutorial_optimizers, b[1]),
        "ours": lambda b: our_step(model, optimizer, b[0]),
        "ours_bf16_autocast": lambda b: our_step(copies["bf16"], optimizers["bf16"], b[0], bf16=True),
        "ours_one_pass_only": lambda b: our_step(
            copies["one_pass_only"], optimizers["one_pass_only"], b[0], unpacked=True
        ),
    }
    for step in steps.values():  # warm-up: allocator, thread pool, Adam state
        step(batches[0])
    times = {name: [] for name in steps}  # ms of every iteration, in the order run
    losses = {name: [] for name in steps}  # all sides train on the same batches: their losses should agree
    for _ in range(args.repeats):
        for batch in batches:
            for name, step in steps.items():
                start = time.perf_counter()
                losses[name].append(step(batch))
                times[name].append(1000 * (time.perf_counter() - start))
    ms = {name: bc.median(values) for name, values in times.items()}
    # Each iteration of ours ran right next to the tutorial's on the same batch: the median of these paired ratios
    # holds up when other jobs load the shared machine for a while.
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
    peak = bc.matmul_flops(512 if args.quick else 2048)
    profiled = batches[: min(3, len(batches))]
    return {
        "benchmark": "training step, tutorial configuration, sample corpus",
        "machine": bc.machine_info(),
        "config": {**sizes, "vocab_size": vocab_size, "batch_size": args.batch_size, "attention": "dot"},
        "iterations_per_repeat": args.iterations,
        "repeats": args.repeats,
        "median_ms_per_iteration": {name: round(value, 2) for name, value in ms.items()},
        "mean_ms_per_repeat": {name: [round(v, 2) for v in values] for name, values in per_repeat.items()},
        "target_tokens_per_iteration": tokens,
        "mean_loss_last_repeat": {name: round(bc.mean(v[-len(batches) :]), 4) for name, v in losses.items()},
        "target_tokens_per_s": {name: round(1000 * tokens / value, 1) for name, value in ms.items()},
        "speedup_vs_tutorial (median of paired per-iteration ratios)": {k: round(v, 3) for k, v in paired.items()},
        "goal_at_least_1_5x_fp32": paired["ours"] >= 1.5,
        "matmul_gflops_measured": round(peak / 1e9, 1),
        "useful_gflop_per_iteration": round(flops / 1e9, 3),
        "useful_share_of_matmul_peak": {name: round(flops / (value / 1000) / peak, 3) for name, value in ms.items()},
        "where_time_goes_ms_per_iteration": {
            name: scaled_stages(
                bc.stage_times(lambda name=name: [steps[name](b) for b in profiled], scopes, len(profiled)), ms[name]
            )
            for name, scopes in (
                ("tutorial", stage_scopes_tutorial(tutorial, tutorial_optimizers)),
                ("ours", stage_scopes_ours(model, optimizer)),
                ("ours_bf16_autocast", stage_scopes_ours(copies["bf16"], optimizers["bf16"])),
                ("ours_one_pass_only", stage_scopes_ours(copies["one_pass_only"], optimizers["one_pass_only"])),
            )
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
    parser.add_argument("--output", help="Also write the JSON to this file.")
    parser.add_argument("--quick", action="store_true", help="Tiny model, few iterations: checks the script runs.")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.hidden_size, args.layers, args.iterations, args.repeats = 8, 16, 2, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    bc.emit_json(run(args), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
