"""Tests of chat.py on a tiny untrained model saved into tmp_path: scripted chat, notices, flags and errors."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from luong_chatbot import chat, inference

REPO_ROOT = Path(__file__).resolve().parents[1]
# Normalized words of the tutorial's prompts, plus a few replies: the tiny model's whole vocabulary.
WORDS = "hello ? where am i who are you how doing my friend re under arrest m just kidding from it s time for me"
WORDS += " to leave goodbye . ! no san francisco know sorry"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A save_pretrained folder holding an untrained hidden-size-8 model and its word-level tokenizer."""
    import torch

    from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration, LuongGruTokenizer

    torch.manual_seed(0)
    tokenizer = LuongGruTokenizer.from_words(sorted(set(WORDS.split())))
    config = LuongGruConfig(vocab_size=len(tokenizer), hidden_size=8, encoder_layers=1, decoder_layers=1)
    directory = tmp_path_factory.mktemp("tiny-chat-model")
    LuongGruForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def run_main(monkeypatch, capsys, argv: list[str], stdin: str) -> tuple[int, str, str]:
    """Runs chat.main in-process with piped (non-tty) stdin; returns the exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        code = chat.main(argv)
    except SystemExit as exit_:  # argparse rejects bad flags by exiting
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def bot_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("Bot:")]


def test_tutorial_prompts():
    assert len(inference.TUTORIAL_PROMPTS) == 10
    assert inference.TUTORIAL_PROMPTS[1] == "where am I?" and inference.TUTORIAL_PROMPTS[-1] == "goodbye"


def test_generate_replies_one_string_per_prompt(tiny_model_dir):
    model, tokenizer = inference.load_model_and_tokenizer(str(tiny_model_dir))
    replies = inference.generate_replies(model, tokenizer, inference.TUTORIAL_PROMPTS)
    assert len(replies) == 10 and all(isinstance(reply, str) for reply in replies)
    # An untrained model may say anything, but never a special token nor more than max_new_tokens words.
    assert all("<" not in reply and len(reply.split()) <= inference.DEFAULT_MAX_NEW_TOKENS for reply in replies)
    beams = inference.generate_replies(model, tokenizer, ["hello?"], num_beams=3, no_repeat_ngram_size=2)
    assert len(beams) == 1
    assert inference.generate_replies(model, tokenizer, []) == []


def test_unknown_words_are_normalized_and_listed_once(tiny_model_dir):
    _, tokenizer = inference.load_model_and_tokenizer(str(tiny_model_dir))
    assert inference.unknown_words(tokenizer, "Where am I?") == []
    assert inference.unknown_words(tokenizer, "Hello Zorg, zorg and Blarp!") == ["zorg", "and", "blarp"]


def test_scripted_chat_replies_once_per_line_and_stops_at_quit(tiny_model_dir, monkeypatch, capsys):
    stdin = "hello?\n\n   \nwhere am I?\nhello zorg\nquit\nwho are you?\n"
    code, out, err = run_main(monkeypatch, capsys, [str(tiny_model_dir)], stdin)
    assert code == 0
    # Empty lines are skipped, nothing after quit is read, and no `> ` prompt is printed when stdin is a pipe.
    assert len(bot_lines(out)) == 3 and out.count("\n") == 3
    assert "> " not in out
    assert "unknown" in err and "zorg" in err and err.count("zorg") == 1


def test_eof_and_q_end_the_chat(tiny_model_dir, monkeypatch, capsys):
    assert len(bot_lines(run_main(monkeypatch, capsys, [str(tiny_model_dir)], "hello\ngoodbye")[1])) == 2
    assert bot_lines(run_main(monkeypatch, capsys, [str(tiny_model_dir)], "q\nhello\n")[1]) == []


def test_long_input_is_truncated_with_a_notice(tiny_model_dir, monkeypatch, capsys):
    long_query = " ".join(["hello"] * 25)
    code, out, err = run_main(monkeypatch, capsys, [str(tiny_model_dir)], long_query + "\n")
    assert code == 0 and len(bot_lines(out)) == 1
    assert "at most 9 words" in err


def test_decoding_flags_reach_generate(tiny_model_dir, monkeypatch, capsys):
    sampled = []
    for _ in range(2):
        argv = [str(tiny_model_dir), "--do-sample", "--top-k", "5", "--top-p", "0.9", "--temperature", "2"]
        argv += ["--seed", "3"]
        code, out, _ = run_main(monkeypatch, capsys, argv, "hello\nwhere am i\n")
        assert code == 0
        sampled.append(out)
    assert sampled[0] == sampled[1]  # --seed makes sampling reproducible
    argv = [str(tiny_model_dir), "--num-beams", "4", "--no-repeat-ngram-size", "2", "--length-penalty", "0.5"]
    argv += ["--min-new-tokens", "3", "--max-new-tokens", "5"]
    code, out, _ = run_main(monkeypatch, capsys, argv, "hello\n")
    assert code == 0
    (line,) = bot_lines(out)
    assert len(line.split()) - 1 <= 5  # special tokens an untrained model emits are dropped, so no lower bound


def test_bad_decoding_flag_is_one_line_and_exit_2(tiny_model_dir, monkeypatch, capsys):
    for flags in (["--num-beams", "0"], ["--top-p", "1.5"], ["--temperature", "0"], ["--max-new-tokens", "x"]):
        code, out, err = run_main(monkeypatch, capsys, [str(tiny_model_dir), *flags], "hello\n")
        assert code == 2 and out == ""
        assert err.startswith(f"error: argument {flags[0]}") and err.count("\n") == 1


@pytest.mark.parametrize("make_path", ["missing", "file", "empty_dir"])
def test_missing_or_bad_model_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, make_path):
    path = tmp_path / make_path
    if make_path == "file":
        path.write_text("not a model")
    elif make_path == "empty_dir":
        path.mkdir()
    code, out, err = run_main(monkeypatch, capsys, [str(path)], "hello\n")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and str(path) in err and err.count("\n") == 1


def test_mistyped_folder_that_looks_like_a_hub_id_fails_without_the_network(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)  # `runs/typo` has the Hub's `user/name` form, but `runs/` is a local folder
    code, out, err = run_main(monkeypatch, capsys, ["runs/typo"], "hello\n")
    assert code == 2 and out == ""
    assert err == "error: runs/typo: no such model folder\n"


def test_quantized_model_still_replies(tiny_model_dir, monkeypatch, capsys):
    code, out, _ = run_main(monkeypatch, capsys, [str(tiny_model_dir), "--quantize"], "hello?\ngoodbye\n")
    assert code == 0 and len(bot_lines(out)) == 2


@pytest.mark.slow
def test_chat_subprocess_with_piped_stdin(tiny_model_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, "chat.py", str(tiny_model_dir)],
        input="hello?\n\nyou're under arrest, blarp\nquit\nhello\n",
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert len(bot_lines(result.stdout)) == 2 and result.stdout.count("\n") == 2
    assert "blarp" in result.stderr and "Traceback" not in result.stderr
    missing_model = str(tiny_model_dir / "nope")
    missing = subprocess.run(
        [sys.executable, "chat.py", missing_model], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
