"""A web chat page for a trained chatbot (Gradio), and the folder that turns it into a Hugging Face Space.

    luong-web runs/chatbot                          # http://127.0.0.1:7860, or: python app.py runs/chatbot
    luong-web runs/chatbot --num-beams 5 --no-repeat-ngram-size 3 --port 8000
    LUONG_MODEL=someone/chatbot python app.py       # the model from the environment, as a Space runs it
    luong-web runs/chatbot --write-space space/     # a Space folder: README.md, requirements.txt, app.py, the model
    luong-web runs/chatbot --write-space space/ --push-space someone/chatbot-demo

Each reply comes from `inference.reply_with_notices`, as in the terminal chat, so the page and `chat.py` answer the
same input with the same settings alike. The model loads once per process; Gradio's queue runs at most
`--concurrency-limit` replies at a time and holds the others.
"""

from __future__ import annotations

import argparse
import html
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase, set_seed

from .cli import OneLineErrorParser, add_decoding_arguments, generate_kwargs_from_args, quiet_transformers
from .inference import (
    TUTORIAL_PROMPTS,
    ModelLoadError,
    generate_replies,
    load_model_and_tokenizer,
    reply_with_notices,
)

# What a Space (or a user) sets to choose the model when `app.py` gets no argument.
MODEL_ENV_VAR = "LUONG_MODEL"
GREEDY, BEAM_SEARCH, SAMPLING = "greedy", "beam search", "sampling"
# Far more than the model reads (9 words), but small enough that one request cannot keep the tokenizer busy.
MAX_INPUT_CHARS = 10_000
EMPTY_INPUT_MESSAGE = "Type a message first."
# Written into every Space folder; `write_space` replaces only folders that carry it.
SPACE_MARKER = ".luong-space"
SPACE_MODEL_DIR = "model"
# The modules the Space's app imports: the model package and the app package's inference, cli and web.
SPACE_SOURCES = {
    "modeling_seq2seq": (
        "__init__.py",
        "configuration_luong_gru.py",
        "modeling_luong_gru.py",
        "tokenization_luong_gru.py",
    ),
    "luong_chatbot": ("__init__.py", "inference.py", "cli.py", "web.py"),
}
SPACE_REQUIREMENTS = ("torch", "transformers", "tokenizers", "huggingface_hub", "safetensors")
# The CPU build of torch: a Space on free hardware has no GPU, and the default wheel pulls in CUDA.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


# ---------------------------------------------------------------------------------------------------------------------
# Decoding settings: the page's controls and the generate() arguments they stand for.
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class DecodingSettings:
    """The page's decoding controls.

    Args:
        mode (`str`): `"greedy"`, `"beam search"` or `"sampling"`.
        num_beams (`int`): beam search width.
        no_repeat_ngram_size (`int`): never repeat an n-gram this long (0 = off), in every mode.
        temperature (`float`): sampling: divide the logits by this.
        top_p (`float`): sampling: keep the smallest set of tokens with this total probability.
    """

    mode: str
    num_beams: int
    no_repeat_ngram_size: int
    temperature: float
    top_p: float

    @classmethod
    def from_generation_config(cls, config: GenerationConfig, overrides: dict[str, Any]) -> DecodingSettings:
        """The model's generation config, with the start-up decoding flags (`generate_kwargs_from_args`) on top."""
        values = {**config.to_dict(), **overrides}
        num_beams = values.get("num_beams") or 1
        mode = SAMPLING if values.get("do_sample") else BEAM_SEARCH if num_beams > 1 else GREEDY
        return cls(
            mode=mode,
            # Beam search's slider starts at 5 beams when the model's own default is greedy.
            num_beams=num_beams if num_beams > 1 else 5,
            no_repeat_ngram_size=values.get("no_repeat_ngram_size") or 0,
            temperature=values.get("temperature") or 1.0,
            top_p=values.get("top_p") or 1.0,
        )

    def generate_kwargs(self) -> dict[str, Any]:
        """The `generate()` arguments of these settings; the start-up flags fill in the rest."""
        if self.mode not in (GREEDY, BEAM_SEARCH, SAMPLING):
            raise ValueError(f"unknown decoding mode {self.mode!r}; expected {GREEDY}, {BEAM_SEARCH} or {SAMPLING}")
        kwargs: dict[str, Any] = {"no_repeat_ngram_size": int(self.no_repeat_ngram_size)}
        if self.mode == SAMPLING:
            kwargs.update(do_sample=True, num_beams=1, temperature=float(self.temperature), top_p=float(self.top_p))
        else:
            kwargs.update(do_sample=False, num_beams=int(self.num_beams) if self.mode == BEAM_SEARCH else 1)
        return kwargs


# ---------------------------------------------------------------------------------------------------------------------
# What the page says about the model: its name and its card's validation perplexity.
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class ModelSummary:
    """The model's name and the validation perplexity from its card (`None` when the card records none)."""

    name: str
    validation_perplexity: float | None

    def markdown(self) -> str:
        perplexity = "not recorded" if self.validation_perplexity is None else f"{self.validation_perplexity:.2f}"
        return f"Model **{html.escape(self.name)}**, validation perplexity **{perplexity}** (from its model card)."


def read_model_summary(path_or_hub_id: str) -> ModelSummary:
    """Reads the model card (`README.md`, written by `train.py`) of a model folder or Hub repository.

    The card's model-index holds the validation perplexity; a folder without a card falls back to its
    `eval_results.json`. A card that cannot be read leaves the perplexity unknown rather than stopping the page.
    """
    from huggingface_hub import ModelCard
    from huggingface_hub.errors import HfHubHTTPError

    local = Path(path_or_hub_id)
    name = path_or_hub_id.rstrip("/").split("/")[-1] if not local.is_dir() else local.resolve().name
    try:
        card = ModelCard.load(local / "README.md" if local.is_dir() else path_or_hub_id)
    except (OSError, ValueError, HfHubHTTPError):
        card = None
    perplexity = None
    if card is not None:
        name = card.data.model_name or name
        for result in card.data.eval_results or []:
            if result.metric_type == "perplexity" and result.dataset_split == "validation":
                perplexity = float(result.metric_value)
    results_file = local / "eval_results.json"
    if perplexity is None and results_file.is_file():
        try:
            perplexity = float(json.loads(results_file.read_text(encoding="utf-8"))["eval_perplexity"])
        except (ValueError, KeyError, TypeError):
            perplexity = None
    return ModelSummary(name=name, validation_perplexity=perplexity)


# ---------------------------------------------------------------------------------------------------------------------
# The page.
# ---------------------------------------------------------------------------------------------------------------------
def respond(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    base_kwargs: dict[str, Any],
    message: str | None,
    history: list[dict[str, Any]] | None,
    settings: DecodingSettings,
) -> tuple[list[dict[str, Any]], str]:
    """One turn of the page: the conversation with the new exchange appended, and the notice to show under it.

    The input is stripped like a line of `chat.py`; empty or overlong input gets a notice and no reply.
    """
    history = list(history or [])
    query = (message or "").strip()
    if not query:
        return history, EMPTY_INPUT_MESSAGE
    if len(query) > MAX_INPUT_CHARS:
        return history, f"Your message has {len(query):,} characters; the page reads at most {MAX_INPUT_CHARS:,}."
    try:
        reply, notices = reply_with_notices(model, tokenizer, query, **{**base_kwargs, **settings.generate_kwargs()})
    except ValueError as error:  # settings generate() rejects, e.g. a beam width the API was sent out of range
        return history, f"These decoding settings do not work: {str(error).strip().splitlines()[0]}"
    history += [{"role": "user", "content": query}, {"role": "assistant", "content": reply}]
    return history, "\n\n".join(notices)


def build_app(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    summary: ModelSummary,
    base_kwargs: dict[str, Any] | None = None,
    concurrency_limit: int = 2,
):
    """The chat page as a `gradio.Blocks`, over a model loaded once; call `.launch()` on it.

    Args:
        model (`PreTrainedModel`): the loaded chatbot (see `inference.load_model_and_tokenizer`).
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer.
        summary (`ModelSummary`): the name and validation perplexity shown on the page.
        base_kwargs (`dict[str, Any]`, *optional*):
            `generate()` arguments from the start-up flags; they also set the decoding controls' defaults.
        concurrency_limit (`int`, *optional*, defaults to 2):
            Replies computed at once; the queue holds the others (a free CPU Space has 2 cores).

    Returns:
        `gradio.Blocks`: the page, with the queue enabled. Its chat event is the API endpoint `/chat`: (message,
        history, mode, num_beams, no_repeat_ngram_size, temperature, top_p) -> ("", history, notice as Markdown).
    """
    import gradio as gr

    base_kwargs = dict(base_kwargs or {})
    defaults = DecodingSettings.from_generation_config(model.generation_config, base_kwargs)

    def chat(message, history, mode, num_beams, no_repeat_ngram_size, temperature, top_p):
        settings = DecodingSettings(mode, num_beams, no_repeat_ngram_size, temperature, top_p)
        history, notice = respond(model, tokenizer, base_kwargs, message, history, settings)
        return "", history, html.escape(notice)  # shown as Markdown, where `<unk>` would be taken for a tag

    with gr.Blocks(title=f"{summary.name} - chat", analytics_enabled=False) as demo:
        gr.Markdown(f"# Chat with {html.escape(summary.name)}\n{summary.markdown()}", elem_id="model-summary")
        # Plain text, as chat.py prints it; no "share" button, which would upload the conversation to the Hub.
        chatbot = gr.Chatbot(
            label="Conversation", elem_id="conversation", render_markdown=False, height=360, buttons=["copy"]
        )
        notice = gr.Markdown(elem_id="notice")
        textbox = gr.Textbox(
            placeholder="Type a message and press Enter",
            show_label=False,
            max_length=MAX_INPUT_CHARS,
            elem_id="message",
            autofocus=True,
        )
        examples = gr.Dataset(
            label="The tutorial's prompts (click one to send it)",
            components=[gr.Textbox(visible=False)],
            samples=[[prompt] for prompt in TUTORIAL_PROMPTS],
            elem_id="tutorial-prompts",
        )
        with gr.Accordion("Decoding", open=True):
            mode = gr.Radio([GREEDY, BEAM_SEARCH, SAMPLING], value=defaults.mode, label="Search")
            with gr.Row():
                num_beams = gr.Slider(2, 10, value=defaults.num_beams, step=1, label="Beams (beam search)")
                no_repeat = gr.Slider(
                    0, 5, value=defaults.no_repeat_ngram_size, step=1, label="Block repeated n-grams of (0 = off)"
                )
                temperature = gr.Slider(
                    0.05, 2.0, value=defaults.temperature, step=0.05, label="Temperature (sampling)"
                )
                top_p = gr.Slider(0.05, 1.0, value=defaults.top_p, step=0.05, label="Top-p (sampling)")
        inputs = [textbox, chatbot, mode, num_beams, no_repeat, temperature, top_p]
        outputs = [textbox, chatbot, notice]
        # Typed and clicked messages share one concurrency group: at most `concurrency_limit` replies at once.
        queued = {"concurrency_limit": concurrency_limit, "concurrency_id": "reply"}
        textbox.submit(chat, inputs, outputs, api_name="chat", **queued)
        # A click puts the prompt in the box, then sends it as if typed.
        examples.click(lambda sample: sample[0], examples, textbox, queue=False, api_visibility="private").then(
            chat, inputs, outputs, api_visibility="private", **queued
        )
    return demo.queue(default_concurrency_limit=concurrency_limit)


# ---------------------------------------------------------------------------------------------------------------------
# A Hugging Face Space: the folder, and pushing it.
# ---------------------------------------------------------------------------------------------------------------------
class SpaceFolderError(Exception):
    """The Space folder cannot be written there, or pushed; the message is one line meant for the user."""


def space_readme(title: str, model_id: str | None) -> str:
    """The Space's README.md: the front matter the Hub reads (sdk, its version, the app file), then a short text."""
    front_matter = [
        f"title: {json.dumps(title)}",
        "emoji: 💬",
        "colorFrom: blue",
        "colorTo: gray",
        "sdk: gradio",
        f"sdk_version: {metadata.version('gradio')}",
        "app_file: app.py",
        "pinned: false",
        "license: apache-2.0",
        "short_description: Chat with a GRU seq2seq chatbot (the PyTorch Chatbot Tutorial)",
    ]
    if model_id:
        front_matter.append(f"models:\n- {model_id}")
    source = f"the Hub model `{model_id}`" if model_id else f"the model in `{SPACE_MODEL_DIR}/`"
    return (
        "---\n" + "\n".join(front_matter) + "\n---\n\n"
        f"# {title}\n\nA web chat with {source}: a GRU encoder-decoder with Luong attention trained on the Cornell "
        "Movie-Dialogs Corpus, as in the PyTorch Chatbot Tutorial. `app.py` serves it with Gradio; set the "
        f"`{MODEL_ENV_VAR}` variable to a model folder or Hub id to serve another one.\n"
    )


def space_requirements() -> str:
    """requirements.txt: the installed versions of what the app imports (the Space's sdk_version brings gradio)."""
    lines = [f"--extra-index-url {TORCH_CPU_INDEX}"]
    for name in SPACE_REQUIREMENTS:
        # `2.13.0+cpu` -> `2.13.0`: the CPU index's `+cpu` build then sorts above PyPI's and is the one installed.
        lines.append(f"{name}=={metadata.version(name).split('+')[0]}")
    return "\n".join(lines) + "\n"


def space_app(model_id: str) -> str:
    """The Space's app.py: the package's `main`, serving `model_id` unless the Space sets `LUONG_MODEL`."""
    return (
        f'"""The Space\'s entry point: serves {model_id!r} (or ${MODEL_ENV_VAR}) with luong_chatbot.web."""\n\n'
        "import os\nimport sys\n\nfrom luong_chatbot.web import main\n\n"
        f"os.environ.setdefault({MODEL_ENV_VAR!r}, {model_id!r})\n\n"
        'if __name__ == "__main__":\n    sys.exit(main())\n'
    )


def write_space(model: str, space_dir: str | os.PathLike, title: str | None = None) -> Path:
    """Writes a Hugging Face Space folder that serves `model` with this page.

    A local model folder is copied into the Space (`model/`, its top-level files); a Hub id is referenced instead.
    The folder also gets README.md (front matter: `sdk: gradio`, `sdk_version`, `app_file: app.py`),
    requirements.txt, app.py and the sources of `modeling_seq2seq` and the app. It is written next to `space_dir`
    and renamed into place; an existing `space_dir` is replaced only if it is empty or was written by this function.

    Args:
        model (`str`): a model folder written by train.py, or a Hub repository id.
        space_dir (`str` or `os.PathLike`): the folder to write.
        title (`str`, *optional*): the Space's title; defaults to the model's name.

    Raises:
        `SpaceFolderError`: when `space_dir` holds files this function did not write.
    """
    target = Path(space_dir)
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / SPACE_MARKER).exists())):
        raise SpaceFolderError(f"{target}: exists and was not written by --write-space; choose a new folder")
    local_model = Path(model).is_dir()
    model_id = None if local_model else model
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if local_model:
            (staging / SPACE_MODEL_DIR).mkdir()
            for entry in sorted(Path(model).iterdir()):
                if entry.is_file():  # not the checkpoints nor the built dataset
                    shutil.copy2(entry, staging / SPACE_MODEL_DIR / entry.name)
        package_root = Path(__file__).resolve().parents[1]
        for package, names in SPACE_SOURCES.items():
            (staging / package).mkdir()
            for name in names:
                shutil.copy2(package_root / package / name, staging / package / name)
        (staging / "README.md").write_text(space_readme(title or read_model_summary(model).name, model_id), "utf-8")
        (staging / "requirements.txt").write_text(space_requirements(), encoding="utf-8")
        (staging / "app.py").write_text(space_app(model_id or SPACE_MODEL_DIR), encoding="utf-8")
        (staging / SPACE_MARKER).write_text("written by luong-web --write-space\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def push_space(space_dir: str | os.PathLike, repo_id: str, token: str | None = None, private: bool = False):
    """Creates (or reuses) the Gradio Space `repo_id` and uploads `space_dir` to it in one commit.

    Returns:
        `huggingface_hub.CommitInfo`: the commit, with its URL.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True).repo_id
    return api.upload_folder(
        repo_id=repo_id,
        repo_type="space",
        folder_path=str(space_dir),
        ignore_patterns=[SPACE_MARKER],
        commit_message="Chat page written by luong-web --write-space",
    )


# ---------------------------------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="luong-web", description="Serve a trained chatbot as a web chat page (Gradio).")
    parser.add_argument(
        "model",
        nargs="?",
        default=os.environ.get(MODEL_ENV_VAR),
        help=f"A model folder written by train.py, or a Hub repository id (default: ${MODEL_ENV_VAR}).",
    )
    # A Space's runtime sets GRADIO_SERVER_NAME=0.0.0.0 (and the port); anywhere else the page stays on this machine.
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="Address to bind.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), help="Port.")
    parser.add_argument("--share", action="store_true", help="Also open a public gradio.live link (off by default).")
    parser.add_argument("--concurrency-limit", type=int, default=2, help="Replies computed at once (default 2).")
    add_decoding_arguments(parser)
    space = parser.add_argument_group("Hugging Face Space")
    space.add_argument("--write-space", metavar="DIR", help="Write a Space folder serving MODEL, then exit.")
    space.add_argument("--push-space", metavar="REPO_ID", help="With --write-space: push the folder to this Space.")
    return parser


def load_checked(args: argparse.Namespace) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """Loads the model and checks the decoding flags with one throwaway reply, as `chat.py` does.

    Raises:
        `ModelLoadError`: with a one-line message for a model that does not load or flags it rejects.
    """
    generate_kwargs = generate_kwargs_from_args(args)
    model, tokenizer = load_model_and_tokenizer(args.model, quantize=args.quantize)
    try:
        generate_replies(model, tokenizer, ["hello"], **generate_kwargs)
    except ValueError as error:
        raise ModelLoadError(f"bad decoding flags: {str(error).strip().splitlines()[0]}") from error
    return model, tokenizer, generate_kwargs


def push_checked(folder: Path, repo_id: str):
    """`push_space`, with the Hub's refusal (no token, no right to the namespace, no network) as a one-line error."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return push_space(folder, repo_id)
    except (HfHubHTTPError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SpaceFolderError(f"{repo_id}: could not push the Space ({first_line})") from error


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.model:
        parser.error(f"give a MODEL folder or Hub id, or set ${MODEL_ENV_VAR}")
    if args.push_space and not args.write_space:
        parser.error("--push-space needs --write-space DIR")
    if importlib.util.find_spec("gradio") is None:
        print("error: the web page needs Gradio: pip install 'luong-chatbot[web]'", file=sys.stderr)
        return 2
    quiet_transformers()
    try:
        model, tokenizer, generate_kwargs = load_checked(args)
        if args.write_space:
            folder = write_space(args.model, args.write_space)
            print(f"Wrote the Space folder {folder}")
            if args.push_space:
                print(f"Pushed it: {push_checked(folder, args.push_space).commit_url}")
            return 0
    except (ModelLoadError, SpaceFolderError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.seed is not None:
        set_seed(args.seed)
    demo = build_app(model, tokenizer, read_model_summary(args.model), generate_kwargs, args.concurrency_limit)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
