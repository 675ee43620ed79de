"""Chat latency: `generate()` against the tutorial's greedy decoder, same weights, same ten prompts.

    python bench/bench_chat.py                      # untrained tutorial-size model, vocabulary of $CORNELL_SAMPLE_DIR
    python bench/bench_chat.py --model runs/sample  # a trained model
    python bench/bench_chat.py --quick              # tiny model, a few seconds, no corpus needed

Prints JSON: the median milliseconds per reply (over prompts x repeats, variants interleaved) of
- `generate_greedy`: `generate()` greedy, stopping at EOS (at most 10 new tokens);
- `generate_beam5_ngram3`: beam search, 5 beams, `no_repeat_ngram_size=3`;
- `lean_greedy`: the same greedy search as a plain loop over the model's own modules (what `generate()` costs);
- `generate_greedy_int8`: `generate()` greedy on the int8 dynamically quantized model (`chat.py --quantize`);
- `tutorial_greedy`: `bench/tutorial_reference.py`'s greedy decoder, always 10 steps;
- `onnx_generate_greedy` (`_int8`): `generate()` greedy on the model exported by `modeling_seq2seq.export`, run by
  ONNX Runtime (`LuongGruOnnxForConditionalGeneration`), fp32 and int8 files;
- `onnx_numpy_greedy` (`_int8`): the export's torch-free greedy loop (`onnx_greedy.py`: ONNX Runtime and numpy);
plus the ratios to the tutorial, where each one's time goes, replies per second at batch 32, whether the ONNX
replies equal `generate()`'s, and what int8 quantization changes in the replies and the teacher-forced perplexity.
The tutorial's decoder gets our weights but starts from layer 0's two encoder states and attends to padding, as
the tutorial does, so its replies differ from ours: compare its timings, not its words.
An untrained model never says EOS, so every route then runs all 10 steps; `--model` shows what stopping at EOS buys.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from typing import Any

import bench_common as bc  # also puts the repository root on sys.path
import torch
import tutorial_reference as tr

from luong_chatbot.inference import TUTORIAL_PROMPTS, generate_replies, quantize_for_cpu

SERVER_BATCH = 32


def build_model(args: argparse.Namespace, workdir: str):
    """The model, its tokenizer and up to `--eval-pairs` held-out (query ids, response ids) pairs."""
    from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration

    loaded = None if args.quick else bc.load_dataset_dir(args.dataset_dir, args.corpus_dir, workdir)
    if args.model:
        from luong_chatbot.inference import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(args.model)
    else:
        if loaded is None and not args.quick:
            raise SystemExit("error: give --model, --dataset-dir or --corpus-dir, or set CORNELL_SAMPLE_DIR")
        tokenizer = bc.quick_tokenizer() if loaded is None else loaded[1]
        sizes = {"hidden_size": 16, "encoder_layers": 1, "decoder_layers": 1} if args.quick else {}
        torch.manual_seed(0)
        model = LuongGruForConditionalGeneration(LuongGruConfig(vocab_size=len(tokenizer), **sizes)).eval()
    if loaded is None:
        queries = [tokenizer(prompt)["input_ids"] for prompt in TUTORIAL_PROMPTS]
        pairs = list(zip(queries, queries[1:] + queries[:1], strict=True))
    else:
        split = loaded[0]["validation"]
        pairs = list(zip(split["input_ids"], split["labels"], strict=True))[: args.eval_pairs]
    return model, tokenizer, pairs


@torch.inference_mode()
def lean_greedy(model, input_ids: torch.Tensor, max_new_tokens: int = 10) -> list[int]:
    """Greedy search for one query with the model's own modules: encode once, one decoder step a token, stop at EOS."""
    from modeling_seq2seq.modeling_luong_gru import initial_decoder_state

    config = model.config
    encoder_outputs = model.model.encoder(input_ids)
    state = initial_decoder_state(encoder_outputs)  # (L, 1, H)
    token = input_ids.new_full((1, 1), config.decoder_start_token_id)
    reply = []
    for _ in range(max_new_tokens):
        features, state, _ = model.model.decoder(
            token, state, encoder_outputs.last_hidden_state, encoder_outputs.attention_mask
        )
        token = model.lm_head(features[:, -1]).argmax(dim=-1, keepdim=True)  # (1, 1)
        if token.item() == config.eos_token_id:
            break
        reply.append(token.item())
    return reply


@torch.inference_mode()
def perplexity(model, pairs: list[tuple[list[int], list[int]]], pad_token_id: int) -> float:
    """Teacher-forced token perplexity over `pairs`, in one padded batch."""
    pad = torch.nn.utils.rnn.pad_sequence
    input_ids = pad([torch.tensor(query) for query, _ in pairs], batch_first=True, padding_value=pad_token_id)
    labels = pad([torch.tensor(response) for _, response in pairs], batch_first=True, padding_value=-100)
    return float(torch.exp(model(input_ids=input_ids, attention_mask=input_ids.ne(pad_token_id), labels=labels).loss))


def export_to_onnx(model, tokenizer, workdir: str) -> dict[str, Any]:
    """Exports `model` (fp32 and int8 files) and loads each both ways, with torch's thread count for ONNX Runtime."""
    import onnxruntime as ort

    from modeling_seq2seq.export import export_onnx
    from modeling_seq2seq.onnx_greedy import OnnxGreedyChatbot
    from modeling_seq2seq.onnx_luong_gru import LuongGruOnnxForConditionalGeneration

    model.save_pretrained(f"{workdir}/model")
    tokenizer.save_pretrained(f"{workdir}/model")
    export_onnx(f"{workdir}/model", f"{workdir}/onnx", quantize="int8")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    loaded = {}
    for suffix, int8 in (("", False), ("_int8", True)):
        loaded[f"generate{suffix}"] = LuongGruOnnxForConditionalGeneration.from_pretrained(
            f"{workdir}/onnx", int8=int8, session_options=options
        )
        loaded[f"numpy{suffix}"] = OnnxGreedyChatbot(f"{workdir}/onnx", int8=int8, options=options)
    return loaded


def variants(model, quantized, tutorial, tokenizer, onnx: dict[str, Any]) -> dict[str, Any]:
    """One callable per decoding route; each answers one prompt (given as text and as token ids)."""
    return {
        "generate_greedy": lambda text, ids: generate_replies(model, tokenizer, [text]),
        "generate_beam5_ngram3": lambda text, ids: generate_replies(
            model, tokenizer, [text], num_beams=5, no_repeat_ngram_size=3
        ),
        "lean_greedy": lambda text, ids: lean_greedy(model, torch.tensor([ids])),
        "generate_greedy_int8": lambda text, ids: generate_replies(quantized, tokenizer, [text]),
        "tutorial_greedy": lambda text, ids: tr.greedy_decode(tutorial, ids),
        "onnx_generate_greedy": lambda text, ids: generate_replies(onnx["generate"], tokenizer, [text]),
        "onnx_generate_greedy_int8": lambda text, ids: generate_replies(onnx["generate_int8"], tokenizer, [text]),
        "onnx_numpy_greedy": lambda text, ids: onnx["numpy"].replies([text]),
        "onnx_numpy_greedy_int8": lambda text, ids: onnx["numpy_int8"].replies([text]),
    }


def server_throughput(model, quantized, tutorial, tokenizer, onnx, prompts, repeats: int) -> dict[str, float]:
    """Replies per second answering SERVER_BATCH prompts in one call (the tutorial's decoder: one at a time)."""
    texts = [text for text, _ in prompts] * (SERVER_BATCH // len(prompts) + 1)
    texts = texts[:SERVER_BATCH]
    id_lists = [tokenizer(text, truncation=True)["input_ids"] for text in texts]
    routes = {
        "generate_greedy": lambda: generate_replies(model, tokenizer, texts),
        "generate_greedy_int8": lambda: generate_replies(quantized, tokenizer, texts),
        "tutorial_greedy": lambda: [tr.greedy_decode(tutorial, ids) for ids in id_lists],
        "onnx_generate_greedy": lambda: generate_replies(onnx["generate"], tokenizer, texts),
        "onnx_numpy_greedy": lambda: onnx["numpy"].replies(texts),
        "onnx_numpy_greedy_int8": lambda: onnx["numpy_int8"].replies(texts),
    }
    seconds = {name: [] for name in routes}
    for _ in range(repeats + 1):  # the first pass warms up
        for name, route in routes.items():
            seconds[name].append(bc.time_call(route))
    return {name: round(SERVER_BATCH / bc.median(values[1:]), 1) for name, values in seconds.items()}


def onnx_breakdown(onnx: dict[str, Any], tokenizer, prompts, medians: dict[str, float]) -> dict[str, dict]:
    """Milliseconds per reply inside ONNX Runtime's encoder and decoder-step runs; the rest is Python around them."""
    result = {}
    for route, key, call in (
        ("onnx_generate_greedy", "generate", lambda text: generate_replies(onnx["generate"], tokenizer, [text])),
        ("onnx_numpy_greedy", "numpy", lambda text: onnx["numpy"].replies([text])),
    ):
        runtime = onnx[key].runtime if key == "generate" else onnx[key].model
        spent = {"encoder": 0.0, "decoder_step": 0.0}
        for stage, name in (("encoder", "encode"), ("decoder_step", "step")):
            method = getattr(runtime, name)

            def timed(*args, method=method, stage=stage, spent=spent):
                start = time.perf_counter()
                outputs = method(*args)
                spent[stage] += time.perf_counter() - start
                return outputs

            setattr(runtime, name, timed)
        for text, _ in prompts:
            call(text)
        for name in ("encode", "step"):
            delattr(runtime, name)
        stages = {stage: round(1000 * value / len(prompts), 3) for stage, value in spent.items()}
        stages["python_overhead"] = round(max(0.0, medians[route] - sum(stages.values())), 3)
        result[route] = stages
    return result


def time_variants(routes: dict[str, Any], prompts: list[tuple[str, list[int]]], repeats: int) -> dict[str, list]:
    """Milliseconds of every reply, routes interleaved prompt by prompt so that machine load hits them alike."""
    times = {name: [] for name in routes}
    for text, ids in prompts:  # warm-up: first calls allocate and build caches
        for route in routes.values():
            route(text, ids)
    for _ in range(repeats):
        for text, ids in prompts:
            for name, route in routes.items():
                times[name].append(1000 * bc.time_call(lambda route=route, text=text, ids=ids: route(text, ids)))
    return times


def _scopes(model) -> list[tuple[Any, str, str]]:
    decoder = model.model.decoder
    return [
        (model.model.encoder, "forward", "encoder"),
        (decoder.gru, "forward", "decoder_gru"),
        (decoder.attention, "forward", "attention"),
        (decoder.concat, "forward", "attention"),
        (model.lm_head, "forward", "lm_head"),
    ]


def breakdown(model, quantized, tutorial, tokenizer, prompts, medians: dict[str, float]) -> dict[str, dict]:
    """Milliseconds per reply in each stage (profiler CPU time in each module's ops), for the greedy routes.

    What the profiler sees no op for (Python: generate()'s bookkeeping, module calls) is the route's median wall time
    minus the stages, `python_overhead`.
    """
    theirs = [
        (tutorial.encoder, "forward", "encoder"),
        (tutorial.decoder.gru, "forward", "decoder_gru"),
        (tutorial.decoder, "attend", "attention"),
        (tutorial.decoder, "predict", "lm_head"),
    ]
    texts = [text for text, _ in prompts]
    result = {
        "generate_greedy": bc.stage_times(
            lambda: [generate_replies(model, tokenizer, [t]) for t in texts], _scopes(model)
        ),
        "generate_greedy_int8": bc.stage_times(
            lambda: [generate_replies(quantized, tokenizer, [t]) for t in texts], _scopes(quantized)
        ),
        "tutorial_greedy": bc.stage_times(lambda: [tr.greedy_decode(tutorial, ids) for _, ids in prompts], theirs),
    }
    for route, stages in result.items():
        for stage in stages:
            stages[stage] = round(stages[stage] / len(prompts), 3)
        stages["python_overhead"] = round(max(0.0, medians[route] - sum(stages.values())), 3)
    return result


def compare_replies(reference: list[str], others: dict[str, list[str]]) -> dict[str, int]:
    """How many of the ten replies of each route equal `reference` word for word."""
    return {name: sum(a == b for a, b in zip(reference, replies, strict=True)) for name, replies in others.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        model, tokenizer, pairs = build_model(args, workdir)
        onnx = export_to_onnx(model, tokenizer, workdir)
    tutorial = bc.tutorial_from_model(model).eval()
    quantized = quantize_for_cpu(model)
    prompts = [(text, tokenizer(text, truncation=True)["input_ids"]) for text in TUTORIAL_PROMPTS]
    times = time_variants(variants(model, quantized, tutorial, tokenizer, onnx), prompts, args.repeats)
    medians = {name: round(bc.median(values), 3) for name, values in times.items()}
    tutorial_ms = medians["tutorial_greedy"]
    greedy_replies = generate_replies(model, tokenizer, TUTORIAL_PROMPTS)
    int8_replies = generate_replies(quantized, tokenizer, TUTORIAL_PROMPTS)
    onnx_replies = {
        "onnx_generate_greedy": generate_replies(onnx["generate"], tokenizer, TUTORIAL_PROMPTS),
        "onnx_numpy_greedy": onnx["numpy"].replies(TUTORIAL_PROMPTS),
        "onnx_numpy_greedy_int8": onnx["numpy_int8"].replies(TUTORIAL_PROMPTS),
    }
    beam_kwargs = {"num_beams": 5, "no_repeat_ngram_size": 3}
    beam_replies = generate_replies(model, tokenizer, TUTORIAL_PROMPTS, **beam_kwargs)
    onnx_beam_replies = generate_replies(onnx["generate"], tokenizer, TUTORIAL_PROMPTS, **beam_kwargs)
    id_to_word = {index: word for word, index in tokenizer.get_vocab().items()}
    onnx_greedy_ms = min(medians["onnx_generate_greedy"], medians["onnx_numpy_greedy"])
    return {
        "benchmark": "chat latency, ms per reply to the tutorial's ten prompts (batch 1)",
        "machine": bc.machine_record(),
        "model": args.model or ("untrained, quick size" if args.quick else "untrained, tutorial size"),
        "config": {
            k: getattr(model.config, k) for k in ("vocab_size", "hidden_size", "encoder_layers", "decoder_layers")
        },
        "repeats": args.repeats,
        "median_ms_per_reply": medians,
        "ratio_to_tutorial": {name: round(ms / tutorial_ms, 3) for name, ms in medians.items()},
        "goal_greedy_at_most_half_of_tutorial": medians["generate_greedy"] <= 0.5 * tutorial_ms,
        "goal_onnx_fp32_greedy_at_most_half_of_tutorial": onnx_greedy_ms <= 0.5 * tutorial_ms,
        "replies_per_second_at_batch_32": server_throughput(
            model, quantized, tutorial, tokenizer, onnx, prompts, args.repeats
        ),
        "onnx_replies_identical_to_generate": {
            **compare_replies(greedy_replies, onnx_replies),
            "onnx_generate_beam5_ngram3": compare_replies(beam_replies, {"beam": onnx_beam_replies})["beam"],
        },
        "mean_reply_words_greedy": sum(len(reply.split()) for reply in greedy_replies) / len(greedy_replies),
        "where_time_goes_ms_per_reply": {
            **breakdown(model, quantized, tutorial, tokenizer, prompts, medians),
            **onnx_breakdown(onnx, tokenizer, prompts, medians),
        },
        "int8_quantization": {
            "replies_identical_to_fp32": sum(a == b for a, b in zip(greedy_replies, int8_replies, strict=True)),
            "perplexity_fp32": round(perplexity(model, pairs, tokenizer.pad_token_id), 3),
            "perplexity_int8": round(perplexity(quantized, pairs, tokenizer.pad_token_id), 3),
            "perplexity_pairs": len(pairs),
        },
        "replies": {
            "generate_greedy": greedy_replies,
            "generate_greedy_int8": int8_replies,
            **onnx_replies,
            "tutorial_greedy": [tr.reply_text(tr.greedy_decode(tutorial, ids), id_to_word) for _, ids in prompts],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="A trained model folder or Hub id (default: untrained, tutorial size).")
    parser.add_argument("--dataset-dir", help="A built dataset folder: its vocabulary and validation pairs.")
    parser.add_argument("--corpus-dir", help="Build the dataset from this corpus (default: $CORNELL_SAMPLE_DIR).")
    parser.add_argument("--repeats", type=int, default=5, help="Timed passes over the ten prompts.")
    parser.add_argument("--eval-pairs", type=int, default=1000, help="Validation pairs for the int8 perplexity check.")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice).")
    parser.add_argument("--output", help="Also write the JSON to this file.")
    parser.add_argument("--quick", action="store_true", help="Tiny model, one repeat: checks the script runs.")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    bc.emit_json(run(args), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
