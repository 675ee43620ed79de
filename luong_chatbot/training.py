"""Train the GRU encoder-decoder chatbot with the Hugging Face `Trainer`, from a recipe or the tutorial's defaults.

One command gets the data, trains, evaluates, saves a loadable model folder and prints a sample conversation:

    python train.py recipes/small-regularized.yaml --corpus-dir data/cornell-sample --output-dir runs/sample

Options come from the dataclasses below (every default is the PyTorch Chatbot Tutorial's, with its reason) plus every
`transformers.TrainingArguments` flag. A recipe file (`.yaml`, `.yml` or `.json`, the same keys) may come first: its
values replace the defaults, and flags after it override them: `python train.py recipes/tutorial.yaml --max_steps 100`.
"""

import gc
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import tempfile
import weakref
import zipfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
import yaml
from transformers import (
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    EarlyStoppingCallback,
    EvalPrediction,
    HfArgumentParser,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.trainer_utils import HubStrategy, IntervalStrategy, SchedulerType
from transformers.training_args import OptimizerNames

from data_scripts.build_dataset import build_dataset, check_build, corpus_identity, default_corpus_cache
from data_scripts.cornell import CORPUS_FOLDER
from data_scripts.output_dir import (
    OVERWRITE_FLAG,
    OutputDirError,
    claim_output_dir,
    default_file_mode,
    output_dir_lock,
    remove_created_folders,
)
from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration

from .inference import TUTORIAL_PROMPTS, generate_replies, safetensors_is_whole

logger = logging.getLogger("train")

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_CARD_TEMPLATE = REPO_ROOT / "model_card.md"  # at the top of a checkout or an editable install
if not MODEL_CARD_TEMPLATE.is_file():  # a regular install: setup.cfg's data_files put it under sys.prefix
    MODEL_CARD_TEMPLATE = Path(sys.prefix, "share", "luong-chatbot", "model_card.md")
CORNELL_DATASET_ID = "cornell-movie-dialog/cornell_movie_dialog"
# Top-level files of the final model folder that go to the Hub: weights, config, generation config, tokenizer, model
# card, results and the modeling code copied by `save_pretrained`. Not training_args.bin (a pickle) nor data/.
HUB_FILE_SUFFIXES = (".safetensors", ".json", ".py", ".md")
# bench/bench_quality.py's committed results: the model card quotes the recipes' test metrics from it.
QUALITY_BENCHMARK = REPO_ROOT / "bench" / "results" / "bench_quality.json"
# The generation-config keys that describe how replies are decoded (not the token ids or the length limit).
DECODING_KEYS = ("num_beams", "length_penalty", "no_repeat_ngram_size", "do_sample", "top_p", "top_k", "temperature")


# ---------------------------------------------------------------------------------------------------------------------
# Arguments: every default on one screen, with its reason.
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class DataArguments:
    _argument_group_name = "data (a built dataset, or the corpus to build it from)"

    dataset_dir: str | None = field(
        default=None,
        metadata={"help": "A folder written by data_scripts.build_dataset (dataset/, tokenizer/, stats.json)."},
    )
    corpus_dir: str | None = field(
        default=None,
        metadata={
            "help": "The Cornell corpus (folder or the official zip): build the dataset from it first. With neither "
            "this nor --dataset-dir, the official corpus is downloaded."
        },
    )
    build_dir: str | None = field(
        default=None, metadata={"help": "Where --corpus-dir builds the dataset. Defaults to OUTPUT_DIR/data."}
    )
    max_length: int = field(default=10, metadata={"help": "Tutorial's MAX_LENGTH: keep pairs of at most 9 words."})
    min_count: int = field(default=3, metadata={"help": "Tutorial's MIN_COUNT: drop pairs with rarer words."})
    train_max_length: int | None = field(
        default=None,
        metadata={"help": "Also train on pairs with fewer words a side than this (default: --max_length only)."},
    )
    train_max_unknown: int = field(
        default=0, metadata={"help": "Also train on pairs with up to this many out-of-vocabulary words, as <unk>."}
    )


@dataclass
class ModelArguments:
    _argument_group_name = "model (the tutorial's configuration) and its default decoding"

    hidden_size: int = field(default=500, metadata={"help": "Tutorial's hidden_size (also the embedding size)."})
    encoder_layers: int = field(default=2, metadata={"help": "Tutorial's encoder_n_layers."})
    decoder_layers: int = field(default=2, metadata={"help": "Tutorial's decoder_n_layers."})
    dropout: float = field(default=0.1, metadata={"help": "Tutorial's dropout (between GRU layers)."})
    embedding_dropout: float | None = field(
        default=None,
        metadata={"help": "Dropout on the encoder's and decoder's embeddings; unset: decoder's only, at --dropout."},
    )
    output_dropout: float = field(default=0.0, metadata={"help": "Dropout before lm_head (the tutorial has none)."})
    tie_lm_head: bool = field(
        default=False, metadata={"help": "lm_head reuses the shared embedding matrix (the tutorial's has its own)."}
    )
    attention_type: Literal["dot", "general", "concat"] = field(
        default="dot", metadata={"help": "Tutorial's attn_model: the Luong score function."}
    )
    # The saved generation_config.json: what chat.py, evaluation, generate() and the Hub copy decode with.
    generation_num_beams: int = field(default=1, metadata={"help": "Default decoding: beams (1: greedy)."})
    generation_no_repeat_ngram_size: int = field(default=0, metadata={"help": "Default decoding: no repeated n-gram."})
    generation_length_penalty: float = field(default=1.0, metadata={"help": "Default decoding: beam length penalty."})
    generation_do_sample: bool = field(default=False, metadata={"help": "Default decoding: sample instead."})
    generation_top_p: float = field(default=1.0, metadata={"help": "Default decoding: nucleus sampling mass."})
    generation_temperature: float = field(default=1.0, metadata={"help": "Default decoding: sampling temperature."})


@dataclass
class LuongGruTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the tutorial's recipe as defaults, plus its teacher-forcing and decoder-lr ratios."""

    output_dir: str = field(metadata={"help": "Where checkpoints, the final model and its model card go."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Tutorial's batch_size."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Any size gives the same token NLL."})
    max_steps: int = field(default=4000, metadata={"help": "Tutorial's n_iteration."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Tutorial's encoder learning_rate."})
    decoder_lr_ratio: float = field(
        default=5.0, metadata={"help": "Tutorial's decoder_learning_ratio: decoder lr = learning_rate x this."}
    )
    lr_scheduler_type: SchedulerType | str = field(
        default="constant", metadata={"help": "The tutorial has no schedule."}
    )
    max_grad_norm: float = field(
        default=50.0, metadata={"help": "Tutorial's clip (it clips encoder and decoder separately; this is global)."}
    )
    teacher_forcing_ratio: float = field(
        default=1.0, metadata={"help": "Tutorial's teacher_forcing_ratio: chance a batch is teacher forced."}
    )
    save_steps: float = field(default=500, metadata={"help": "Tutorial's save_every."})
    eval_strategy: IntervalStrategy | str = field(
        default="steps", metadata={"help": "A held-out metric at every checkpoint."}
    )
    eval_steps: float | None = field(default=500, metadata={"help": "Validation loss/perplexity every N steps."})
    logging_steps: float = field(default=100, metadata={"help": "Average training loss over N steps, then log."})
    seed: int = field(default=0, metadata={"help": "Seeds init, dropout, data order and teacher forcing draws."})
    hub_strategy: HubStrategy | str = field(
        default="end", metadata={"help": "Push only the final model (with its card), not every checkpoint."}
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "Every parameter is used at every step, so DDP need not search."}
    )
    early_stopping_patience: int = field(
        default=0,
        metadata={
            "help": "Stop after this many evaluations without a better metric_for_best_model (0: never; the tutorial "
            "never stops). Needs --load_best_model_at_end, so that the saved model is the best checkpoint's."
        },
    )
    recipe: str | None = field(
        default=None, metadata={"help": "The recipe's name, shown in the model card (the recipe files set it)."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Write into a non-empty --output_dir that luong-chatbot did not create (same-named files are "
            "replaced). Without it such a folder is refused."
        },
    )
    bf16_force: bool = field(
        default=False,
        metadata={"help": "Allow --bf16 on a CPU without native bf16 (there it runs emulated, slower than fp32)."},
    )

    def __post_init__(self):
        if self.bf16 and not self.bf16_force and not torch.cuda.is_available() and not cpu_has_native_bf16():
            raise ValueError(
                "--bf16: this CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag), so autocast would run "
                "emulated kernels, several times slower than fp32; drop --bf16, or add --bf16_force to use it anyway"
            )
        if not torch.cuda.is_available() and (int(os.environ.get("WORLD_SIZE", "1")) > 1 or self.bf16):
            # accelerate sets up gloo data parallelism, and CPU bf16 autocast, only with use_cpu: without it each
            # process would train alone, and --bf16 would be refused.
            self.use_cpu = True
        super().__post_init__()
        if not 0.0 <= self.teacher_forcing_ratio <= 1.0:
            raise ValueError(f"--teacher_forcing_ratio must be in [0, 1], got {self.teacher_forcing_ratio}")
        if self.decoder_lr_ratio <= 0:
            raise ValueError(f"--decoder_lr_ratio must be positive, got {self.decoder_lr_ratio}")
        if self.optim not in (OptimizerNames.ADAMW_TORCH, OptimizerNames.ADAMW_TORCH_FUSED):
            raise ValueError(f"--optim {self.optim.value} is not supported: the recipe always uses torch.optim.Adam")
        if self.early_stopping_patience < 0:
            raise ValueError(f"--early_stopping_patience must be >= 0, got {self.early_stopping_patience}")
        if self.early_stopping_patience and not self.load_best_model_at_end:
            raise ValueError("--early_stopping_patience needs --load_best_model_at_end (and --metric_for_best_model)")


def cpu_has_native_bf16(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX), the only CPUs where bf16 autocast is fast.

    Args:
        cpuinfo (`str` or `os.PathLike`, *optional*, defaults to `"/proc/cpuinfo"`):
            The kernel's CPU description, whose `flags` lines are read (Linux); where it cannot be read, oneDNN's
            report decides alone. Either way oneDNN must report bf16 support.
    """
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return False
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


class UsageError(Exception):
    """Bad user input: reported as one line and exit code 2."""


class _OneLineErrorParser(HfArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


RECIPE_SUFFIXES = (".json", ".yaml", ".yml")


def read_recipe(path: str) -> dict[str, Any]:
    """The option names and values of a recipe file (`recipes/*.yaml`, or JSON): one mapping, keys as the flags."""
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    try:
        text = Path(path).read_text(encoding="utf-8")
        values = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        raise UsageError(f"{path}: not a valid recipe file ({' '.join(str(error).split())})") from error
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping of option names to values, got {type(values).__name__}")
    return values


def apply_recipe(parser: HfArgumentParser, values: dict[str, Any], path: str) -> None:
    """Makes a recipe's values the parser's defaults, so that command-line flags still override them."""
    actions = {action.dest: action for action in parser._actions}
    unknown = sorted(set(values) - set(actions))
    if unknown:
        raise UsageError(f"{path}: unknown option(s) {', '.join(unknown)}; expected train.py's flag names")
    for name, value in values.items():
        actions[name].required = False  # e.g. output_dir, given by the recipe
        # As text, the value goes through the flag's own type check and conversion, like a command-line value
        # (YAML reads 1e-4 as a string, for one).
        if value is not None and not isinstance(value, (list, dict)):
            values[name] = str(value)
    parser.set_defaults(**values)


def parse_args(argv: list[str] | None = None) -> tuple[DataArguments, ModelArguments, LuongGruTrainingArguments]:
    """Parses the command line: an optional recipe file first (`.yaml`, `.yml`, `.json`), then flags overriding it."""
    argv = sys.argv[1:] if argv is None else argv
    parser = _OneLineErrorParser((DataArguments, ModelArguments, LuongGruTrainingArguments), prog="train.py")
    recipe_file = argv[0] if argv and argv[0].endswith(RECIPE_SUFFIXES) else None
    try:
        if recipe_file is not None:
            apply_recipe(parser, read_recipe(recipe_file), recipe_file)
            argv = argv[1:]
        *parsed, unknown = parser.parse_args_into_dataclasses(
            args=argv, look_for_args_file=False, return_remaining_strings=True
        )
        if unknown:
            raise UsageError(f"unrecognized arguments: {' '.join(unknown)}")
        return tuple(parsed)
    except (ValueError, TypeError) as error:  # bad values, from the dataclasses' checks
        message = " ".join(str(error).split())
        raise UsageError(f"{recipe_file}: {message}" if recipe_file else message) from error


# ---------------------------------------------------------------------------------------------------------------------
# Input checks: every bad value, folder or checkpoint is one line (UsageError) before any training step.
# ---------------------------------------------------------------------------------------------------------------------
def validate_arguments(model_args: ModelArguments, training_args: LuongGruTrainingArguments) -> None:
    """Refuses values that would only fail (or train nothing) once the model or the Trainer meets them."""
    if not (math.isfinite(training_args.learning_rate) and training_args.learning_rate > 0):
        raise UsageError(f"--learning_rate: expected a positive number, got {training_args.learning_rate}")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        if getattr(training_args, name) < 1:
            raise UsageError(f"--{name}: expected an integer >= 1, got {getattr(training_args, name)}")
    try:
        LuongGruConfig(  # the model's own checks, on a placeholder vocabulary
            vocab_size=5,
            hidden_size=model_args.hidden_size,
            encoder_layers=model_args.encoder_layers,
            decoder_layers=model_args.decoder_layers,
            dropout=model_args.dropout,
            attention_type=model_args.attention_type,
        )
    except (ValueError, TypeError) as error:
        # "LuongGruConfig: `hidden_size` must be ..." names the field: say it as the flag it came from.
        message = str(error).removeprefix("LuongGruConfig: ").replace("`", "")
        raise UsageError(f"bad model arguments: {message.rstrip('.')}") from None


@contextmanager
def guarded_output_dir(training_args: LuongGruTrainingArguments):
    """Claims `--output_dir` (see `data_scripts.output_dir.claim_output_dir`) and holds its lock while training.

    Only the main process claims and locks it: with torchrun the others write into the same folder under that lock.
    """
    if training_args.process_index != 0:
        yield
        return
    try:
        created = claim_output_dir(
            training_args.output_dir, overwrite=training_args.overwrite_output_dir, tool="train.py"
        )
        with output_dir_lock(training_args.output_dir, "train.py"):
            try:
                yield
            finally:
                remove_created_folders(created)  # only those holding nothing but the marker: a refused run's
    except OutputDirError as error:
        raise UsageError(str(error).replace(OVERWRITE_FLAG, "--overwrite_output_dir")) from None


def check_resume_matches(checkpoint: str | None, model_args: ModelArguments, vocab_size: int) -> None:
    """Refuses to resume a checkpoint whose model differs from the one the arguments describe, naming each flag."""
    if checkpoint is None:
        return
    saved = json.loads(Path(checkpoint, "config.json").read_text(encoding="utf-8"))
    # What shapes the weights or the attention; dropout does neither, so another one may be resumed with.
    wanted = {key: getattr(model_args, key) for key in ("hidden_size", "encoder_layers", "decoder_layers")}
    wanted.update(attention_type=model_args.attention_type, vocab_size=vocab_size)
    differ = [
        f"{'the dataset vocabulary' if key == 'vocab_size' else '--' + key} {value} (checkpoint: {saved.get(key)})"
        for key, value in wanted.items()
        if saved.get(key) != value
    ]
    if differ:
        raise UsageError(
            f"{checkpoint}: cannot resume with other model arguments than the checkpoint's: {', '.join(differ)}"
        )


def check_token_ids(dataset_dir: str, splits: dict[str, Any], vocab_size: int) -> None:
    """Refuses splits with a token id outside the tokenizer's vocabulary, or with no pairs."""
    import pyarrow.compute as pc

    for name, split in splits.items():
        if not len(split):
            raise UsageError(f"{dataset_dir}/dataset: the {name} split is empty; rebuild with more pairs in it")
        for column in ("input_ids", "labels"):
            largest = pc.max(pc.list_flatten(split.data.column(column))).as_py()
            if largest is not None and largest >= vocab_size:
                raise UsageError(
                    f"{dataset_dir}: the {name} split's {column} hold token id {largest}, but the tokenizer has only "
                    f"{vocab_size} tokens: dataset/ and tokenizer/ are not from the same build"
                )


# ---------------------------------------------------------------------------------------------------------------------
# The Trainer subclass: the tutorial's loss and optimizer.
# ---------------------------------------------------------------------------------------------------------------------
def optimizer_param_groups(model: PreTrainedModel, learning_rate: float, decoder_lr_ratio: float) -> list[dict]:
    """Splits the trainable parameters into the tutorial's encoder and decoder optimizers, as two Adam groups.

    The tutorial gives the shared embedding to both of its optimizers, so it gets two Adam updates per step (at lr
    and at lr x ratio). Here it sits only in the decoder group: one update at the larger rate, the closer choice.

    Args:
        model (`PreTrainedModel`): the model; `get_encoder()` must return its encoder module.
        learning_rate (`float`): the encoder group's learning rate.
        decoder_lr_ratio (`float`): the decoder group's learning rate is `learning_rate * decoder_lr_ratio`.

    Returns:
        `list[dict]`: `[encoder group, decoder group]`, each parameter in exactly one, for `torch.optim.Adam`.
    """
    encoder = model.get_encoder()
    if encoder is model or encoder is model.base_model:
        raise ValueError(f"{type(model).__name__}.get_encoder() did not find an encoder module")
    embedding = model.get_input_embeddings().weight
    encoder_ids = {id(p) for p in encoder.parameters()} - {id(embedding)}
    trainable = [p for p in model.parameters() if p.requires_grad]  # parameters() lists a shared tensor once
    return [
        {"name": "encoder", "params": [p for p in trainable if id(p) in encoder_ids], "lr": learning_rate},
        {
            "name": "decoder",
            "params": [p for p in trainable if id(p) not in encoder_ids],
            "lr": learning_rate * decoder_lr_ratio,
        },
    ]


@contextmanager
def _forward_runs(module: torch.nn.Module, function):
    """Temporarily makes `function` the module's forward, so a wrapper calling the module ends up running it."""
    previous = module.__dict__.get("forward")  # accelerate may have set an instance-level forward already
    module.forward = function
    try:
        yield
    finally:
        if previous is None:
            del module.forward
        else:
            module.forward = previous


class LuongGruTrainer(Trainer):
    """`Trainer` with the tutorial's masked NLL, teacher-forcing draw and two-rate Adam.

    Overrides only `compute_loss` (the loss) and `create_optimizer` (the parameter groups). The loss of each
    micro-batch is the sum of its token NLLs divided by `num_items_in_batch`, the number of target tokens in the whole
    accumulated (and, with several processes, gathered) batch, so gradient accumulation and data parallelism give the
    gradient of the token-mean NLL of the full batch.
    """

    # compute_loss divides by num_items_in_batch itself, so training_step must not divide again by the accumulation.
    loss_is_scaled_for_ga = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The model's forward takes no loss kwargs; this makes the Trainer count the target tokens of each accumulated
        # batch (across processes too) and hand the count to compute_loss as num_items_in_batch.
        self.model_accepts_loss_kwargs = True

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """The tutorial's Adam (no decoupled weight decay), with the decoder group at `lr * decoder_lr_ratio`."""
        if self.optimizer is None:
            groups = optimizer_param_groups(
                self.model if model is None else model, self.args.learning_rate, self.args.decoder_lr_ratio
            )
            self.optimizer = torch.optim.Adam(
                groups,
                lr=self.args.learning_rate,
                betas=(self.args.adam_beta1, self.args.adam_beta2),
                eps=self.args.adam_epsilon,
                weight_decay=self.args.weight_decay,
                # One kernel over all parameters instead of a loop of small ops: the same update, faster.
                fused=self.args.device.type in ("cpu", "cuda"),
            )
        return self.optimizer

    def training_label_smoothing(self, model: torch.nn.Module) -> float:
        """`--label_smoothing_factor` while training; evaluation always scores the plain NLL (a true perplexity)."""
        return self.args.label_smoothing_factor if model.training else 0.0

    def teacher_forcing_this_step(self) -> bool:
        """Draws the tutorial's once-per-batch teacher-forcing coin for the current optimizer step.

        The draw is a function of (seed, step): every micro-batch and every process of a step agree, and a resumed
        run repeats the draws of an uninterrupted one without any RNG state in the checkpoint.
        """
        ratio = self.args.teacher_forcing_ratio
        return ratio >= 1.0 or random.Random(f"{self.args.seed}:{self.state.global_step}").random() < ratio

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Masked NLL of the target tokens, teacher forced or fed with the model's own greedy output.

        Evaluation is always teacher forced. With `return_outputs`, the outputs hold `token_nll` (B, T), the NLL of
        each target token (0 at padding), from which `token_perplexity` computes the exact token-weighted metrics.
        """
        labels = inputs["labels"]  # (B, T), -100 at padding
        mask = labels.ne(-100)  # (B, T)
        num_tokens = mask.sum()
        with self.accelerator.autocast():
            if not model.training or self.teacher_forcing_this_step():
                # The model's own forward: it packs the decoder by the labels and runs lm_head on real tokens only.
                outputs = model(**inputs, use_cache=False)
                nll_sum = outputs.loss * num_tokens  # the model's loss is the token mean
            else:
                outputs = self._run_through_wrapper(model, self._free_running_logits, **inputs)
                nll_sum = F.cross_entropy(outputs.logits[mask].float(), labels[mask], reduction="sum")
        smoothing = self.training_label_smoothing(model)
        if smoothing:  # the training loss only: evaluation keeps the plain NLL, a true perplexity
            nll_sum = F.cross_entropy(
                outputs.logits[mask].float(), labels[mask], reduction="sum", label_smoothing=smoothing
            )
        if num_items_in_batch is None:
            loss = nll_sum / num_tokens.clamp(min=1)
        else:
            loss = nll_sum / num_items_in_batch
            if self.args.average_tokens_across_devices and self.args.world_size > 1:
                # num_items_in_batch counts the tokens of all processes while DDP averages their gradients.
                loss = loss * self.args.world_size
        if not return_outputs:
            return loss
        token_nll = F.cross_entropy(outputs.logits[mask].float(), labels[mask], reduction="none")  # (N,)
        return loss, {"token_nll": torch.zeros_like(labels, dtype=token_nll.dtype).masked_scatter(mask, token_nll)}

    def _run_through_wrapper(self, model: torch.nn.Module, step, **inputs) -> Seq2SeqLMOutput:
        unwrapped = self.accelerator.unwrap_model(model)
        if model is unwrapped:
            return step(unwrapped, **inputs)
        # DDP all-reduces gradients only in a backward whose forward ran through its wrapper: route `step` there.
        with _forward_runs(unwrapped, lambda **kwargs: step(unwrapped, **kwargs)):
            return model(**inputs)

    @staticmethod
    def _free_running_logits(model: PreTrainedModel, input_ids, attention_mask, labels, **_) -> Seq2SeqLMOutput:
        """The tutorial's teacher forcing "off": the decoder fed its own greedy choices, logits `(B, T, V)`."""
        return Seq2SeqLMOutput(
            logits=model.forward_free_running(input_ids, attention_mask, max_target_length=labels.size(1))
        )


def token_perplexity(eval_prediction: EvalPrediction) -> dict[str, float]:
    """Token-weighted validation NLL and perplexity from the per-token NLLs returned by `compute_loss`.

    (The Trainer's own `eval_loss` is the mean of per-batch means, which weighs short batches more.)
    """
    token_nll, labels = eval_prediction.predictions, eval_prediction.label_ids  # (N_examples, T) each
    nll = float(token_nll[labels != -100].astype("float64").mean())
    return {"nll": nll, "perplexity": math.exp(nll)}


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints and the final model folder.
# ---------------------------------------------------------------------------------------------------------------------
def _torch_file_is_whole(path: Path) -> bool:
    """Whether a `torch.save` file (a zip) is complete: a cut-off one has no central directory at its end."""
    return not path.exists() or zipfile.is_zipfile(path)


def checkpoint_is_complete(path: str | os.PathLike) -> bool:
    """Whether a `checkpoint-N` folder was fully written.

    The Trainer writes a checkpoint in place, in this order: config and weights, optimizer and scheduler, RNG states,
    and last `trainer_state.json`. A run killed mid-save leaves a folder without a readable `trainer_state.json`; a
    full disk or a copy cut short can also leave truncated weights, optimizer or RNG files.
    """
    try:
        state = json.loads(Path(path, "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    torch_files = [Path(path, name) for name in ("optimizer.pt", "scheduler.pt")] + list(Path(path).glob("rng_state*"))
    return (
        isinstance(state, dict)
        and Path(path, "config.json").is_file()
        and safetensors_is_whole(Path(path, "model.safetensors"))
        and all(_torch_file_is_whole(file) for file in torch_files)
    )


def resolve_checkpoint(resume_from_checkpoint: str | None, output_dir: str) -> str | None:
    """Turns `--resume_from_checkpoint` (a path, `True` for the latest complete one, or unset) into a path."""
    if resume_from_checkpoint is None or resume_from_checkpoint.lower() in ("false", "none", ""):
        return None
    if resume_from_checkpoint.lower() != "true":
        if not checkpoint_is_complete(resume_from_checkpoint):
            raise UsageError(
                f"{resume_from_checkpoint}: not a complete checkpoint (a missing or truncated trainer_state.json, "
                "weights, optimizer or RNG state)"
            )
        return resume_from_checkpoint
    steps = sorted(
        (int(p.name.split("-")[1]), p)
        for p in Path(output_dir).glob("checkpoint-*")
        if p.is_dir() and p.name.split("-")[1].isdigit()
    )
    for _, path in reversed(steps):
        if checkpoint_is_complete(path):
            return str(path)
        logger.warning(
            "Skipping %s: it was cut off while being written (a missing or truncated trainer_state.json, weights, "
            "optimizer or RNG state); trying the one before",
            path,
        )
    raise UsageError(f"{output_dir}: no complete checkpoint-N folder to resume from")


def commit_folder_contents(staging: str, output_dir: str) -> None:
    """Moves the files of `staging` into `output_dir` so that a crash never leaves a loadable mix of old and new.

    `from_pretrained` needs config.json: the old one goes first and the new one comes last, so a crash in between
    leaves a folder that fails to load loudly rather than old weights with a new config (or the reverse).
    """
    config = os.path.join(output_dir, "config.json")
    if os.path.exists(config):
        os.remove(config)
    for name in sorted(os.listdir(staging), key=lambda name: name == "config.json"):  # save_pretrained writes files
        os.replace(os.path.join(staging, name), os.path.join(output_dir, name))
    os.rmdir(staging)


def give_default_modes(folder: str) -> None:
    """Gives the files of `folder` the mode of any new file (0644 under umask 022), whoever wrote them."""
    mode = default_file_mode()
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            os.chmod(entry.path, mode)


class DefaultFileModes(TrainerCallback):
    """Gives each new checkpoint's files the usual mode: transformers writes the weights 0600, via a temp file."""

    def on_save(self, args: TrainingArguments, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if state.is_world_process_zero and os.path.isdir(folder):
            give_default_modes(folder)


def save_final_model(trainer: LuongGruTrainer, extra_files: dict[str, str]) -> None:
    """Writes the model, tokenizer, modeling code and `extra_files` (name -> text) into the output folder, atomically.

    Everything is written into a temporary folder beside the checkpoints, then moved in by `commit_folder_contents`.
    """
    output_dir = trainer.args.output_dir
    model = trainer.accelerator.unwrap_model(trainer.model)
    for stale in Path(output_dir).glob(".final-model-*"):  # left by a run killed while saving
        shutil.rmtree(stale)
    staging = tempfile.mkdtemp(prefix=".final-model-", dir=output_dir)
    model.save_pretrained(staging)  # with the modeling code and auto_map (see build_model)
    trainer.processing_class.save_pretrained(staging)
    for name, text in extra_files.items():
        Path(staging, name).write_text(text, encoding="utf-8")
    give_default_modes(staging)
    commit_folder_contents(staging, output_dir)
    logger.info("Saved the final model to %s", output_dir)


def push_final_model(output_dir: str, args: LuongGruTrainingArguments, commit_message: str):
    """Pushes the final model's top-level files (see `HUB_FILE_SUFFIXES`) to `args.hub_model_id` in one commit."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=args.hub_token)
    repo_id = api.create_repo(args.hub_model_id, private=args.hub_private_repo, exist_ok=True).repo_id
    operations = [
        CommitOperationAdd(path_in_repo=entry.name, path_or_fileobj=entry.path)
        for entry in sorted(os.scandir(output_dir), key=lambda entry: entry.name)
        if entry.is_file() and entry.name.endswith(HUB_FILE_SUFFIXES)
    ]
    info = api.create_commit(repo_id, operations, commit_message=commit_message, revision=args.hub_revision)
    logger.info("Pushed %d files to %s", len(operations), info.commit_url)
    return info


# ---------------------------------------------------------------------------------------------------------------------
# Model card.
# ---------------------------------------------------------------------------------------------------------------------
def render_model_card(
    model_name: str,
    repo_id: str,
    eval_metrics: dict[str, float],
    conversation: list[dict[str, str]],
    hyperparameters: dict[str, Any],
    training: dict[str, Any],
    dataset_stats: dict[str, Any],
    recipe: str = "train.py's built-in defaults (the tutorial's)",
    validation_curve: list[dict[str, Any]] | None = None,
    decoding: str = "greedy",
    comparison: dict[str, Any] | None = None,
) -> str:
    """Renders `model_card.md` with YAML metadata (license, language, library, tags, datasets, model-index).

    Args:
        model_name (`str`): the model's name in the card and its model-index.
        repo_id (`str`): what the usage snippet passes to `from_pretrained` (a Hub id or a local folder).
        eval_metrics (`dict[str, float]`): the final validation metrics (`eval_nll`, `eval_perplexity`, ...).
        conversation (`list[dict[str, str]]`): the sample conversation, `{"prompt": ..., "reply": ...}` items.
        hyperparameters (`dict[str, Any]`): name -> value, shown as a table.
        training (`dict[str, Any]`): steps, final training loss, wall time and device.
        dataset_stats (`dict[str, Any]`): the builder's stats.json (empty if unknown).
        recipe (`str`, *optional*): the name of the recipe that trained the model.
        validation_curve (`list[dict]`, *optional*): every evaluation's `step`, `nll`, `perplexity` and `best`.
        decoding (`str`, *optional*, defaults to `"greedy"`): the saved generation config's decoding settings.
        comparison (`dict`, *optional*): `quality_benchmark_summary()`, the recipes' test metrics side by side.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    common = {
        "task_type": "text2text-generation",
        "task_name": "Dialogue response generation",
        "dataset_type": CORNELL_DATASET_ID,
        "dataset_name": "Cornell Movie-Dialogs Corpus",
        "dataset_split": "validation",
    }
    card_data = ModelCardData(
        model_name=model_name,
        language="en",
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="text2text-generation",
        tags=["seq2seq", "gru", "luong-attention", "chatbot", "pytorch-chatbot-tutorial", "luong_gru"],
        datasets=[CORNELL_DATASET_ID],
        metrics=["perplexity"],
        eval_results=[
            EvalResult(**common, metric_type="perplexity", metric_value=round(eval_metrics["eval_perplexity"], 3)),
            EvalResult(
                **common, metric_type="loss", metric_name="Token NLL", metric_value=round(eval_metrics["eval_nll"], 4)
            ),
        ],
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(MODEL_CARD_TEMPLATE),
        repo_id=repo_id,
        eval_metrics=eval_metrics,
        conversation=conversation,
        hyperparameters=hyperparameters,
        training=training,
        dataset_stats=dataset_stats,
        model_name=model_name,
        recipe=recipe,
        validation_curve=validation_curve or [],
        decoding=decoding,
        comparison=comparison,
    )
    # The template's optional sections leave runs of blank lines where they render nothing.
    return re.sub(r"\n{3,}", "\n\n", str(card)).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------------
def _reusable_build(build_dir: str, data_args: DataArguments) -> dict[str, Any] | None:
    """The stats of the complete build in `build_dir` if it is of the same corpus files with the same arguments."""
    corpus = data_args.corpus_dir or default_corpus_cache() / CORPUS_FOLDER
    try:
        stats = check_build(build_dir)
        identity = corpus_identity(corpus)
    except (OSError, ValueError):
        return None
    # What train.py builds with: its own filters, the builder's defaults for the rest.
    wanted = {"max_length": data_args.max_length, "min_count": data_args.min_count, "corpus": identity}
    wanted.update(
        train_max_length=data_args.train_max_length or data_args.max_length,
        train_max_unknown=data_args.train_max_unknown,
    )
    wanted.update(seed=0, validation_size=0.05, test_size=0.05)
    return stats if all(stats.get(key) == value for key, value in wanted.items()) else None


def prepare_dataset_dir(data_args: DataArguments, training_args: LuongGruTrainingArguments) -> str:
    """Returns the built dataset's folder, first building it from `--corpus-dir` (or the downloaded corpus).

    A build already in the build folder is reused only when it is complete and was made from the same corpus files
    (path, sizes, modification times) with the same arguments.
    """
    if data_args.dataset_dir is not None:
        if data_args.corpus_dir is not None:
            raise UsageError("give --dataset-dir (a built dataset) or --corpus-dir (the raw corpus), not both")
        return data_args.dataset_dir
    if data_args.corpus_dir is not None and not os.path.exists(data_args.corpus_dir):
        raise UsageError(f"{data_args.corpus_dir}: no such corpus folder or zip")
    build_dir = data_args.build_dir or os.path.join(training_args.output_dir, "data")
    # One process per machine builds it while the others wait, then all load it.
    with training_args.main_process_first(desc="building the dataset"):
        if training_args.local_process_index != 0:
            return build_dir
        reused = _reusable_build(build_dir, data_args)
        if reused is not None:
            logger.info("Reusing the dataset built in %s from %s", build_dir, reused["corpus"]["path"])
            return build_dir
        try:  # without a corpus, build_dataset downloads the official one (once, into ~/.cache/luong-chatbot)
            stats = build_dataset(
                data_args.corpus_dir,
                build_dir,
                max_length=data_args.max_length,
                min_count=data_args.min_count,
                train_max_length=data_args.train_max_length,
                train_max_unknown=data_args.train_max_unknown,
                overwrite_output_dir=training_args.overwrite_output_dir,
            )
        except ValueError as error:  # a malformed corpus, a failed download, bad sizes, a refused folder
            raise UsageError(str(error).replace(OVERWRITE_FLAG, "--overwrite_output_dir")) from error
        logger.info("Built the dataset in %s: %s", build_dir, json.dumps(stats))
    return build_dir


def trains_on_unknown_words(dataset_dir: str) -> bool:
    """Whether the build's train split may hold `<unk>` (`--train_max_unknown` above 0)."""
    return check_build(dataset_dir).get("train_max_unknown", 0) > 0


def load_data(dataset_dir: str):
    """Loads the train and validation splits (token ids only) and the tokenizer of a complete build."""
    from datasets import DatasetDict, load_from_disk

    try:
        check_build(dataset_dir)
        dataset = load_from_disk(os.path.join(dataset_dir, "dataset"))
        tokenizer = AutoTokenizer.from_pretrained(os.path.join(dataset_dir, "tokenizer"))
    except (OSError, ValueError, IndexError) as error:  # IndexError: datasets cannot load a saved empty split
        message = " ".join(str(error).split()) if not isinstance(error, IndexError) else "a split with no rows"
        raise UsageError(f"{dataset_dir}: not a dataset built by data_scripts.build_dataset ({message})") from error
    if not isinstance(dataset, DatasetDict) or not {"train", "validation"} <= set(dataset):
        raise UsageError(f"{dataset_dir}/dataset: expected a DatasetDict with train and validation splits")
    columns = ["input_ids", "labels"]  # the text and id columns would only be dropped by the Trainer
    for name in ("train", "validation"):
        missing = [column for column in columns if column not in dataset[name].column_names]
        if missing:
            raise UsageError(f"{dataset_dir}/dataset: the {name} split has no {' or '.join(missing)} column")
    splits = {name: dataset[name].select_columns(columns) for name in ("train", "validation")}
    check_token_ids(dataset_dir, splits, len(tokenizer))
    return splits["train"], splits["validation"], tokenizer


def build_trainer(
    model: LuongGruForConditionalGeneration,
    args: LuongGruTrainingArguments,
    train_dataset,
    eval_dataset,
    tokenizer,
    callbacks: list | None = None,
) -> LuongGruTrainer:
    """The `LuongGruTrainer` of a run: padded seq2seq batches (-100 labels) and the token-weighted perplexity."""
    return LuongGruTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100),
        processing_class=tokenizer,
        compute_metrics=token_perplexity,
        callbacks=callbacks,
    )


def build_model(
    model_args: ModelArguments, tokenizer, suppress_unknown: bool = False
) -> LuongGruForConditionalGeneration:
    """A new model sized by the recipe, with its decoding; `suppress_unknown`: never generate `<unk>`."""
    config = LuongGruConfig(
        vocab_size=len(tokenizer),
        hidden_size=model_args.hidden_size,
        encoder_layers=model_args.encoder_layers,
        decoder_layers=model_args.decoder_layers,
        dropout=model_args.dropout,
        embedding_dropout=model_args.embedding_dropout,
        output_dropout=model_args.output_dropout,
        tie_lm_head=model_args.tie_lm_head,
        attention_type=model_args.attention_type,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
    )
    # `import modeling_seq2seq` marked these classes for register_for_auto_class: save_pretrained copies the modeling
    # files and writes auto_map, so the saved folder (and its Hub copy) loads with trust_remote_code=True.
    model = LuongGruForConditionalGeneration(config)
    apply_default_decoding(model, model_args)
    if suppress_unknown:  # it was trained to predict <unk> for rare words, which is no reply to show
        model.generation_config.suppress_tokens = [tokenizer.unk_token_id]
    return model


def default_decoding(model_args: ModelArguments) -> dict[str, Any]:
    """The recipe's decoding settings that differ from greedy search, as `GenerationConfig` attributes."""
    settings = {"num_beams": model_args.generation_num_beams}
    if model_args.generation_num_beams > 1:
        settings["length_penalty"] = model_args.generation_length_penalty
    if model_args.generation_no_repeat_ngram_size:
        settings["no_repeat_ngram_size"] = model_args.generation_no_repeat_ngram_size
    if model_args.generation_do_sample:
        settings.update(
            do_sample=True, top_p=model_args.generation_top_p, temperature=model_args.generation_temperature
        )
    return settings


def apply_default_decoding(model: PreTrainedModel, model_args: ModelArguments) -> None:
    """Writes the recipe's decoding into the model's generation config, which `save_pretrained` saves with it."""
    for name, value in default_decoding(model_args).items():
        setattr(model.generation_config, name, value)
    model.generation_config.validate(strict=True)  # a bad combination fails now, not after training


def recipe_callbacks(args: LuongGruTrainingArguments) -> list[TrainerCallback]:
    """Early stopping on the validation metric when the recipe asks for it (the tutorial's recipe never stops)."""
    if not args.early_stopping_patience:
        return []
    return [EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience)]


def describe_run(trainer: LuongGruTrainer, model_args: ModelArguments) -> dict[str, Any]:
    """The hyperparameters shown in the model card."""
    args = trainer.args
    model = trainer.accelerator.unwrap_model(trainer.model)
    batch = args.per_device_train_batch_size
    return {
        "batch size (per device x processes x accumulation)": (
            f"{batch} x {args.world_size} x {args.gradient_accumulation_steps} = "
            f"{batch * args.world_size * args.gradient_accumulation_steps}"
        ),
        "training steps (at most)": args.max_steps if args.max_steps > 0 else f"{args.num_train_epochs:g} epochs",
        "optimizer": f"Adam(betas=({args.adam_beta1}, {args.adam_beta2}), eps={args.adam_epsilon}, "
        f"weight_decay={args.weight_decay})",
        "learning rate: encoder": args.learning_rate,
        "learning rate: decoder, shared embedding, output layer": args.learning_rate * args.decoder_lr_ratio,
        "learning-rate schedule": str(args.lr_scheduler_type.value),
        "gradient clipping (global norm)": args.max_grad_norm,
        "teacher forcing ratio": args.teacher_forcing_ratio,
        "hidden size": model_args.hidden_size,
        "encoder / decoder GRU layers": f"{model_args.encoder_layers} / {model_args.decoder_layers}",
        "dropout between GRU layers": model_args.dropout,
        "embedding dropout": (
            f"{model_args.dropout} (decoder only)"
            if model_args.embedding_dropout is None
            else model_args.embedding_dropout
        ),
        "dropout before lm_head": model_args.output_dropout,
        "lm_head tied to the embedding": model_args.tie_lm_head,
        "label smoothing (training loss only)": args.label_smoothing_factor,
        "warmup (steps, or share of the steps when < 1)": args.warmup_steps,
        "early stopping patience (evaluations; 0: off)": args.early_stopping_patience,
        "attention": model_args.attention_type,
        "vocabulary (with 4 special tokens)": model.config.vocab_size,
        "parameters": f"{model.num_parameters():,}",
        "checkpoint every (steps)": args.save_steps,
        "seed": args.seed,
    }


def finish(trainer: LuongGruTrainer, model_args: ModelArguments, dataset_dir: str, train_metrics: dict) -> None:
    """On the main process: sample conversation, eval_results.json, model card, atomic final save, Hub push."""
    args = trainer.args
    evaluations = [log for log in trainer.state.log_history if "eval_nll" in log]
    already_evaluated = evaluations and evaluations[-1]["step"] == trainer.state.global_step
    if already_evaluated and not args.load_best_model_at_end:  # else the weights may be an earlier checkpoint's
        eval_metrics = {key: value for key, value in evaluations[-1].items() if key.startswith("eval_")}
    else:
        eval_metrics = trainer.evaluate()
    if not trainer.is_world_process_zero():
        return
    model = trainer.accelerator.unwrap_model(trainer.model).eval()
    replies = generate_replies(model, trainer.processing_class, TUTORIAL_PROMPTS)
    conversation = [
        {"prompt": prompt, "reply": reply} for prompt, reply in zip(TUTORIAL_PROMPTS, replies, strict=True)
    ]
    logger.info("Sample conversation: %s", json.dumps(conversation))
    history = [log for log in trainer.state.log_history if "eval_nll" in log]  # now with the final evaluation
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    training = {
        "steps": trainer.state.global_step,
        "final_training_loss": losses[-1] if losses else None,
        "runtime_s": round(train_metrics.get("train_runtime", float("nan")), 1),
        "device": f"{args.world_size} x {args.device.type}",
    }
    stats_path = Path(dataset_dir, "stats.json")
    card = render_model_card(
        model_name=(args.hub_model_id or Path(args.output_dir).resolve().name).split("/")[-1],
        repo_id=args.hub_model_id or args.output_dir,
        eval_metrics=eval_metrics,
        conversation=conversation,
        hyperparameters=describe_run(trainer, model_args),
        training=training,
        dataset_stats=json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.is_file() else {},
        **recipe_card_sections(trainer, evaluations),
    )
    results = {"step": trainer.state.global_step, **eval_metrics, "history": history}
    save_final_model(
        trainer,
        {
            "eval_results.json": json.dumps(results, indent=2) + "\n",
            "sample_conversation.json": json.dumps(conversation, indent=2) + "\n",
            "README.md": card,
        },
    )
    print(f"\nValidation perplexity {eval_metrics['eval_perplexity']:.2f} after {trainer.state.global_step} steps.")
    print(f"Sample conversation (replies to the tutorial's prompts, decoding {decoding_summary(model)}):")
    for turn in conversation:
        print(f"> {turn['prompt']}\nBot: {turn['reply']}")
    if args.push_to_hub:
        message = f"Step {trainer.state.global_step}: validation perplexity {eval_metrics['eval_perplexity']:.2f}"
        push_final_model(args.output_dir, args, message)


def decoding_summary(model: PreTrainedModel) -> str:
    """The saved generation config's decoding settings in one line, e.g. `num_beams=5, no_repeat_ngram_size=3`."""
    settings = {key: value for key, value in model.generation_config.to_diff_dict().items() if key in DECODING_KEYS}
    return ", ".join(f"{key}={value}" for key, value in settings.items()) or "greedy"


def recipe_card_sections(trainer: LuongGruTrainer, evaluations: list[dict[str, Any]]) -> dict[str, Any]:
    """The model card's recipe name, validation curve, decoding settings and the recipes' benchmark comparison.

    `evaluations` are the training run's evaluations (not the final re-evaluation of the best checkpoint).
    """
    args = trainer.args
    best_step = None
    if args.load_best_model_at_end and trainer.state.best_model_checkpoint:
        best_step = int(Path(trainer.state.best_model_checkpoint).name.split("-")[-1])
    curve = [
        {
            "step": log["step"],
            "nll": log["eval_nll"],
            "perplexity": log["eval_perplexity"],
            "best": log["step"] == best_step,
        }
        for log in evaluations
    ]
    return {
        "recipe": args.recipe or "train.py's built-in defaults (the tutorial's)",
        "validation_curve": curve,
        "decoding": decoding_summary(trainer.accelerator.unwrap_model(trainer.model)),
        "comparison": quality_benchmark_summary(),
    }


def quality_benchmark_summary(path: Path = QUALITY_BENCHMARK) -> dict[str, Any] | None:
    """Test metrics of the tutorial's and the default recipe from bench/bench_quality.py's results, if present."""
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
        means = results["summary"]["test_means"]
        return {
            "budget_s": results["protocol"]["budget_s"],
            "seeds": results["protocol"]["seeds"],
            "recipes": results["protocol"]["recipes"],
            "tutorial": means["tutorial"],
            "default": means["default"],
        }
    except (OSError, ValueError, KeyError):  # not a checkout, or no real run yet
        return None


def release_ddp_wrapper(trainer: LuongGruTrainer) -> None:
    """Frees the DDP wrapper while the process group is still registered, so that `trainer.end()` frees the group.

    Otherwise the wrapper's reducer drops the last reference to the gloo group at interpreter exit, from a destructor
    that holds the GIL; the group's destructor then waits for gloo's worker thread, which waits for the GIL to free
    its last tensor: a deadlock (pytorch/pytorch#56297) that hung about a third of the `torchrun` test's runs here.
    Freed now, the reducer only lets go of the group, and `destroy_process_group` frees it with the GIL released.
    """
    torch.distributed.barrier()  # every rank is done with the group
    wrapper = weakref.ref(trainer.model_wrapped)
    trainer.accelerator.free_memory()  # accelerate's references to the wrapper and the optimizer
    trainer.model_wrapped = trainer.model
    gc.collect()
    if wrapper() is not None and wrapper() is not trainer.model:
        logger.warning("The DDP wrapper is still referenced: exiting may hang (pytorch/pytorch#56297)")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring. Returns the exit code (2 for bad input)."""
    with ExitStack() as output_dir_guard:
        try:
            data_args, model_args, training_args = parse_args(argv)
            logging.basicConfig(
                format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                level=logging.INFO if training_args.should_log else logging.WARNING,
            )
            validate_arguments(model_args, training_args)
            if training_args.push_to_hub and not training_args.hub_model_id:
                raise UsageError("--push_to_hub needs --hub_model_id NAME")
            if training_args.n_gpu > 1:
                # Trainer would use nn.DataParallel, which cannot run the custom loss paths; torchrun gives DDP.
                logger.warning("Using 1 of %d GPUs: launch with torchrun to use them all", training_args.n_gpu)
                training_args._n_gpu = 1
            output_dir_guard.enter_context(guarded_output_dir(training_args))  # held until training ends
            checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, training_args.output_dir)
            dataset_dir = prepare_dataset_dir(data_args, training_args)
            train_dataset, eval_dataset, tokenizer = load_data(dataset_dir)
            check_resume_matches(checkpoint, model_args, len(tokenizer))
        except UsageError as error:
            print(f"train.py: error: {error}", file=sys.stderr)
            return 2
        set_seed(training_args.seed)
        try:
            model = build_model(model_args, tokenizer, suppress_unknown=trains_on_unknown_words(dataset_dir))
        except ValueError as error:  # a bad config value or decoding combination
            print(f"train.py: error: {' '.join(str(error).split())}", file=sys.stderr)
            return 2
        callbacks = [DefaultFileModes(), *recipe_callbacks(training_args)]
        trainer = build_trainer(model, training_args, train_dataset, eval_dataset, tokenizer, callbacks)
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        finish(trainer, model_args, dataset_dir, train_result.metrics)
        if torch.distributed.is_initialized():
            release_ddp_wrapper(trainer)
        trainer.end()  # destroys the process group
    return 0


if __name__ == "__main__":
    sys.exit(main())
