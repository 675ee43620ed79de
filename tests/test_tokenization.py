"""The normalizer against the tutorial's normalization, and the word-level tokenizer (ids, EOS, UNK, save/reload)."""

import json
import os
import re
import subprocess
import sys
import sysconfig
import textwrap
import unicodedata

import pyarrow as pa
import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from data_scripts.build_dataset import normalize_texts
from data_scripts.cornell import read_lines
from modeling_seq2seq.tokenization_luong_gru import LuongGruTokenizer, build_normalizer, build_word_level_tokenizer

SAMPLE_DIR = os.environ.get("CORNELL_SAMPLE_DIR")


def tutorial_normalize(text: str) -> str:
    """The tutorial's normalization as its text describes it: the reference both implementations must match."""
    text = "".join(c for c in unicodedata.normalize("NFD", text.lower().strip()) if unicodedata.category(c) != "Mn")
    text = re.sub(r"([.!?])", r" \1", text)
    text = re.sub(r"[^a-zA-Z.!?]+", r" ", text)
    return re.sub(r"\s+", r" ", text).strip()


CRAFTED = [
    "",
    "   ",
    "Hello?",
    "Where am I?",
    "  Où es-tu, Jean?! ",
    "Mr.Smith...went home!!?",
    "a.b!c?d",
    "...",
    "?!.",
    "It's 9 o'clock -- 10:30, ok?",
    "123 456",
    "--",
    "\t tab\nnew line\r\x0bvertical\x0cform\x1cfile\x1dgroup\x1erecord\x1funit\x85next\xa0nbsp",
    "\u2028line\u2029para\u3000ideographic space\u200bzero width",
    "ÀÁÂÃÄÅ àáâãäå Ç ç Ñ ñ Ø ø ß Æ æ Œ œ ÿ Ÿ",
    "naïve café résumé coöperate",
    "e\u0301 a\u0300 combining marks after letters, \u0301 and one alone",
    "İstanbul ı ǅ ǈ ǋ ﬁ ﬀ",  # case mappings that grow or have no ASCII image
    "\u212a Kelvin, \u212b Angstrom, \u2126 Ohm",  # singleton decompositions
    "ΣΑΣ σας ς Ωμέγα",
    "Ⅻ ① ＡＢＣ ｆｕｌｌ ｗｉｄｔｈ",  # compatibility forms: NFD leaves them alone
    "日本語のテキスト。",
    "emoji 😀 and 🇫🇷 flags",
    "\ufffd replacement and \xef\xbf\xbd its bytes read as ISO-8859-1",
    "\x97dash\x96 and \xad soft hyphen",
    "x\u0301\u0323y \u1e0b\u0323 canonical reordering",
    "\u0345 ypogegrammeni \u0399\u0345",
]


@pytest.mark.parametrize("text", CRAFTED)
def test_normalizer_matches_the_tutorial_on_crafted_text(text):
    assert build_normalizer().normalize_str(text) == tutorial_normalize(text)


def test_dataset_normalization_matches_the_tutorial_on_crafted_text():
    assert normalize_texts(pa.array(CRAFTED), build_normalizer()).to_pylist() == [
        tutorial_normalize(t) for t in CRAFTED
    ]


def test_normalizer_matches_the_tutorial_on_every_long_assigned_character():
    """Every code point Unicode 3.2 had already assigned, between letters: no Unicode-version drift can reach them.

    Python's `unicodedata` and the tokenizers' tables come from different Unicode versions, so characters assigned
    or re-categorized since may differ (none of them can appear in the ISO-8859-1 corpus).
    """
    old = unicodedata.ucd_3_2_0
    code_points = [
        c
        for c in range(0x110000)
        if not 0xD800 <= c <= 0xDFFF
        and old.category(chr(c)) != "Cn"
        and old.category(chr(c)) == unicodedata.category(chr(c))
    ]
    normalizer = build_normalizer()
    texts = [" ".join(f"a{chr(c)}b" for c in code_points[i : i + 2000]) for i in range(0, len(code_points), 2000)]
    for text in texts:
        assert normalizer.normalize_str(text) == tutorial_normalize(text)
    assert normalize_texts(pa.array(texts), normalizer).to_pylist() == [tutorial_normalize(t) for t in texts]


@pytest.mark.skipif(not SAMPLE_DIR, reason="CORNELL_SAMPLE_DIR is not set")
def test_normalizer_matches_the_tutorial_on_every_sample_utterance():
    texts = list(read_lines(SAMPLE_DIR).values())
    expected = [tutorial_normalize(text) for text in texts]
    normalizer = build_normalizer()
    assert [normalizer.normalize_str(text) for text in texts] == expected
    assert normalize_texts(pa.array(texts), normalizer).to_pylist() == expected


WORDS = ["where", "am", "i", "?", "you", "re", "in", "a", "hospital", "."]


@pytest.fixture
def tokenizer():
    return LuongGruTokenizer.from_words(WORDS)


def test_ids_special_tokens_and_eos(tokenizer):
    assert [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id] == [
        0,
        1,
        2,
        3,
    ]
    assert tokenizer.convert_tokens_to_ids(WORDS) == list(range(4, 4 + len(WORDS)))
    assert tokenizer("Where am I?")["input_ids"] == tokenizer.convert_tokens_to_ids(["where", "am", "i", "?"]) + [2]
    assert tokenizer("You're in a HOSPITAL.")["input_ids"] == [8, 9, 10, 11, 12, 13, 2]
    assert len(tokenizer) == 4 + len(WORDS) and tokenizer.model_max_length == 10


def test_unknown_words_map_to_unk(tokenizer):
    assert tokenizer("where are you, Bob?")["input_ids"] == [4, 3, 8, 3, 7, 2]
    assert tokenizer("")["input_ids"] == [2]


def test_decode_joins_words_with_spaces(tokenizer):
    ids = tokenizer("You're in a hospital.")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "you re in a hospital ."
    assert tokenizer.decode(ids) == "you re in a hospital . </s>"


def test_batch_padding_is_right_with_pad_zero(tokenizer):
    batch = tokenizer(["where am i?", "a"], padding=True)
    assert batch["input_ids"] == [[4, 5, 6, 7, 2], [11, 2, 0, 0, 0]]
    assert batch["attention_mask"] == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]


def test_save_and_reload_with_no_custom_code(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(reloaded, PreTrainedTokenizerFast)
    assert not isinstance(reloaded, LuongGruTokenizer)
    texts = ["Where am I?", "You're in a hospital!", "unknown words here", ""]
    assert reloaded(texts)["input_ids"] == tokenizer(texts)["input_ids"]
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert reloaded.decode([4, 5, 6, 7, 2], skip_special_tokens=True) == "where am i ?"
    assert (reloaded.pad_token, reloaded.bos_token, reloaded.eos_token, reloaded.unk_token) == (
        "<pad>",
        "<s>",
        "</s>",
        "<unk>",
    )


def test_vocabulary_is_checked():
    for words in (["a", "a"], ["<pad>"], [""], ["two words"]):
        with pytest.raises(ValueError, match="vocabulary words must be unique"):
            build_word_level_tokenizer(words)


LOAD_WITHOUT_PACKAGE = textwrap.dedent(
    """
    import importlib.util, json, sys
    # A plain path entry: with -S the .pth files, among them the editable install's finder, are never processed.
    sys.path.append({site_packages!r})
    assert importlib.util.find_spec("modeling_seq2seq") is None, "the package must not be importable here"
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    tokenizer = {loader}
    assert "modeling_seq2seq" not in sys.modules
    print(json.dumps(tokenizer(["Where am I?", "you are in a hospital."])["input_ids"]))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "loader",
    [
        "AutoTokenizer.from_pretrained({model_dir!r}, trust_remote_code=True)",
        "AutoTokenizer.from_pretrained({model_dir!r}, trust_remote_code=False)",
        "PreTrainedTokenizerFast.from_pretrained({model_dir!r})",
    ],
    ids=["auto-trusted", "auto-untrusted", "fast-class"],
)
def test_tokenizer_in_a_model_folder_loads_without_the_package(tokenizer, tmp_path, loader):
    """A trained model's folder (config.json with `auto_map`, and the tokenizer) where the package is not installed.

    No "run custom code?" prompt. Without `trust_remote_code`, transformers 5.24's AutoTokenizer always loads
    config.json through AutoConfig first (before it reads tokenizer_config.json), so its `auto_map` prompts then; with
    `trust_remote_code=False` transformers falls back to a plain config and logs a model-type warning, which is its
    own behaviour, so only the trusted and the direct loads are required to be silent.
    """
    from modeling_seq2seq import LuongGruConfig, LuongGruForConditionalGeneration

    model_dir = tmp_path / "model"
    LuongGruForConditionalGeneration(LuongGruConfig(vocab_size=len(tokenizer), hidden_size=8)).save_pretrained(
        model_dir
    )
    tokenizer.save_pretrained(model_dir)
    script = LOAD_WITHOUT_PACKAGE.format(
        site_packages=sysconfig.get_paths()["purelib"], loader=loader.format(model_dir=str(model_dir))
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "Do you wish to run the custom code" not in output
    if "trust_remote_code=False" not in loader:
        assert "You are using a model of type" not in output
    expected = tokenizer(["Where am I?", "you are in a hospital."])["input_ids"]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected
