"""Benchmark of the dataset build against the tutorial's plain-Python data pipeline; prints JSON.

Both run on the sample and on a synthetic corpus ten times the size of the full one (about 3M lines, written by
make_synthetic_corpus.py with fresh IDs). Each measurement is a fresh subprocess, so that its wall time includes
start-up and imports, as a user sees them, and its memory figures are its own:

- `wall_s`: wall-clock seconds; `cpu_s`: user + system CPU seconds of the process and its workers;
- `peak_rss_mb`: the peak resident set of the largest single process (getrusage of the children);
- `peak_pss_mb`: the peak of the summed proportional set size (PSS) over the process tree, sampled every 50 ms:
  the fair figure for a build with worker processes, whose shared pages RSS would count once per worker.

    python bench/bench_data.py [--sample-dir DIR] [--scale 10] [--repeats 3] [--quick]

`--quick` runs the same steps on a few hundred conversations of the sample (the test suite runs it); its timings
mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "bench"))

from make_synthetic_corpus import FULL_CORPUS_LINES, make_corpus  # noqa: E402

COUNT_KEYS = ("pairs_read", "pairs_within_max_length", "words_counted", "words_kept", "pairs_kept")
QUICK_CONVERSATIONS = 300


def _tree_pss(process) -> int:
    """Summed PSS (bytes) of a psutil process and its descendants; RSS where PSS is unavailable."""
    import psutil

    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            info = member.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def measure(command: list[str]) -> dict:
    """Runs `command` (in this process, which must have no other children) and returns its figures."""
    import psutil

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:  # pipes could fill and block
        start = time.perf_counter()
        process = psutil.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=err)
        peak_pss = 0
        while process.poll() is None:
            peak_pss = max(peak_pss, _tree_pss(process))
            time.sleep(0.05)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {stderr.strip()[-2000:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),  # Linux reports KiB
        # A process that ends before the first sample gets its peak RSS instead.
        "peak_pss_mb": round(peak_pss / 2**20) or round(usage.ru_maxrss / 1024),
        "counts": json.loads(stdout.strip().splitlines()[-1]),
    }


def measure_in_subprocess(command: list[str]) -> dict:
    """`measure` in a fresh process, so that getrusage's children figures are this command's alone."""
    runner = [sys.executable, __file__, "_measure", json.dumps(command)]
    result = subprocess.run(runner, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip()[-2000:])
    return json.loads(result.stdout)


def median_run(command: list[str], repeats: int) -> dict:
    """The run with the median wall time among `repeats` runs (its own figures, so that they belong together)."""
    runs = sorted((measure_in_subprocess(command) for _ in range(repeats)), key=lambda run: run["wall_s"])
    return {**runs[(len(runs) - 1) // 2], "all_wall_s": [run["wall_s"] for run in runs]}


def compare(corpus: Path, work: Path, repeats: int) -> dict:
    """Ours and the tutorial's pipeline on one corpus: figures, ratios and whether their counts agree."""
    ours_command = [sys.executable, "-m", "data_scripts.build_dataset", "--corpus-dir", str(corpus)]
    ours = median_run([*ours_command, "--output-dir", str(work / "ours")], repeats)
    tutorial = median_run([sys.executable, "bench/tutorial_data_pipeline.py", str(corpus), str(work)], repeats)
    return {
        "ours": ours,
        "tutorial": tutorial,
        "speedup": round(tutorial["wall_s"] / ours["wall_s"], 2),
        "cpu_ratio": round(tutorial["cpu_s"] / ours["cpu_s"], 2),
        "peak_rss_ratio": round(ours["peak_rss_mb"] / tutorial["peak_rss_mb"], 3),
        "peak_pss_ratio": round(ours["peak_pss_mb"] / tutorial["peak_pss_mb"], 3),
        "counts_match": all(ours["counts"][key] == tutorial["counts"][key] for key in COUNT_KEYS),
    }


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_measure"]:
        print(json.dumps(measure(json.loads(argv[1]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_sample = os.environ.get("CORNELL_SAMPLE_DIR", str(REPO_ROOT.parent / "shared/data/cornell-sample"))
    parser.add_argument("--sample-dir", type=Path, default=Path(default_sample), help="The sample corpus folder.")
    parser.add_argument("--scale", type=float, default=10.0, help="Synthetic corpus size in full corpora (10).")
    parser.add_argument("--repeats", type=int, default=3, help="Runs per measurement; the median one is reported (3).")
    parser.add_argument("--quick", action="store_true", help="A tiny run for the tests; timings mean nothing.")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 1
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        work = Path(tmp)
        sample = args.sample_dir
        if args.quick:
            sample = work / "sample-head"
            make_corpus(args.sample_dir, sample, copies=1, max_conversations=QUICK_CONVERSATIONS)
        sample_lines = (sample / "movie_lines.txt").read_bytes().count(b"\n")
        copies = 2 if args.quick else max(1, round(args.scale * FULL_CORPUS_LINES / sample_lines))
        synthetic = make_corpus(sample, work / "synthetic-corpus", copies)
        report = {"machine": machine(), "quick": args.quick, "synthetic_corpus": synthetic, "results": {}}
        for name, corpus in (("sample", sample), ("synthetic", work / "synthetic-corpus")):
            (work / name).mkdir()
            report["results"][name] = compare(corpus, work / name, args.repeats)
    big = report["results"]["synthetic"]
    report["goal_met"] = {
        "speedup_at_least_3": big["speedup"] >= 3,
        "peak_pss_at_most_half": big["peak_pss_ratio"] <= 0.5,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
