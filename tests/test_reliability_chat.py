"""chat.py and model loading against hostile input: any bytes, huge lines, closed or full streams, Ctrl-C, no network,
mismatched or truncated files and folders carrying code or pickles."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import REPO_ROOT, subprocess_env

from luong_chatbot import chat, inference

WORDS = "hello ? where am i who are you how doing my friend re under arrest m just kidding from it s time for me"
WORDS += " to leave goodbye . ! no san francisco know sorry cafe au lait"
SENTINEL_CODE = "import pathlib; pathlib.Path(__file__).with_name('RAN').write_text('the folder ran its code')\n"


def save_tiny_model(directory: Path, words: str = WORDS) -> Path:
    import torch

    from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration, LuongGruTokenizer

    torch.manual_seed(0)
    tokenizer = LuongGruTokenizer.from_words(sorted(set(words.split())))
    config = LuongGruConfig(vocab_size=len(tokenizer), hidden_size=8, encoder_layers=1, decoder_layers=1)
    LuongGruForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


def copy_model(tiny_model: Path, target: Path) -> Path:
    shutil.copytree(tiny_model, target)
    return target


def chat_process(model: Path | str, stdin: bytes = b"", shell_redirect: str = "", **env: str):
    """Runs `python chat.py MODEL` with `stdin`; `shell_redirect` (e.g. `<&-`) goes through bash."""
    command = [sys.executable, "chat.py", str(model)]
    environment = subprocess_env(HF_HUB_OFFLINE="1", **env)
    if shell_redirect:
        command = ["bash", "-c", " ".join(f"'{part}'" for part in command) + " " + shell_redirect]
    return subprocess.run(command, cwd=REPO_ROOT, env=environment, input=stdin, capture_output=True, timeout=120)


def assert_one_line_error(result, *expected: str) -> None:
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("error: ") and "Traceback" not in stderr, stderr
    for text in expected:
        assert text in stderr, stderr


# --- item 2: any bytes get a reply -----------------------------------------------------------------------------------
def test_decode_line_reads_utf8_then_latin1():
    assert chat.decode_line("café".encode()) == "café"
    assert chat.decode_line(b"caf\xe9 au lait") == "café au lait"  # the corpus's own ISO-8859-1
    assert chat.decode_line("café".encode()[:-1], cut=True) == "caf"  # a UTF-8 character cut in two is dropped


def hostile_lines(count: int = 150, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    kinds = [
        lambda: b"caf\xe9 au lait",
        lambda: "naïve café – ok".encode(),
        lambda: bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 40))).replace(b"\n", b" "),
        lambda: b"\xff\xfe\x00h\x00i",
        lambda: b"\xed\xa0\x80 lone surrogate",
        lambda: b"hello?\r",
        lambda: "😀 emoji 你好".encode(),
        lambda: b"\x1b[31mred\x1b[0m",
    ]
    lines = [kinds[index % len(kinds)]() for index in range(count)]
    # A blank line, or one reading as a quit command, would rightly get no reply: keep one reply per line.
    return [line if line.strip() and line.strip().lower() not in (b"q", b"quit") else b"x" for line in lines]


def test_every_hostile_line_gets_a_reply(tiny_model):
    lines = hostile_lines()
    result = chat_process(tiny_model, b"\n".join(lines) + b"\n")
    assert result.returncode == 0, result.stderr.decode()
    assert "Traceback" not in result.stderr.decode()
    replies = [line for line in result.stdout.decode().splitlines() if line.startswith("Bot:")]
    assert len(replies) == len(lines) == 150


def test_a_latin1_line_in_process_is_read_as_latin1(tiny_model, monkeypatch, capsys):
    class BytesStdin:
        def __init__(self, data: bytes):
            import io

            self.buffer = io.BytesIO(data)

        def isatty(self):
            return False

    monkeypatch.setattr(sys, "stdin", BytesStdin(b"caf\xe9 au lait\nhello\n"))
    assert chat.main([str(tiny_model)]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("Bot:") == 2
    assert "unknown" not in captured.err  # "café" normalizes to "cafe", a known word


# --- item 8: a huge line is cut before it is normalized --------------------------------------------------------------
def test_a_huge_line_is_cut_before_normalizing(tiny_model):
    huge = b"hello where are you " * 2_500_000  # 50 MB on one line
    started = time.monotonic()
    result = chat_process(tiny_model, huge + b"\ngoodbye\n")
    elapsed = time.monotonic() - started
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert result.stdout.decode().count("Bot:") == 2
    assert f"longer than {chat.MAX_LINE_BYTES} bytes: only its start is read" in stderr
    assert elapsed < 60, elapsed  # it took 5 min 50 s and 7 GB before


# --- item 9: streams and signals -------------------------------------------------------------------------------------
def test_closed_stdin_and_stdout_are_one_line(tiny_model):
    assert_one_line_error(chat_process(tiny_model, shell_redirect="<&-"), "stdin is closed")
    result = chat_process(tiny_model, b"hello\n", shell_redirect=">&-")
    assert result.returncode == 2 and b"stdout is closed" in result.stderr and b"Traceback" not in result.stderr


def test_a_full_stdout_is_one_line(tiny_model):
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [sys.executable, "chat.py", str(tiny_model)],
            cwd=REPO_ROOT,
            env=subprocess_env(HF_HUB_OFFLINE="1"),
            input=b"hello\n" * 3,
            stdout=full,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    assert_one_line_error(result, "cannot write the replies to stdout (No space left on device)")


def start_chat(model_dir) -> subprocess.Popen:
    """`chat.py model_dir` with every stream a pipe, offline."""
    return subprocess.Popen(
        [sys.executable, "chat.py", str(model_dir)],
        cwd=REPO_ROOT,
        env=subprocess_env(HF_HUB_OFFLINE="1"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_reader_that_goes_away_ends_the_chat_quietly(tiny_model):
    process = start_chat(tiny_model)
    process.stdin.write(b"hello\n" * 2000)
    process.stdin.close()
    assert process.stdout.readline().startswith(b"Bot:")  # `| head -1`
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    stderr = process.stderr.read().decode()
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr and "Exception ignored" not in stderr


def test_ctrl_c_ends_without_a_traceback(tiny_model):
    process = start_chat(tiny_model)
    process.stdin.write(b"where are you from ?\n" * 50)  # stdin stays open: it waits for more after these
    process.stdin.flush()
    assert process.stdout.readline().startswith(b"Bot:")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode in (0, 130), stderr.decode()
    assert b"Traceback" not in stderr and b"KeyboardInterrupt" not in stderr


def test_ctrl_c_during_a_reply_ends_without_a_traceback(tiny_model, monkeypatch, capsys):
    real = chat.reply_with_notices
    calls = []

    def interrupted_on_the_second_reply(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C while the second reply is being generated
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(chat, "reply_with_notices", interrupted_on_the_second_reply)
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("hello\nwho are you ?\ngoodbye\n"))
    assert chat.main([str(tiny_model)]) == 130
    assert capsys.readouterr().out.count("Bot:") == 1


# --- item 9: the Hub without a network -------------------------------------------------------------------------------
def test_a_hub_id_offline_fails_at_once(tmp_path):
    started = time.monotonic()
    result = chat_process("someone/some-chatbot", HF_HOME=str(tmp_path / "hf"))
    assert_one_line_error(result, "someone/some-chatbot: no such local folder, and not in the Hugging Face cache")
    assert "HF_HUB_OFFLINE is set" in result.stderr.decode()
    assert time.monotonic() - started < 60


def test_an_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    started = time.monotonic()
    with pytest.raises(inference.ModelLoadError) as caught:
        inference.load_model_and_tokenizer("someone/some-chatbot")
    assert time.monotonic() - started < inference.HUB_PROBE_TIMEOUT_S + 5
    message = str(caught.value)
    assert "\n" not in message
    assert "no such local folder, and the Hub http://127.0.0.1:9 cannot be reached" in message


# --- item 7: loading safety ------------------------------------------------------------------------------------------
def test_a_tokenizer_of_another_vocabulary_is_refused(tiny_model, tmp_path):
    from modeling_seq2seq import LuongGruTokenizer

    folder = copy_model(tiny_model, tmp_path / "model")
    LuongGruTokenizer.from_words(["just", "three", "words"]).save_pretrained(folder)
    with pytest.raises(inference.ModelLoadError, match="the tokenizer has 7 tokens but the model's vocab_size is"):
        inference.load_model_and_tokenizer(str(folder))


def test_truncated_weights_are_one_line(tiny_model, tmp_path):
    folder = copy_model(tiny_model, tmp_path / "model")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert_one_line_error(chat_process(folder, b"hello\n"), "model.safetensors: truncated or damaged")
    weights.write_bytes(b"\x05")  # not even a header
    with pytest.raises(inference.ModelLoadError, match="truncated or damaged"):
        inference.load_model_and_tokenizer(str(folder))


def test_a_model_folders_code_never_runs_without_the_flag(tiny_model, tmp_path, monkeypatch, capsys):
    folder = copy_model(tiny_model, tmp_path / "model")
    assert "auto_map" in json.loads((folder / "config.json").read_text())  # the folder does carry code
    for code_file in folder.glob("*.py"):
        code_file.write_text(SENTINEL_CODE + code_file.read_text())
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("hello\n"))
    assert chat.main([str(folder)]) == 0
    assert capsys.readouterr().out.count("Bot:") == 1
    assert not (folder / "RAN").exists()


def test_only_luong_gru_and_only_safetensors(tiny_model, tmp_path):
    import torch

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    bart = copy_model(tiny_model, tmp_path / "bart")
    config = json.loads((bart / "config.json").read_text())
    (bart / "config.json").write_text(json.dumps({**config, "model_type": "bart", "auto_map": {}}))
    (bart / "model.safetensors").unlink()
    torch.save({"weights": Planted()}, bart / "pytorch_model.bin")
    assert_one_line_error(chat_process(bart, b"hello\n"), "expected model_type 'luong_gru', found 'bart'")
    pickled = copy_model(tiny_model, tmp_path / "pickled")
    (pickled / "model.safetensors").unlink()
    shutil.copy(bart / "pytorch_model.bin", pickled / "pytorch_model.bin")
    assert_one_line_error(chat_process(pickled, b"hello\n"), "no model.safetensors; only safetensors weights")
    assert not (tmp_path / "PWNED").exists()


def test_trust_remote_code_is_the_users_choice(tiny_model, monkeypatch, capsys):
    calls = []
    real = inference.AutoModelForSeq2SeqLM.from_pretrained

    def spy(*args, **kwargs):
        calls.append(kwargs["trust_remote_code"])
        return real(*args, **kwargs)

    monkeypatch.setattr(inference.AutoModelForSeq2SeqLM, "from_pretrained", spy)
    for flags, expected in (([], False), (["--trust-remote-code"], True)):
        monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("hello\n"))
        assert chat.main([str(tiny_model), *flags]) == 0
        assert calls[-1] is expected
    capsys.readouterr()
