"""Rule-based answer extraction for multiple-choice answers in six languages, with no judge.

`extract_answer(prediction, options)` returns the chosen option letter, or None ("no answer"):
it never guesses. Rules, tried in order on the normalised text (NFKC, so full-width `（Ｂ）` reads
as `(B)`; markdown emphasis, Arabic diacritics and tatweel removed):

1. `label`: the whole answer (or its first line) is one label: `B`, `B.`, `(B)`, `**B**`, `【B】`.
2. `phrase`: an answer phrase names a label: `the answer is B`, `答案是B`, `选B`, `Cevap: B`,
   `Ответ: В`, `الإجابة: ب`, `B şıkkı`, `B选项` ...
3. `prefix`: the answer starts with a label and a separator: `B. red`, `(B) red`, `B、红色`.
4. `option-word`: a bare option noun names a label: `option B`, `选项B`, `вариант С`, `الخيار ب`.
5. `refusal`: a refusal (`I cannot tell`, `无法确定`, `не могу` ...) gives no answer.
6. `letter`: exactly one distinct label stands alone in the text. A label followed by a lower-case
   word is read as a word (`A cat`, `В изображении`, `I think`) unless that word is a verb or
   conjunction that follows labels (`B is`, `A or B`).
7. `option-text`: the answer gives an option's text rather than its letter (exactly, or as the
   one option text found in it; for yes/no options, the first yes or no word in the answer).

Labels are Latin letters, the Cyrillic look-alikes А В С Е and the Arabic labels أ ب ج د ه.
Two or more different letters where one is expected give no answer (method `multiple`).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_CYRILLIC_LOOKALIKES = {"А": "A", "В": "B", "С": "C", "Е": "E", "а": "A", "в": "B", "с": "C", "е": "E"}
_ARABIC_LABELS = {"أ": "A", "ا": "A", "إ": "A", "آ": "A", "ب": "B", "ج": "C", "د": "D", "ه": "E"}

_UPPER_LABEL = "A-Z" + "АВСЕ" + "".join(_ARABIC_LABELS)
_ANY_LABEL = _UPPER_LABEL + "a-z" + "авсе"
# Characters that make a neighbouring letter part of a word: Latin, Greek, Cyrillic, Arabic, digits.
_WORD = r"0-9A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff\u0620-\u064a\u066e-\u06d3"
_NOT_WORD_BEFORE = rf"(?<![{_WORD}])"
_NOT_WORD_AFTER = rf"(?![{_WORD}])"
_OPEN = r"[\(\[\{<«\"'「『【《]"
_CLOSE = r"[\)\]\}>»\"'」』】》]"

# Words after a label that show it is a label, not an article or preposition (`B is`, `A or B`).
_LABEL_FOLLOWERS = frozenset(
    "is was would seems appears looks because since as or and "
    "é seria parece pois porque está ou e "
    "doğru olmalı olabilir veya ve ya şıkkı seçeneği seçeneğidir şıkkıdır "
    "верно правильно правильный является потому или и".split()
)
_CONJUNCTIONS = r"(?:,|/|&|\+|and|or|ou|e|veya|ya\s+da|ve|или|и|أو|و|或|和|与|及|、)"

_STRONG_PHRASES = [
    # English
    r"(?:correct|right|final|best)?\s*answer\s*(?:is|would\s+be|should\s+be|will\s+be|:|=|-)",
    r"(?:correct|right)\s+(?:option|choice)\s*(?:is|would\s+be|:)",
    r"\bi\s*(?:would|'d|will)?\s*(?:choose|select|pick|go\s+with)",
    # Chinese
    r"(?:正确)?答案(?:应该|应|應該|應)?(?:是|为|為|選|选)?\s*[:：]?",
    r"(?:应该|应|應該|應|我)?(?:选择|選擇|选|選)(?![项項])",
    r"正确(?:的)?(?:选项|選項|答案)?(?:是|为|為)",
    # Portuguese
    r"(?:a\s+)?resposta\s*(?:correta|certa|final)?\s*(?:é|seria|:|=)",
    r"(?:alternativa|opção|letra)\s+(?:correta|certa)\s*(?:é|seria|:)",
    r"\b(?:escolho|eu\s+escolheria|escolheria)",
    # Turkish
    r"(?:doğru\s+)?(?:cevap|yanıt)(?:ım|ımız)?\s*(?:şudur|budur)?\s*(?::|=|-)?",
    r"doğru\s+(?:seçenek|şık)\s*(?::|=)?",
    # Russian
    r"(?:правильный\s+|верный\s+)?ответ(?:ом)?\s*(?:является|будет|это)?\s*(?::|—|–|-|=)?",
    r"(?:правильный|верный)\s+вариант\s*(?::|—|–|-|=)?",
    r"\bвыбираю",
    # Arabic
    r"(?:ال)?(?:إجابة|اجابة|جواب)\s*(?:ال)?(?:صحيحة|صحيح)?\s*(?:هي|هو)?\s*(?:[:=\-])?",
    r"(?:ال)?(?:خيار|اختيار)\s*(?:ال)?(?:صحيح)\s*(?:هو|هي)?\s*(?:[:=\-])?",
]
_OPTION_NOUNS = r"(?:option|choice|letter|alternativa|opção|opcao|letra|seçenek|şık|şıkkı|вариант|буква|الخيار|خيار|الحرف|选项|選項)"
_WEAK_PHRASES = [_OPTION_NOUNS]
# Phrases that follow the label: `B şıkkı`, `B选项`, `B项`, `B是正确的`.
_POSTFIX_PHRASES = [
    r"\s*(?:şıkkı|seçeneği|seçeneğidir|şıkkıdır|cevabı)",
    r"\s*(?:选项|選項|项|項)",
    r"\s*(?:是|为|為)(?:正确|正確)",
    r"\s*(?:is\s+(?:the\s+)?(?:correct|right)|é\s+a\s+(?:correta|certa)|верный|правильный)",
]

_REFUSALS = [
    r"\bi\s*(?:am|'m)?\s*(?:sorry|unable|not\s+able|not\s+sure)",
    r"\bi\s+(?:can\s*not|can't|cannot|don't\s+know|do\s+not\s+know)",
    r"\b(?:cannot|can't|impossible\s+to)\s+(?:be\s+)?(?:determine|tell|answer|identify)",
    r"\bnone\s+of\s+the\s+(?:options|choices|above)",
    r"无法|不能确定|不确定|抱歉|對不起|无从|不知道",
    r"não\s+(?:posso|consigo|é\s+possível|sei)|desculpe|nenhuma\s+das",
    r"(?:cevap\s+veremem|belirleyemiyorum|bilmiyorum|üzgünüm|emin\s+değilim|mümkün\s+değil|hiçbiri)",
    r"(?:не\s+могу|невозможно|не\s+знаю|извините|к\s+сожалению|не\s+уверен|ни\s+один)",
    r"(?:لا\s+(?:أستطيع|استطيع|يمكنني|يمكن|أعرف|اعرف)|آسف|عذرا|عذراً|لا\s+شيء)",
]
_REFUSAL_RE = re.compile("|".join(_REFUSALS), re.IGNORECASE)

_YES = frozenset("yes yeah true sim verdadeiro evet doğru да верно نعم صحيح 是 是的 对 對 正确".split())
_NO = frozenset(
    "no false não nao falso hayır hayir yanlış нет неверно لا خطأ 否 不是 不 不对 错误 錯誤".split()
)
_CJK_NEGATIONS = "不没沒非无無"


@dataclass(frozen=True)
class Extraction:
    """The extracted letter (None: no answer) and the rule that decided it."""

    letter: str | None
    method: str


def normalize_text(text: str) -> str:
    """NFKC, no markdown emphasis, no Arabic diacritics/tatweel, no bidi or zero-width marks."""
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"[\u064b-\u065f\u0670\u0640\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]", "", text)
    text = re.sub(r"\*+|__+|`+", "", text)
    return text.strip()


def label_to_letter(char: str) -> str:
    """Latin letter named by a label character (`b`, `В`, `ب` -> `B`)."""
    if char in _CYRILLIC_LOOKALIKES:
        return _CYRILLIC_LOOKALIKES[char]
    if char in _ARABIC_LABELS:
        return _ARABIC_LABELS[char]
    return char.upper()


_LABEL_RE = re.compile(rf"{_NOT_WORD_BEFORE}([{_UPPER_LABEL}]){_NOT_WORD_AFTER}")
_NEXT_WORD_RE = re.compile(r"\s+([^\W\d_]+)")
_WHOLE_LABEL_RE = re.compile(rf"^\s*{_OPEN}*\s*([{_ANY_LABEL}])\s*{_CLOSE}*[\s\.,:;!?。，：；、،؟]*$")
_LINE_LABEL_RE = re.compile(rf"^\s*{_OPEN}?\s*([{_UPPER_LABEL}])\s*(?:{_CLOSE}|[\.:：、])", re.MULTILINE)
_PREFIX_RE = re.compile(rf"^\s*{_OPEN}?\s*([{_UPPER_LABEL}])\s*(?:{_CLOSE}|[\.:：、\-–—])\s*")
_MULTIPLE_AFTER_RE = re.compile(
    rf"^\s*{_CLOSE}?\s*{_CONJUNCTIONS}\s*{_OPEN}?\s*([{_ANY_LABEL}]){_NOT_WORD_AFTER}", re.IGNORECASE
)


def _reads_as_word(text: str, end: int) -> bool:
    """True when the label ending at `end` is followed by a lower-case word that makes it a word."""
    match = _NEXT_WORD_RE.match(text, end)
    if match is None:
        return False
    word = match.group(1)
    return word[0].islower() and word.lower() not in _LABEL_FOLLOWERS


def _is_label(text: str, char: str, end: int) -> bool:
    """Whether `char` (ending at `end`) is a label: `a cat`, `A cat` and `В доме` are words."""
    if char.islower():
        return _NEXT_WORD_RE.match(text, end) is None
    return not (char.isupper() and _reads_as_word(text, end))


def _followed_by_another_label(text: str, end: int, valid: set[str]) -> bool:
    match = _MULTIPLE_AFTER_RE.match(text[end:])
    return (
        match is not None
        and label_to_letter(match.group(1)) in valid
        and _is_label(text, match.group(1), end + match.end())
    )


def _phrase_letters(text: str, phrases: list[str], valid: set[str]) -> tuple[set[str], bool]:
    """Letters named by `phrases` (label after the phrase); flag when one phrase names several."""
    letters: set[str] = set()
    several = False
    pattern = re.compile(
        rf"(?:{'|'.join(phrases)})[\s:：=\-—–]*(?:{_OPTION_NOUNS}\s*)?{_OPEN}?\s*"
        rf"{_NOT_WORD_BEFORE}([{_ANY_LABEL}]){_NOT_WORD_AFTER}",
        re.IGNORECASE,
    )
    for match in pattern.finditer(text):
        char = match.group(1)
        letter = label_to_letter(char)
        if letter not in valid or not _is_label(text, char, match.end()):
            continue
        letters.add(letter)
        several |= _followed_by_another_label(text, match.end(), valid)
    return letters, several


def _postfix_letters(text: str, valid: set[str]) -> set[str]:
    pattern = re.compile(
        rf"{_NOT_WORD_BEFORE}([{_UPPER_LABEL}])(?:{'|'.join(_POSTFIX_PHRASES)})", re.IGNORECASE
    )
    return {
        label_to_letter(m.group(1)) for m in pattern.finditer(text) if label_to_letter(m.group(1)) in valid
    }


def _decide(letters: set[str], method: str) -> Extraction | None:
    if len(letters) == 1:
        return Extraction(next(iter(letters)), method)
    if len(letters) > 1:
        return Extraction(None, "multiple")
    return None


def extract_answer(prediction: str | None, options: dict[str, str]) -> Extraction:
    """Option letter chosen by `prediction` among `options` (letter -> text), or no answer.

    Never guesses: empty text, a refusal, several letters, or nothing recognisable all give
    `Extraction(None, method)`.
    """
    text = normalize_text(prediction or "")
    if not text:
        return Extraction(None, "empty")
    valid = set(options)
    first_line = text.splitlines()[0]
    for candidate in (text, first_line):
        whole = _WHOLE_LABEL_RE.match(candidate)
        if whole:
            letter = label_to_letter(whole.group(1))
            return Extraction(letter, "label") if letter in valid else Extraction(None, "invalid-letter")
    letters, several = _phrase_letters(text, _STRONG_PHRASES, valid)
    letters |= _postfix_letters(text, valid)
    if several:
        return Extraction(None, "multiple")
    decided = _decide(letters, "phrase")
    if decided:
        return decided
    if len({label_to_letter(m.group(1)) for m in _LINE_LABEL_RE.finditer(text)} & valid) > 1:
        return Extraction(None, "multiple")  # the answer lists the options back
    prefix = _PREFIX_RE.match(text)
    if prefix and label_to_letter(prefix.group(1)) in valid and not _reads_as_word(text, prefix.end(1)):
        if _followed_by_another_label(text, prefix.end(1), valid):
            return Extraction(None, "multiple")
        return Extraction(label_to_letter(prefix.group(1)), "prefix")
    letters, several = _phrase_letters(text, _WEAK_PHRASES, valid)
    decided = Extraction(None, "multiple") if several else _decide(letters, "option-word")
    if decided:
        return decided
    if _REFUSAL_RE.search(text):
        return Extraction(None, "refusal")
    standalone = {
        label_to_letter(m.group(1))
        for m in _LABEL_RE.finditer(text)
        if _is_label(text, m.group(1), m.end()) and label_to_letter(m.group(1)) in valid
    }
    decided = _decide(standalone, "letter")
    if decided:
        return decided
    return _match_option_text(text, options)


def _canonical(text: str) -> str:
    text = normalize_text(text).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(text.split())


def _has_han(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in text)


def _occurs(needle: str, haystack: str) -> bool:
    if _has_han(needle):
        start = haystack.find(needle)
        while start != -1:
            if start == 0 or haystack[start - 1] not in _CJK_NEGATIONS:
                return True
            start = haystack.find(needle, start + 1)
        return False
    return re.search(rf"{_NOT_WORD_BEFORE}{re.escape(needle)}{_NOT_WORD_AFTER}", haystack) is not None


def _polarity(word: str) -> str | None:
    return "yes" if word in _YES else "no" if word in _NO else None


def _match_yes_no(answer: str, texts: dict[str, str]) -> Extraction | None:
    polarity_of = {letter: _polarity(text) for letter, text in texts.items()}
    if sorted(p or "" for p in polarity_of.values()) != ["no", "yes"]:
        return None
    tokens = re.findall(rf"[{_WORD}]+|[\u3400-\u9fff]+", answer)
    for token in tokens:
        polarity = _polarity(token)
        if polarity is None and _has_han(token):
            polarity = (
                "no"
                if any(ch in _CJK_NEGATIONS for ch in token)
                else "yes"
                if any(ch in "是对對" for ch in token)
                else None
            )
        if polarity is not None:
            return Extraction(next(k for k, v in polarity_of.items() if v == polarity), "option-text")
    return None


def _match_option_text(text: str, options: dict[str, str]) -> Extraction:
    answer = _canonical(text)
    texts = {letter: _canonical(option) for letter, option in options.items() if _canonical(option)}
    exact = {letter for letter, option in texts.items() if option == answer}
    if len(exact) == 1:
        return Extraction(exact.pop(), "option-text")
    yes_no = _match_yes_no(answer, texts)
    if yes_no:
        return yes_no
    found = {letter for letter, option in texts.items() if _occurs(option, answer)}
    # An option whose text lies inside another found option's text is not a separate mention.
    found = {a for a in found if not any(b != a and texts[a] in texts[b] for b in found)}
    return _decide(found, "option-text") or Extraction(None, "none")
