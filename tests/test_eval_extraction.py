"""Answer extraction without a judge: each case is (prediction, options, expected letter or None)."""

import pytest

from llava.eval.extraction import extract_answer, normalize_text

ABCD = {"A": "red", "B": "blue", "C": "green", "D": "yellow"}
ZH = {"A": "红色", "B": "蓝色", "C": "绿色", "D": "黄色"}
PT = {"A": "vermelho", "B": "azul", "C": "verde", "D": "amarelo"}
AR = {"A": "أحمر", "B": "أزرق", "C": "أخضر", "D": "أصفر"}
TR = {"A": "kırmızı", "B": "mavi", "C": "yeşil", "D": "sarı"}
RU = {"A": "красный", "B": "синий", "C": "зелёный", "D": "жёлтый"}
YES_NO = {
    "en": {"A": "Yes", "B": "No"},
    "zh": {"A": "是", "B": "否"},
    "pt": {"A": "Sim", "B": "Não"},
    "ar": {"A": "نعم", "B": "لا"},
    "tr": {"A": "Evet", "B": "Hayır"},
    "ru": {"A": "Да", "B": "Нет"},
}

CASES = [
    # English and language-neutral label forms
    ("B", ABCD, "B"),
    ("B.", ABCD, "B"),
    ("(B)", ABCD, "B"),
    ("**B**", ABCD, "B"),
    ("b", ABCD, "B"),
    ("[C]", ABCD, "C"),
    ("B. blue", ABCD, "B"),
    ("(D) yellow", ABCD, "D"),
    ("C) green, because the leaves are green.", ABCD, "C"),
    ("The answer is B.", ABCD, "B"),
    ("Answer: D", ABCD, "D"),
    ("The correct answer is option C.", ABCD, "C"),
    ("I would choose A.", ABCD, "A"),
    ("Option B", ABCD, "B"),
    ("A cat is sitting on the mat, so the answer is C.", ABCD, "C"),
    ("B is correct.", ABCD, "B"),
    ("blue", ABCD, "B"),
    ("The car in the picture is yellow.", ABCD, "D"),
    ("A or B", ABCD, None),
    ("A, C", ABCD, None),
    ("The answer is A or B.", ABCD, None),
    ("A. red\nB. blue\nC. green\nD. yellow", ABCD, None),
    ("I'm sorry, I cannot determine the colour from this image.", ABCD, None),
    ("", ABCD, None),
    ("E", ABCD, None),
    ("A cat sits on a mat.", ABCD, None),
    ("The answer is a dog.", ABCD, None),
    ("It could be red or blue.", ABCD, None),
    # Chinese
    ("答案是B", ZH, "B"),
    ("答案：C", ZH, "C"),
    ("选B", ZH, "B"),
    ("我选D。", ZH, "D"),
    ("正确答案是A", ZH, "A"),
    ("（Ｂ）", ZH, "B"),
    ("Ｂ", ZH, "B"),
    ("Ｃ．绿色", ZH, "C"),
    ("B选项", ZH, "B"),
    ("选项C是正确的。", ZH, "C"),
    ("蓝色", ZH, "B"),
    ("图中的汽车是黄色的。", ZH, "D"),
    ("答案是A或B", ZH, None),
    ("无法确定", ZH, None),
    ("【A】", ZH, "A"),
    # Portuguese
    ("A resposta é B.", PT, "B"),
    ("Resposta: C", PT, "C"),
    ("Alternativa D", PT, "D"),
    ("A alternativa correta é A.", PT, "A"),
    ("azul", PT, "B"),
    ("O carro é amarelo.", PT, "D"),
    ("A ou C", PT, None),
    ("Desculpe, não consigo ver a imagem.", PT, None),
    ("Letra C", PT, "C"),
    # Turkish
    ("Cevap: B", TR, "B"),
    ("Doğru cevap C'dir.", TR, "C"),
    ("B şıkkı", TR, "B"),
    ("D seçeneği doğru.", TR, "D"),
    ("mavi", TR, "B"),
    ("Resimdeki araba sarı.", TR, "D"),
    ("A veya B", TR, None),
    ("Üzgünüm, bunu belirleyemiyorum.", TR, None),
    # Russian (Cyrillic look-alike labels А В С)
    ("Ответ: B", RU, "B"),
    ("Ответ: В", RU, "B"),
    ("С", RU, "C"),
    ("А.", RU, "A"),
    ("(В) синий", RU, "B"),
    ("Правильный ответ — С.", RU, "C"),
    ("Вариант D", RU, "D"),
    ("синий", RU, "B"),
    ("В изображении машина жёлтая.", RU, None),
    ("В изображении машина жёлтый.", RU, "D"),
    ("А или В", RU, None),
    ("Извините, я не могу определить цвет.", RU, None),
    # Arabic (labels أ ب ج د and Arabic answer phrases)
    ("ب", AR, "B"),
    ("(ج)", AR, "C"),
    ("الإجابة: ب", AR, "B"),
    ("الإجابة الصحيحة هي (د)", AR, "D"),
    ("الجواب هو أ", AR, "A"),
    ("الخيار ج", AR, "C"),
    ("الإجابة: C", AR, "C"),
    ("أزرق", AR, "B"),
    ("السيارة في الصورة لونها أصفر.", AR, "D"),
    ("أ أو ب", AR, None),
    ("عذراً، لا أستطيع تحديد اللون.", AR, None),
]

# MMMB-style yes/no items answered in words rather than letters.
YES_NO_CASES = [
    ("Yes, there is a cat.", YES_NO["en"], "A"),
    ("There is no dog in the picture.", YES_NO["en"], "B"),
    ("是的", YES_NO["zh"], "A"),
    ("不是", YES_NO["zh"], "B"),
    ("Não, não há.", YES_NO["pt"], "B"),
    ("لا", YES_NO["ar"], "B"),
    ("Evet", YES_NO["tr"], "A"),
    ("Нет", YES_NO["ru"], "B"),
]


@pytest.mark.parametrize(("prediction", "options", "expected"), CASES + YES_NO_CASES)
def test_extracts_expected_letter(prediction, options, expected):
    assert extract_answer(prediction, options).letter == expected


def test_refusal_gives_no_answer_even_with_one_letter_in_the_text():
    result = extract_answer("Sorry, I cannot tell if it is B from this picture.", ABCD)
    assert (result.letter, result.method) == (None, "refusal")


def test_letter_outside_the_options_is_no_answer_not_a_guess():
    assert extract_answer("F", ABCD).letter is None


def test_normalization_reads_full_width_markdown_and_arabic_tatweel():
    assert normalize_text("**（Ｂ）**") == "(B)"
    assert normalize_text("هـ") == "ه"


def test_method_names_the_rule_that_decided():
    assert extract_answer("答案是B", ZH).method == "phrase"
    assert extract_answer("蓝色", ZH).method == "option-text"
    assert extract_answer("A or B", ABCD).method == "multiple"


def test_case_table_covers_six_languages_with_at_least_sixty_cases():
    option_sets = {id(options) for _, options, _ in CASES}
    assert len(CASES) >= 60
    assert option_sets == {id(ABCD), id(ZH), id(PT), id(AR), id(TR), id(RU)}
