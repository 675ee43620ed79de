"""Export a Luong-attention GRU chatbot to ONNX: an encoder file and a one-step decoder file for ONNX Runtime.

    python -m modeling_seq2seq.export MODEL_DIR_OR_HUB_ID OUT_DIR [--opset N] [--quantize int8]

`OUT_DIR` then holds everything a deployment needs, and no PyTorch weights:
- `encoder.onnx`: `input_ids`, `attention_mask` (B, S) -> `last_hidden_state` (B, S, H), `final_state` (B, L, H),
  `encoder_attention_mask` (B, S); batch and source length are dynamic;
- `decoder_step.onnx`: `decoder_input_ids` (B, 1), `state` (L, B, H), `encoder_hidden_states` (B, S, H),
  `encoder_attention_mask` (B, S) -> `logits` (B, V), `new_state` (L, B, H); batch and source length are dynamic;
- the tokenizer files, `config.json`, `generation_config.json`, `onnx_export.json` (what was exported, and how);
- `onnx_greedy.py`: a greedy chat loop that needs only `onnxruntime`, `tokenizers` and `numpy`.

The files are traced with `torch.onnx.export(..., dynamo=True)`. The encoder's packed bidirectional GRU is traced
through its exact padded formulation (`LuongGruEncoder._padded_gru`), which `torch.export` can follow.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .configuration_luong_gru import LuongGruConfig
from .modeling_luong_gru import LuongGruForConditionalGeneration

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder_step.onnx"
EXPORT_INFO_FILE = "onnx_export.json"
GREEDY_SCRIPT = "onnx_greedy.py"
ENCODER_INPUTS = ["input_ids", "attention_mask"]
ENCODER_OUTPUTS = ["last_hidden_state", "final_state", "encoder_attention_mask"]
DECODER_INPUTS = ["decoder_input_ids", "state", "encoder_hidden_states", "encoder_attention_mask"]
DECODER_OUTPUTS = ["logits", "new_state"]
# The dynamic axes of each output: the exporter marks some of them static (the GRU's sequence axis, for one).
OUTPUT_AXES = {
    "last_hidden_state": {0: "batch", 1: "source_length"},
    "final_state": {0: "batch"},
    "encoder_attention_mask": {0: "batch", 1: "source_length"},
    "logits": {0: "batch"},
    "new_state": {1: "batch"},
}
QUANTIZE_CHOICES = ("int8",)


class ExportError(Exception):
    """The model cannot be exported or the output folder cannot be written; the message is one line for the user."""


class LuongGruEncoderGraph(nn.Module):
    """The model's encoder with plain tensor outputs, the form `torch.onnx.export` traces."""

    def __init__(self, model: LuongGruForConditionalGeneration):
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.encoder(input_ids, attention_mask)
        return outputs.last_hidden_state, outputs.final_state, outputs.attention_mask  # (B, S, H), (B, L, H), (B, S)


class LuongGruDecoderStepGraph(nn.Module):
    """One decoding step of the model's own decoder and `lm_head`: the previous token and state in, logits out."""

    def __init__(self, model: LuongGruForConditionalGeneration):
        super().__init__()
        self.decoder = model.model.decoder
        self.lm_head = model.lm_head

    def forward(
        self,
        decoder_input_ids: torch.Tensor,
        state: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, new_state, _ = self.decoder(decoder_input_ids, state, encoder_hidden_states, encoder_attention_mask)
        return self.lm_head(features[:, -1]), new_state  # (B, V), (L, B, H)


def example_inputs(config: LuongGruConfig) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Tracing inputs: batch 2 and source length 5 with a padded row, so that neither size is taken as a constant."""
    lengths = torch.tensor([5, 3])
    mask = torch.arange(5)[None] < lengths[:, None]  # (2, 5)
    input_ids = torch.full((2, 5), config.eos_token_id).masked_fill(~mask, config.pad_token_id)  # (2, 5)
    state = torch.zeros(config.decoder_layers, 2, config.hidden_size)  # (L, 2, H)
    encoder_hidden_states = torch.zeros(2, 5, config.hidden_size)  # (2, 5, H)
    decoder_input_ids = torch.full((2, 1), config.decoder_start_token_id)  # (2, 1)
    return (input_ids, mask.long()), (decoder_input_ids, state, encoder_hidden_states, mask)


def export_graph(module: nn.Module, inputs: tuple, path: Path, names: tuple[list, list], dims: tuple, opset: int):
    """`torch.onnx.export(dynamo=True)` of `module`, quiet unless it fails; `dims` gives each input's dynamic axes."""
    input_names, output_names = names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            inputs,
            dynamo=True,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dims,
            verbose=False,
        )
    program.save(str(path))
    name_output_axes(path)


def name_output_axes(path: Path) -> None:
    """
    Names the outputs' dynamic axes. The exporter's recorded intermediate shapes keep the tracing example's source
    length where its GRU translation loses the symbol; they are dropped, and ONNX Runtime infers them again.
    """
    import onnx

    graph_model = onnx.load(str(path))
    del graph_model.graph.value_info[:]
    for output in graph_model.graph.output:
        dims = output.type.tensor_type.shape.dim
        for axis, name in OUTPUT_AXES[output.name].items():
            dims[axis].dim_param = name
    onnx.save(graph_model, str(path))


def export_onnx(
    model_name_or_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    opset: int = 18,
    quantize: str | None = None,
) -> Path:
    """
    Exports a saved [`LuongGruForConditionalGeneration`] and its tokenizer to an ONNX Runtime folder.

    Args:
        model_name_or_path (`str` or `os.PathLike`):
            A folder written by `save_pretrained` (e.g. by `train.py`), or a Hub repository id.
        output_dir (`str` or `os.PathLike`):
            The folder to write. It must be new, empty or an earlier export (which is replaced); the files are
            written to a temporary folder beside it first, so a failed export leaves nothing half-written.
        opset (`int`, *optional*, defaults to 18):
            ONNX opset version.
        quantize (`str`, *optional*):
            `"int8"`: also write `encoder.int8.onnx` and `decoder_step.int8.onnx` (ONNX Runtime dynamic
            quantization of the MatMul and Gather weights; its quantizer leaves GRU weights in fp32).

    Returns:
        `Path`: the output folder.

    Raises:
        `ExportError`: with a one-line message when the model cannot be loaded or exported, or `output_dir` is
        a folder this exporter did not write.
    """
    output_dir = Path(output_dir)
    check_output_dir(output_dir)
    model, tokenizer = load_for_export(str(model_name_or_path))
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        write_export(model, tokenizer, staging, opset, quantize)
        info = {"source": str(model_name_or_path), "opset": opset, "quantize": quantize, "torch": torch.__version__}
        (staging / EXPORT_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        replace_dir(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def check_output_dir(output_dir: Path) -> None:
    """Refuses a file, or a non-empty folder that is not an earlier export: never overwrite a user's files."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ExportError(f"{output_dir}: exists and is not a folder; expected a new or empty output folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / EXPORT_INFO_FILE).is_file():
        raise ExportError(f"{output_dir}: not empty and not an earlier ONNX export; choose a new output folder")


def load_for_export(model_name_or_path: str):
    """The model in eval mode and its tokenizer; anything but a Luong GRU model is an `ExportError`."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(model_name_or_path)
    except (OSError, ValueError, KeyError) as error:
        raise ExportError(f"{model_name_or_path}: no loadable config.json ({first_line(error)})") from error
    if not isinstance(config, LuongGruConfig):
        raise ExportError(
            f"{model_name_or_path}: model_type {config.model_type!r}, expected {LuongGruConfig.model_type!r}: only "
            "Luong GRU chatbots can be exported"
        )
    try:
        model = LuongGruForConditionalGeneration.from_pretrained(model_name_or_path, config=config)
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ExportError(f"{model_name_or_path}: could not load the model ({first_line(error)})") from error
    return model.eval(), tokenizer


def write_export(model: LuongGruForConditionalGeneration, tokenizer, folder: Path, opset: int, quantize: str | None):
    """Writes both graphs, the optional int8 copies, the tokenizer, the configs and the torch-free greedy script."""
    encoder_inputs, decoder_inputs = example_inputs(model.config)
    batch = torch.export.Dim("batch")
    source = torch.export.Dim("source_length")
    graphs = [
        (LuongGruEncoderGraph(model), encoder_inputs, ENCODER_FILE, (ENCODER_INPUTS, ENCODER_OUTPUTS),
         ({0: batch, 1: source}, {0: batch, 1: source})),
        (LuongGruDecoderStepGraph(model), decoder_inputs, DECODER_FILE, (DECODER_INPUTS, DECODER_OUTPUTS),
         ({0: batch}, {1: batch}, {0: batch, 1: source}, {0: batch, 1: source})),
    ]  # fmt: skip
    for module, inputs, name, names, dims in graphs:
        try:
            with torch.no_grad():
                export_graph(module, inputs, folder / name, names, dims, opset)
        except Exception as error:  # the exporter raises many types; the user gets one line either way
            message = f"{type(error).__name__}: {first_line(error)}"
            raise ExportError(f"{name}: torch.onnx.export failed ({message})") from error
        if quantize == "int8":
            quantize_int8(folder / name)
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.copyfile(Path(__file__).with_name(GREEDY_SCRIPT), folder / GREEDY_SCRIPT)


def quantize_int8(path: Path) -> Path:
    """Writes `NAME.int8.onnx` beside `path`: int8 weights for its MatMul and Gather (embedding) ops."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = path.with_suffix(".int8.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(path), str(target), weight_type=QuantType.QInt8)
    return target


def replace_dir(staging: Path, output_dir: Path) -> None:
    """Moves the finished export into place; an earlier export there is moved aside first and then deleted."""
    if output_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.old.", dir=output_dir.parent))
        os.replace(output_dir, old / output_dir.name)
        os.replace(staging, output_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, output_dir)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="luong-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="A model folder written by train.py, or a Hub repository id.")
    parser.add_argument("output_dir", help="The folder to write (new, empty, or an earlier export).")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18).")
    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, help="Also write int8-weight copies of both files.")
    # One line and exit code 2 for a bad flag, like the package's other commands.
    parser.error = lambda message: parser.exit(2, f"error: {message} (see luong-export --help)\n")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    logging.disable(logging.WARNING)  # the exporter's and quantizer's advice is not for the user of this command
    try:
        output_dir = export_onnx(args.model, args.output_dir, opset=args.opset, quantize=args.quantize)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Exported {args.model} to {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
