"""The toy's tokenizer: a byte-level BPE of a few thousand tokens, trained on the stage-0 corpus.

Why not SmolLM2's or Qwen2's (measured, see the README): their 49k / 151k-token output layers cost
most of a tiny model's step, and they split the Chinese, Arabic and Russian colour words into up to
six byte pieces, which a model that sees 4 % of its data in a language rarely learns to spell. A
BPE trained on the six-language easy-VQA text keeps every answer word a single token and the
prompts three to five times shorter.

Words keep the space that *follows* them ("Red circle" -> "Red ", "circle"), where GPT-style
pre-tokenizers attach the space in front (" circle"). Then an answer word is the same token as a
reply ("Red"), as a multiple-choice option ("A. Red" -> "A", ". ", "Red") and at the end of a
question: with tied embeddings, the option the model should name is the very token it would answer.

It is a standard Hugging Face tokenizer: byte-level (any text encodes, nothing is unknown), NFC, the
ChatML special tokens and chat template of the tiny Qwen2 asset, EOS `<|im_end|>`, padding
`<|endoftext|>`, no BOS. `AutoTokenizer.from_pretrained(folder)` loads it.
"""

from __future__ import annotations

import re

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast

from llava.tiny.text_tokenizers import chatml_tokenizer

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# A word with the space after it, one digit, a run of punctuation with the space after it, or whitespace.
PRETOKENIZE_PATTERN = r"""[\p{L}\p{M}]+ ?|\p{N}|[^\s\p{L}\p{N}]+ ?|\s+"""
MAX_LENGTH = 1024


def train_toy_tokenizer(texts: list[str], vocab_size: int, unspaced_words: list[str]) -> PreTrainedTokenizerFast:
    """A byte-level BPE with at most `vocab_size` tokens (specials included), learned from `texts`.

    `unspaced_words` are split out before BPE sees the text, as a dictionary segmenter does for a
    language written without spaces: without it, BPE on templated Chinese learns whole questions
    as single tokens, and the colour word inside them is invisible to the model.
    """
    backend = Tokenizer(BPE(fuse_unk=False, ignore_merges=True))
    backend.normalizer = normalizers.NFC()
    dictionary = "|".join(re.escape(word) for word in sorted(set(unspaced_words), key=len, reverse=True))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            *([pre_tokenizers.Split(Regex(dictionary), behavior="isolated")] if dictionary else []),
            pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return chatml_tokenizer(backend, MAX_LENGTH)
