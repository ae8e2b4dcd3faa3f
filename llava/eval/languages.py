"""The six evaluation languages: codes, names, the answer instruction, and language detection.

Canonical codes are `en zh pt ar tr ru` (the paper's Table 2 order). Benchmark files say `cn` for
Chinese (MMMB_cn, MMBench_dev_cn); `cn` is read as `zh` everywhere.

Detection order: the file or dataset name first (a `_en`, `_cn`/`_zh`, `_pt`, `_ar`, `_tr`,
`_ru` token), then the script of the text (Han -> zh, Arabic -> ar, Cyrillic -> ru; Latin text is
told apart by letters and common words that only Turkish or Portuguese use, else en).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

LANGUAGES: tuple[str, ...] = ("en", "zh", "pt", "ar", "tr", "ru")

LANGUAGE_NAMES: dict[str, str] = {
    "en": "English",
    "zh": "Chinese",
    "pt": "Portuguese",
    "ar": "Arabic",
    "tr": "Turkish",
    "ru": "Russian",
}

def ordered_languages(codes) -> list[str]:
    """The distinct language codes, the six benchmark languages first in the paper's order
    (en, zh, pt, ar, tr, ru), any others after them alphabetically. Every chart and table that lays
    languages out uses this order."""
    present = set(codes)
    return [code for code in LANGUAGES if code in present] + sorted(present - set(LANGUAGES))


def language_label(code: str) -> str:
    """The name a chart shows for a language code (`zh` -> `Chinese`); an unknown code as it is."""
    return LANGUAGE_NAMES.get(code, code)


# The line that closes every multiple-choice prompt, in the item's own language.
ANSWER_INSTRUCTIONS: dict[str, str] = {
    "en": "Answer with the option's letter from the given choices directly.",
    "zh": "请直接回答所给选项中正确选项的字母。",
    "pt": "Responda diretamente com a letra da opção correta entre as alternativas dadas.",
    "ar": "أجب مباشرةً بحرف الخيار الصحيح من بين الخيارات المعطاة.",
    "tr": "Verilen seçenekler arasından doğru seçeneğin harfiyle doğrudan cevap verin.",
    "ru": "Ответьте сразу буквой правильного варианта из предложенных.",
}

# Codes as they appear in file names; `cn` is the benchmarks' spelling of Chinese.
_NAME_CODES = {"en": "en", "cn": "zh", "zh": "zh", "pt": "pt", "ar": "ar", "tr": "tr", "ru": "ru"}
_NAME_TOKEN = re.compile(r"(?:^|[_\-.\s])(en|cn|zh|pt|ar|tr|ru)(?=$|[_\-.\s])", re.IGNORECASE)

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_ARABIC = re.compile(r"[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")

_TURKISH_LETTERS = re.compile(r"[ğĞşŞıİöÖüÜ]")
_PORTUGUESE_LETTERS = re.compile(r"[ãõÃÕâêôÂÊÔàÀ]")
_TURKISH_WORDS = frozenset("bir ve bu hangi nedir mi mı mu mü resimde ile için olan".split())
_PORTUGUESE_WORDS = frozenset("o os as um uma de do da dos das que qual não na no é em para imagem".split())
_ENGLISH_WORDS = frozenset("the a an of is are what which in on this image to and".split())


def normalize_language(code: str) -> str:
    """Map a user- or file-supplied code (`cn`, `ZH`, `en` ...) to a canonical code.

    Raises ValueError naming the accepted codes when the code is unknown.
    """
    canonical = _NAME_CODES.get(code.strip().lower())
    if canonical is None:
        raise ValueError(f"unknown language code {code!r}; use one of {', '.join(LANGUAGES)} (or cn for zh)")
    return canonical


def language_from_name(name: str | Path) -> str | None:
    """Language named by a file or dataset name (`MMMB_cn.tsv` -> `zh`), or None if it names none.

    The last language token wins, so `model_en_MMBench_dev_ru.tsv` is Russian.
    """
    stem = Path(str(name)).name
    matches = _NAME_TOKEN.findall(stem)
    return _NAME_CODES[matches[-1].lower()] if matches else None


def language_from_text(text: str) -> str:
    """Language of `text` judged from its script, falling back to `en` for empty text."""
    counts = Counter(
        {
            "zh": len(_HAN.findall(text)),
            "ar": len(_ARABIC.findall(text)),
            "ru": len(_CYRILLIC.findall(text)),
            "latin": len(_LATIN.findall(text)),
        }
    )
    script, count = counts.most_common(1)[0]
    if count == 0 or script == "latin":
        return _latin_language(text)
    return script


def _latin_language(text: str) -> str:
    words = re.findall(r"[^\W\d_]+", text.lower())
    turkish = 3 * len(_TURKISH_LETTERS.findall(text)) + sum(w in _TURKISH_WORDS for w in words)
    portuguese = 3 * len(_PORTUGUESE_LETTERS.findall(text)) + sum(w in _PORTUGUESE_WORDS for w in words)
    english = sum(w in _ENGLISH_WORDS for w in words)
    best = max(("en", english), ("pt", portuguese), ("tr", turkish), key=lambda kv: kv[1])
    return best[0] if best[1] > 0 else "en"


def detect_language(name: str | Path | None, texts: list[str]) -> str:
    """Language of a benchmark: from its name when the name says, else from the script of `texts`."""
    if name is not None:
        from_name = language_from_name(name)
        if from_name is not None:
            return from_name
    return language_from_text("\n".join(texts))
