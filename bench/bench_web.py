"""Reply latency through the web page: `app.py` in a subprocess, `gradio_client` sending the tutorial's ten prompts.

    python bench/bench_web.py --model runs/chatbot --output bench/results/bench_web.json
    python bench/bench_web.py --quick               # tiny untrained model, one repeat: checks the script runs

Prints JSON: the median milliseconds per reply over prompts x repeats of
- `page`: one `/chat` call through the page's event (HTTP, Gradio's queue, the server's `reply_with_notices`);
- `direct`: the same `reply_with_notices` call in this process, timed right after each page call (paired);
plus the median of the paired differences (what the page adds to a reply) and of the paired ratios. Greedy
decoding, an empty history each time, the server's default concurrency limit, no other client.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

import bench_common as bc  # also puts the repository root on sys.path
import torch

from luong_chatbot.inference import TUTORIAL_PROMPTS, load_model_and_tokenizer, reply_with_notices

PAGE_GREEDY = ("greedy", 5, 0, 1.0, 1.0)  # the page's decoding controls: mode, beams, n-gram block, temperature, top-p


@contextlib.contextmanager
def serve(model: str, timeout: float = 300):
    """Runs `python app.py MODEL` on a free 127.0.0.1 port until the page answers; yields its URL, then stops it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(bc.REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "app.py", model, "--port", str(port)],
        cwd=bc.REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"error: the app did not start (exit code {process.poll()})")
            with contextlib.suppress(urllib.error.URLError, ConnectionError):
                if urllib.request.urlopen(url, timeout=5).status == 200:
                    break
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def quick_model(directory: str) -> str:
    """Saves an untrained hidden-size-16 model and the quick tokenizer into `directory`."""
    from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration

    tokenizer = bc.quick_tokenizer()
    torch.manual_seed(0)
    config = LuongGruConfig(vocab_size=len(tokenizer), hidden_size=16, encoder_layers=1, decoder_layers=1)
    LuongGruForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def milliseconds(seconds: float) -> float:
    return round(1000 * seconds, 2)


def run(args: argparse.Namespace, model_path: str) -> dict[str, Any]:
    from gradio_client import Client

    model, tokenizer = load_model_and_tokenizer(model_path)
    page, direct = [], []
    with serve(model_path) as url:
        client = Client(url, verbose=False)
        for prompt in TUTORIAL_PROMPTS:  # warm-up: the queue's worker threads, the allocator
            client.predict(prompt, [], *PAGE_GREEDY, api_name="/chat")
            reply_with_notices(model, tokenizer, prompt)
        for _ in range(args.repeats):
            for prompt in TUTORIAL_PROMPTS:
                page.append(bc.time_call(lambda p=prompt: client.predict(p, [], *PAGE_GREEDY, api_name="/chat")))
                direct.append(bc.time_call(lambda p=prompt: reply_with_notices(model, tokenizer, p)))
    return {
        "benchmark": "web chat latency, ms per reply to the tutorial's ten prompts through the page (gradio_client)",
        "machine": bc.machine_record(),
        "model": "quick (untrained, hidden size 16)" if args.quick else args.model,
        "config": {key: getattr(model.config, key) for key in ("vocab_size", "hidden_size", "encoder_layers")},
        "repeats": args.repeats,
        "replies_timed": len(page),
        "median_ms_per_reply": {"page": milliseconds(bc.median(page)), "direct": milliseconds(bc.median(direct))},
        "median_page_overhead_ms": milliseconds(bc.median([p - d for p, d in zip(page, direct, strict=True)])),
        "median_ratio_page_to_direct": round(bc.median([p / d for p, d in zip(page, direct, strict=True)]), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="A trained model folder or Hub id.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed passes over the ten prompts.")
    parser.add_argument("--output", help="Also write the JSON to this file.")
    parser.add_argument("--quick", action="store_true", help="Tiny untrained model, one repeat.")
    args = parser.parse_args(argv)
    if not args.quick and not args.model:
        parser.error("give --model (or --quick)")
    if args.quick:
        args.repeats = 1
    with tempfile.TemporaryDirectory() as workdir:
        bc.emit_json(run(args, quick_model(workdir) if args.quick else args.model), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
