"""The word-level tokenizer of the Luong-attention GRU chatbot, built with `tokenizers`.

The normalizer reproduces the PyTorch Chatbot Tutorial's text normalization character for character, so that the
vocabulary built from the Cornell corpus and the words typed at chat time go through exactly the same cleaning.
The tokenizer is saved as a plain `PreTrainedTokenizerFast`: `AutoTokenizer.from_pretrained` loads it without this
package.
"""

from __future__ import annotations

import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"  # the tutorial's SOS: the decoder's first input
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN]  # ids 0, 1, 2, 3; words start at 4


def build_normalizer() -> normalizers.Normalizer:
    """The tutorial's text normalization as a `tokenizers` normalizer pipeline.

    In order: lowercase, strip, NFD, drop combining marks (category Mn), a space before each of `.`, `!` and `?`,
    every run of characters other than ASCII letters and `.!?` becomes one space, strip. The tutorial's final
    whitespace collapse is a no-op here: after the run replacement only single spaces are left.

    Example:

    ```python
    >>> build_normalizer().normalize_str("  Où es-tu, Jean?! ")
    'ou es tu jean ? !'
    ```
    """
    return normalizers.Sequence(
        [
            normalizers.Lowercase(),
            normalizers.Strip(),
            normalizers.NFD(),
            normalizers.Replace(Regex(r"\p{Mn}"), ""),  # exactly `unicodedata.category(c) == "Mn"`
            normalizers.Replace(".", " ."),
            normalizers.Replace("!", " !"),
            normalizers.Replace("?", " ?"),
            normalizers.Replace(Regex(r"[^a-zA-Z.!?]+"), " "),
            normalizers.Strip(),
        ]
    )


def build_word_level_tokenizer(words: list[str]) -> Tokenizer:
    """A `WordLevel` tokenizer over `words` (ids from 4 on, in the given order) after the four special tokens.

    It normalizes with [`build_normalizer`], splits on whitespace, maps unknown words to `<unk>`, appends `</s>` to
    every sequence and decodes by joining the words with single spaces.

    Args:
        words (`list[str]`):
            The vocabulary, already normalized; duplicates and special tokens are rejected.
    """
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in words:
        if word in vocab or not word or " " in word:
            raise ValueError(f"{word!r}: vocabulary words must be unique, non-empty, without spaces or specials")
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK_TOKEN))
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.normalizer = build_normalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    eos_id = vocab[EOS_TOKEN]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS_TOKEN}", pair=f"$A {EOS_TOKEN} $B {EOS_TOKEN}", special_tokens=[(EOS_TOKEN, eos_id)]
    )
    # Words never contain "#" (the normalizer keeps only letters and .!?), so no token is taken as a continuation:
    # this decoder just joins the words with spaces; cleanup=False keeps "i m fine ." as the tutorial prints it.
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return tokenizer


class LuongGruTokenizer(PreTrainedTokenizerFast):
    """The chatbot's word-level tokenizer: a `PreTrainedTokenizerFast` over [`build_word_level_tokenizer`].

    `save_pretrained` records the class as `PreTrainedTokenizerFast`, so the saved folder loads with
    `AutoTokenizer.from_pretrained` and no custom code.

    Example:

    ```python
    >>> tokenizer = LuongGruTokenizer.from_words(["where", "am", "i", "?"])
    >>> tokenizer("Where am I?")["input_ids"]
    [4, 5, 6, 7, 2]
    >>> tokenizer.decode([4, 5, 6, 7, 2], skip_special_tokens=True)
    'where am i ?'
    ```
    """

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, *args, **kwargs):
        for name, token in (("pad_token", PAD_TOKEN), ("bos_token", BOS_TOKEN), ("eos_token", EOS_TOKEN)):
            kwargs.setdefault(name, token)
        kwargs.setdefault("unk_token", UNK_TOKEN)
        super().__init__(*args, **kwargs)

    @classmethod
    def from_words(cls, words: list[str], model_max_length: int = 10) -> LuongGruTokenizer:
        """Builds the tokenizer over a vocabulary.

        Args:
            words (`list[str]`):
                The kept words, normalized, in id order (the first gets id 4).
            model_max_length (`int`, *optional*, defaults to 10):
                The longest sequence in tokens, EOS included: the tutorial's `MAX_LENGTH`.
        """
        return cls(tokenizer_object=build_word_level_tokenizer(words), model_max_length=model_max_length)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> tuple[str, ...]:
        files = super().save_pretrained(save_directory, *args, **kwargs)
        config_file = os.path.join(save_directory, "tokenizer_config.json")
        with open(config_file, encoding="utf-8") as handle:
            config = json.load(handle)
        config["tokenizer_class"] = "PreTrainedTokenizerFast"  # loadable with no custom code
        with open(config_file, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return files
