"""Tests of the web chat page: the reply function, the Space folder, and the real server via a client and a browser.

The slow tests start `app.py` on a free 127.0.0.1 port in a subprocess with a tiny model trained for a few steps,
talk to it with `gradio_client` and with headless Chromium (Playwright), and compare every reply with what
`python chat.py MODEL` prints for the same input and flags. Nothing leaves the machine: analytics are off, the Hub
is offline (its push runs against an in-process mock), and the browser aborts and reports any non-local request.

    LUONG_WEB_TEST_MODEL=runs/chatbot LUONG_WEB_SCREENSHOT=docs/web-chat.png pytest tests/test_web.py -k browser

runs the browser test on another model and keeps its screenshot (how the README's one is made).
"""

import contextlib
import html
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from hub_helpers import read_commit
from train_helpers import REPO_ROOT, run_python, subprocess_env, tiny_run_flags, write_tiny_corpus

from luong_chatbot import inference, web

# Words of the tutorial's prompts: the untrained model's whole vocabulary.
WORDS = "hello ? where am i who are you how doing my friend re under arrest m just kidding from it s time for me"
WORDS += " to leave goodbye . ! no"
# Hostile single-line inputs (no `\n` or `\r`: chat.py reads one query per line) and what the page must say.
HOSTILE_INPUTS = {
    "long": ("where am i? " * 250)[:3000],
    "control": "hello\x00 there\x07 \x1b[31mred\x7f\x0bfriend",
    "emoji": "hello 😀🤖 are you my friend? 👋",
    "emoji_only": "😀🤖",
    "right_to_left": "\u200fwhere am i?\u202e \u200e",
    "markup": "<script>alert(1)</script> **who** are # you",
    "unknown": "zorg blarp?",
}
BEAM_FLAGS = ["--num-beams", "3", "--no-repeat-ngram-size", "2"]
PAGE_GREEDY = ("greedy", 5, 0, 1.0, 1.0)
PAGE_BEAM = ("beam search", 3, 2, 1.0, 1.0)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An untrained hidden-size-8 model with a model card, as tests/test_chat.py saves one."""
    import torch

    from luong_chatbot.training import render_model_card
    from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration, LuongGruTokenizer

    torch.manual_seed(0)
    tokenizer = LuongGruTokenizer.from_words(sorted(set(WORDS.split())))
    config = LuongGruConfig(vocab_size=len(tokenizer), hidden_size=8, encoder_layers=1, decoder_layers=1)
    directory = tmp_path_factory.mktemp("tiny-web-model")
    LuongGruForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    card = render_model_card(
        model_name="tiny-web",
        repo_id=str(directory),
        eval_metrics={"eval_perplexity": 42.5, "eval_nll": math.log(42.5)},
        conversation=[],
        hyperparameters={},
        training={"steps": 4, "final_training_loss": None, "runtime_s": 1.0, "device": "1 x cpu"},
        dataset_stats={},
    )
    (directory / "README.md").write_text(card, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory) -> Path:
    """A tiny model trained by train.py for 4 steps (card and eval_results.json included), or $LUONG_WEB_TEST_MODEL."""
    if os.environ.get("LUONG_WEB_TEST_MODEL"):
        return Path(os.environ["LUONG_WEB_TEST_MODEL"]).resolve()
    from data_scripts.build_dataset import build_dataset

    root = tmp_path_factory.mktemp("trained-web-model")
    build_dataset(write_tiny_corpus(root / "corpus"), root / "dataset")
    trained = run_python(["train.py", *tiny_run_flags(root / "dataset", root / "model")])
    assert trained.returncode == 0, trained.stderr[-3000:]
    return root / "model"


def web_env(**extra: str) -> dict[str, str]:
    """The servers' environment: no analytics, no Hub, one thread (the CI machine has 2 cores)."""
    return subprocess_env(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8", **extra)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve(args: list[str], cwd: Path = REPO_ROOT, env: dict[str, str] | None = None, timeout: float = 180):
    """Runs `python ARGS --port PORT` (the app) until the page answers; yields its URL, then stops it."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, *args, "--port", str(port)],
            cwd=cwd,
            env=env or web_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise AssertionError(f"the app did not start (exit code {process.poll()}):\n{log.read()}")
                with contextlib.suppress(urllib.error.URLError, ConnectionError):
                    if urllib.request.urlopen(url, timeout=5).status == 200:
                        break
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def server(trained_model):
    with serve(["app.py", str(trained_model)]) as url:
        yield url


def chat_py_replies(model: Path, queries: list[str], flags: tuple[str, ...] | list[str] = ()) -> dict[str, str]:
    """What `python chat.py MODEL FLAGS` replies to each query, fed one per line on stdin."""
    result = subprocess.run(
        [sys.executable, "chat.py", str(model), *flags],
        input="".join(query + "\n" for query in queries),
        cwd=REPO_ROOT,
        env=web_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    replies = [line.removeprefix("Bot: ") for line in result.stdout.splitlines()]
    assert len(replies) == len(queries), result.stdout
    return dict(zip(queries, replies, strict=True))


def message_text(message: dict) -> str:
    """The text of a Chatbot message as the client returns it: a string or a list of `{"type": "text"}` parts."""
    content = message["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


# ---------------------------------------------------------------------------------------------------------------------
# In-process: the reply function, the decoding settings, the model summary.
# ---------------------------------------------------------------------------------------------------------------------
def test_page_replies_are_chat_replies_with_their_notices(tiny_model_dir):
    model, tokenizer = inference.load_model_and_tokenizer(str(tiny_model_dir))
    settings = web.DecodingSettings(*PAGE_GREEDY)
    history = []
    for query in [*inference.TUTORIAL_PROMPTS, *HOSTILE_INPUTS.values()]:
        history, notice = web.respond(model, tokenizer, {}, f"  {query} ", history, settings)
        expected_reply, expected_notices = inference.reply_with_notices(model, tokenizer, query.strip())
        assert history[-2:] == [
            {"role": "user", "content": query.strip()},
            {"role": "assistant", "content": expected_reply},
        ]
        assert notice == "\n\n".join(expected_notices)
    assert len(history) == 2 * (len(inference.TUTORIAL_PROMPTS) + len(HOSTILE_INPUTS))


def test_input_notices_name_what_the_model_cannot_read(tiny_model_dir):
    _, tokenizer = inference.load_model_and_tokenizer(str(tiny_model_dir))
    (long_notice,) = inference.input_notices(tokenizer, HOSTILE_INPUTS["long"])
    assert "at most 9 words" in long_notice
    assert inference.input_notices(tokenizer, HOSTILE_INPUTS["unknown"]) == [
        "Note: unknown words, read as <unk>: zorg, blarp"
    ]
    (none_readable,) = inference.input_notices(tokenizer, HOSTILE_INPUTS["emoji_only"])
    assert "has none of them" in none_readable
    assert inference.input_notices(tokenizer, HOSTILE_INPUTS["right_to_left"]) == []


def test_empty_overlong_or_bad_settings_get_a_message_and_no_reply(tiny_model_dir):
    model, tokenizer = inference.load_model_and_tokenizer(str(tiny_model_dir))
    history = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "no ."}]
    greedy = web.DecodingSettings(*PAGE_GREEDY)
    for empty in ("", "   \t ", None):
        assert web.respond(model, tokenizer, {}, empty, history, greedy) == (history, web.EMPTY_INPUT_MESSAGE)
    overlong, notice = web.respond(model, tokenizer, {}, "a" * (web.MAX_INPUT_CHARS + 1), history, greedy)
    assert overlong == history and f"at most {web.MAX_INPUT_CHARS:,}" in notice
    unknown_mode = web.DecodingSettings("telepathy", 5, 0, 1.0, 1.0)
    unchanged, notice = web.respond(model, tokenizer, {}, "hello", history, unknown_mode)
    assert unchanged == history and notice.startswith("These decoding settings do not work: unknown decoding mode")


def test_decoding_controls_default_to_the_generation_config_and_the_flags(tiny_model_dir):
    model, _ = inference.load_model_and_tokenizer(str(tiny_model_dir))
    config = model.generation_config
    assert web.DecodingSettings.from_generation_config(config, {}) == web.DecodingSettings("greedy", 5, 0, 1.0, 1.0)
    beam = web.DecodingSettings.from_generation_config(config, {"num_beams": 4, "no_repeat_ngram_size": 3})
    assert beam == web.DecodingSettings("beam search", 4, 3, 1.0, 1.0)
    assert beam.generate_kwargs() == {"no_repeat_ngram_size": 3, "do_sample": False, "num_beams": 4}
    sampled = web.DecodingSettings.from_generation_config(config, {"do_sample": True, "top_p": 0.9, "temperature": 2})
    assert sampled.mode == "sampling" and (sampled.top_p, sampled.temperature) == (0.9, 2)
    assert sampled.generate_kwargs() == {
        "no_repeat_ngram_size": 0,
        "do_sample": True,
        "num_beams": 1,
        "temperature": 2.0,
        "top_p": 0.9,
    }


def test_model_summary_reads_the_card_then_eval_results(tiny_model_dir, tmp_path):
    summary = web.read_model_summary(str(tiny_model_dir))
    assert summary == web.ModelSummary("tiny-web", 42.5)
    assert "**42.50**" in summary.markdown()
    folder = tmp_path / "no-card"
    folder.mkdir()
    (folder / "eval_results.json").write_text(json.dumps({"eval_perplexity": 7.25}))
    assert web.read_model_summary(str(folder)) == web.ModelSummary("no-card", 7.25)
    (folder / "eval_results.json").unlink()
    assert "not recorded" in web.read_model_summary(str(folder)).markdown()


# ---------------------------------------------------------------------------------------------------------------------
# The Space folder.
# ---------------------------------------------------------------------------------------------------------------------
def front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


def test_space_folder_holds_the_app_the_model_and_its_requirements(tiny_model_dir, tmp_path):
    import torch

    space = web.write_space(str(tiny_model_dir), tmp_path / "space")
    meta = front_matter((space / "README.md").read_text(encoding="utf-8"))
    assert (meta["sdk"], meta["sdk_version"], meta["app_file"]) == ("gradio", metadata.version("gradio"), "app.py")
    assert meta["title"] == "tiny-web" and "models" not in meta
    requirements = (space / "requirements.txt").read_text().splitlines()
    assert requirements[0] == f"--extra-index-url {web.TORCH_CPU_INDEX}"
    assert f"torch=={torch.__version__.split('+')[0]}" in requirements
    assert {line.split("==")[0] for line in requirements[1:]} == set(web.SPACE_REQUIREMENTS)
    app = (space / "app.py").read_text()
    compile(app, "app.py", "exec")
    assert "os.environ.setdefault('LUONG_MODEL', 'model')" in app
    for entry in tiny_model_dir.iterdir():
        assert (space / "model" / entry.name).read_bytes() == entry.read_bytes(), entry.name
    for package, names in web.SPACE_SOURCES.items():
        for name in names:
            assert (space / package / name).read_bytes() == (REPO_ROOT / package / name).read_bytes()
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".space-")]  # no staging left


def test_space_folder_for_a_hub_model_references_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    space = web.write_space("someone/tiny-chatbot", tmp_path / "space", title="Tiny chatbot")
    meta = front_matter((space / "README.md").read_text(encoding="utf-8"))
    assert meta["models"] == ["someone/tiny-chatbot"] and meta["title"] == "Tiny chatbot"
    assert not (space / "model").exists()
    assert "os.environ.setdefault('LUONG_MODEL', 'someone/tiny-chatbot')" in (space / "app.py").read_text()


def test_write_space_replaces_its_own_folder_and_refuses_others(tiny_model_dir, tmp_path, monkeypatch, capsys):
    space = tmp_path / "space"
    assert web.main([str(tiny_model_dir), "--write-space", str(space)]) == 0
    (space / "model" / "stale.txt").write_text("from an older model")
    assert web.main([str(tiny_model_dir), "--write-space", str(space)]) == 0
    assert not (space / "model" / "stale.txt").exists()
    foreign = tmp_path / "my-files"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert web.main([str(tiny_model_dir), "--write-space", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {foreign}: exists and was not written by --write-space") and err.count("\n") == 1
    assert [path.name for path in foreign.iterdir()] == ["notes.txt"]


class MockSpaceHub:
    """The Hub endpoints that `push_space` uses (create a Space, preupload, commit), over in-memory repositories."""

    def __init__(self):
        self.created: list[dict] = []
        self.commits: list[dict] = []
        self.files: dict[str, bytes] = {}
        self.unhandled: list[str] = []
        self.validated_readmes = 0

    def handle(self, request):
        import httpx2

        path, method = request.url.path, request.method
        if method == "POST" and path == "/api/repos/create":
            body = json.loads(request.content)
            self.created.append(body)
            repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
            return httpx2.Response(200, json={"url": f"https://huggingface.co/spaces/{repo_id}"})
        if method == "GET" and path == "/api/agent-harnesses":  # huggingface_hub's User-Agent lookup, not the push
            return httpx2.Response(200, json={"standardEnvVars": [], "harnesses": {}})
        if method == "POST" and path == "/api/validate-yaml":
            return self.validate_yaml(json.loads(request.content))
        if method == "POST" and path.startswith("/api/spaces/") and "/preupload/" in path:
            files = json.loads(request.content)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return httpx2.Response(200, json={"files": modes})
        if method == "POST" and path.startswith("/api/spaces/") and "/commit/" in path:
            summary, added = read_commit(request.content)
            self.files.update(added)
            self.commits.append({"path": path, "message": summary, "files": sorted(added)})
            url = f"https://huggingface.co/spaces/someone/chat/commit/{'1' * 40}"
            return httpx2.Response(200, json={"commitUrl": url, "commitOid": "1" * 40})
        self.unhandled.append(f"{method} {request.url}")
        return httpx2.Response(404, headers={"X-Error-Code": "EntryNotFound"}, json={"error": "not mocked"})

    def validate_yaml(self, body: dict):
        """Stands in for the Hub's check of a Space card: it parses, and names its sdk, sdk_version and app file."""
        import httpx2
        from huggingface_hub import SpaceCard

        data = SpaceCard(body["content"]).data
        if body.get("repoType") != "space" or data.sdk != "gradio" or not data.sdk_version or not data.app_file:
            return httpx2.Response(400, json={"errors": [{"message": f"not a Gradio Space card: {data.to_dict()}"}]})
        self.validated_readmes += 1
        return httpx2.Response(200, json={"errors": [], "warnings": []})


def push(model_dir: str, space_dir: str, report_path: str) -> None:
    """Run as a script in a clean subprocess: `luong-web MODEL --write-space DIR --push-space` against the mock."""
    import httpx2
    import huggingface_hub

    hub = MockSpaceHub()
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub.handle)))
    exit_code = web.main([model_dir, "--write-space", space_dir, "--push-space", "someone/chat"])
    files = {name: content.decode("utf-8", "replace") for name, content in hub.files.items()}
    report = {"exit_code": exit_code, "created": hub.created, "commits": hub.commits, "unhandled": hub.unhandled}
    report["validated_readmes"] = hub.validated_readmes
    Path(report_path).write_text(json.dumps({**report, "files": files}))


@pytest.mark.slow
def test_push_space_sends_the_folder_in_one_commit(tiny_model_dir, tmp_path):
    env = web_env(HF_TOKEN="hf_dummy_token_for_tests", HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(REPO_ROOT))
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        env.pop(variable, None)
    space, report_path = tmp_path / "space", tmp_path / "push.json"
    pushed = run_python([__file__, "push", str(tiny_model_dir), str(space), str(report_path)], env=env)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["exit_code"] == 0 and report["unhandled"] == [] and report["validated_readmes"] == 1
    (created,) = report["created"]
    assert (created["name"], created["type"], created["sdk"]) == ("chat", "space", "gradio")
    (commit,) = report["commits"]
    written = {path.relative_to(space).as_posix() for path in space.rglob("*") if path.is_file()}
    assert set(commit["files"]) == written - {web.SPACE_MARKER}
    assert report["files"]["README.md"] == (space / "README.md").read_text(encoding="utf-8")
    assert "Pushed it: https://huggingface.co/spaces/someone/chat/commit/" in pushed.stdout


# ---------------------------------------------------------------------------------------------------------------------
# The real server: start-up errors, gradio_client, concurrent clients, the Space folder's own app.
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "empty_dir", "no_model", "bad_flag"])
def test_bad_model_or_flag_at_start_up_is_one_line_and_exit_2(tmp_path, case):
    (tmp_path / "empty").mkdir()
    args = {
        "missing": [str(tmp_path / "nope")],
        "empty_dir": [str(tmp_path / "empty")],
        "no_model": [],
        "bad_flag": [str(tmp_path / "empty"), "--num-beams", "0"],
    }[case]
    env = web_env()
    env.pop(web.MODEL_ENV_VAR, None)
    result = run_python(["app.py", *args], env=env, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert case in ("no_model", "bad_flag") or str(tmp_path) in result.stderr


@pytest.mark.slow
def test_client_replies_equal_chat_py(trained_model, server):
    from gradio_client import Client

    model, tokenizer = inference.load_model_and_tokenizer(str(trained_model))
    queries = [*inference.TUTORIAL_PROMPTS, *HOSTILE_INPUTS.values()]
    client = Client(server, verbose=False)
    for page_settings, flags in ((PAGE_GREEDY, []), (PAGE_BEAM, BEAM_FLAGS)):
        expected = chat_py_replies(trained_model, queries, flags)
        history, latencies = [], []
        for query in queries:
            start = time.perf_counter()
            box, history, notice = client.predict(query, history, *page_settings, api_name="/chat")
            latencies.append(time.perf_counter() - start)
            assert box == "" and message_text(history[-2]) == query.strip()
            assert message_text(history[-1]) == expected[query], query
            assert notice == html.escape("\n\n".join(inference.input_notices(tokenizer, query.strip())))
        assert len(history) == 2 * len(queries)
        median_ms = 1000 * statistics.median(latencies[: len(inference.TUTORIAL_PROMPTS)])
        print(f"{page_settings[0]}: median reply through the page {median_ms:.1f} ms over the tutorial's prompts")
    for empty in ("", "  "):
        assert client.predict(empty, [], *PAGE_GREEDY, api_name="/chat") == ("", [], web.EMPTY_INPUT_MESSAGE)
    _, unchanged, notice = client.predict("a" * (web.MAX_INPUT_CHARS + 1), [], *PAGE_GREEDY, api_name="/chat")
    assert unchanged == [] and "at most" in notice
    _, history, _ = client.predict("hello?", [], "sampling", 5, 2, 0.7, 0.9, api_name="/chat")
    assert len(message_text(history[-1]).split()) <= inference.DEFAULT_MAX_NEW_TOKENS


@pytest.mark.slow
def test_eight_concurrent_clients_each_get_their_replies(trained_model, server):
    from gradio_client import Client

    prompts = inference.TUTORIAL_PROMPTS
    expected = chat_py_replies(trained_model, prompts)

    def converse(index: int) -> list[tuple[str, str]]:
        client, history = Client(server, verbose=False), []
        mine = [prompts[(index + turn) % len(prompts)] for turn in range(3)]
        for prompt in mine:
            _, history, _ = client.predict(prompt, history, *PAGE_GREEDY, api_name="/chat")
        return [(message_text(history[2 * turn]), message_text(history[2 * turn + 1])) for turn in range(3)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        conversations = list(pool.map(converse, range(8)))
    for index, conversation in enumerate(conversations):
        mine = [prompts[(index + turn) % len(prompts)] for turn in range(3)]
        assert conversation == [(prompt, expected[prompt]) for prompt in mine]


@pytest.mark.slow
def test_space_folder_serves_the_model_from_its_own_sources(trained_model, tmp_path):
    from gradio_client import Client

    space = web.write_space(str(trained_model), tmp_path / "space")
    env = web_env()
    env.pop("PYTHONPATH", None)  # the Space's copies of the packages, not the checkout's
    env.pop(web.MODEL_ENV_VAR, None)
    imported = subprocess.run(
        [sys.executable, "-c", "import luong_chatbot.web, modeling_seq2seq; print(luong_chatbot.web.__file__)"],
        cwd=space,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0 and Path(imported.stdout.strip()).resolve() == (space / "luong_chatbot/web.py")
    # A Space runs `python app.py` with no model argument: the model comes from app.py's default for LUONG_MODEL.
    with serve(["app.py"], cwd=space, env=env) as url:
        _, history, _ = Client(url, verbose=False).predict("hello?", [], *PAGE_GREEDY, api_name="/chat")
    assert message_text(history[-1]) == chat_py_replies(trained_model, ["hello?"])["hello?"]


@pytest.mark.slow
def test_latency_benchmark_times_page_and_direct_replies_in_pairs():
    result = run_python(["bench/bench_web.py", "--quick"], env=web_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["replies_timed"] == len(inference.TUTORIAL_PROMPTS)
    assert report["median_ms_per_reply"]["page"] > 0 and report["median_ms_per_reply"]["direct"] > 0
    assert set(report["machine"]["cpu_flags"]) >= {"avx2", "avx512f", "avx512_bf16", "amx_tile"}


# ---------------------------------------------------------------------------------------------------------------------
# The real browser.
# ---------------------------------------------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.slow
def test_browser_chat_examples_and_notice(trained_model, server, tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip("no Chromium: install Debian's chromium package (.ci/run installs it with apt-get)")
    from playwright.sync_api import expect, sync_playwright

    expected = chat_py_replies(trained_model, ["hello?", "where am I?", "zorg, are you my friend?"])
    summary = web.read_model_summary(str(trained_model))
    outside, page_errors = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 1150})
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        # Every request must stay on the app's server: no fonts, scripts or analytics from the internet.
        page.route("**/*", lambda route: keep_local(route, server, outside))
        page.goto(server)
        expect(page.locator("#model-summary")).to_contain_text(summary.name)
        if summary.validation_perplexity is not None:
            expect(page.locator("#model-summary")).to_contain_text(f"{summary.validation_perplexity:.2f}")
        bot = page.locator('#conversation [data-testid="bot"] .message-content')
        box = page.locator("#message textarea")
        box.fill("hello?")
        box.press("Enter")
        expect(bot).to_have_count(1, timeout=60_000)
        assert bot.last.inner_text() == expected["hello?"]
        page.locator("#tutorial-prompts button", has_text="where am I?").click()
        expect(bot).to_have_count(2, timeout=60_000)
        assert bot.last.inner_text() == expected["where am I?"]
        box.fill("zorg, are you my friend?")
        box.press("Enter")
        expect(bot).to_have_count(3, timeout=60_000)
        assert bot.last.inner_text() == expected["zorg, are you my friend?"]
        expect(page.locator("#notice")).to_contain_text("unknown words, read as <unk>: zorg")
        page.screenshot(path=tmp_path / "web-chat.png", full_page=True)
        box.press("Enter")  # empty: a message, no new bubble
        expect(page.locator("#notice")).to_contain_text(web.EMPTY_INPUT_MESSAGE)
        expect(bot).to_have_count(3)
        browser.close()
    assert (tmp_path / "web-chat.png").read_bytes().startswith(b"\x89PNG")
    if os.environ.get("LUONG_WEB_SCREENSHOT"):
        shutil.copyfile(tmp_path / "web-chat.png", os.environ["LUONG_WEB_SCREENSHOT"])
    assert outside == [] and page_errors == []


def keep_local(route, server: str, outside: list[str]) -> None:
    """Lets requests to the app's server through; aborts and records any other."""
    if route.request.url.startswith(server):
        route.continue_()
    else:
        outside.append(route.request.url)
        route.abort()


if __name__ == "__main__":
    {"push": push}[sys.argv[1]](*sys.argv[2:])
