"""Labels are built from the same pieces as the inputs: the supervised tokens decode to exactly
the assistant turns plus their end tokens, for every template and both real tokenizers."""

import pytest
from transformers import AutoTokenizer

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.conversation import conv_templates, get_conv_template
from llava.data.preprocess import BadSample, conversation_pieces, tokenize_pieces

TURNS = [
    {"from": "human", "value": "<image>\nWhat colour is the shape?"},
    {"from": "gpt", "value": "It is red."},
    {"from": "human", "value": "这个形状是什么？"},
    {"from": "gpt", "value": "一个圆形。"},
    {"from": "human", "value": "Şeklin rengi nedir?"},
    {"from": "gpt", "value": "Kırmızı, ваша фигура — круг."},
]
ANSWERS = [t["value"] for t in TURNS if t["from"] == "gpt"]


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def tokenizer(request, tiny_assets):
    return AutoTokenizer.from_pretrained(tiny_assets[request.param])


def supervised_spans(labels):
    spans, current = [], []
    for label in labels:
        if label == IGNORE_INDEX:
            if current:
                spans.append(current)
            current = []
        else:
            current.append(label)
    return spans + ([current] if current else [])


@pytest.mark.parametrize("name", sorted(set(conv_templates) - {"plain"}))
def test_supervised_tokens_decode_to_exactly_the_answers(name, tokenizer):
    template = get_conv_template(name)
    sample = tokenize_pieces(conversation_pieces(TURNS, template), tokenizer)
    spans = [tokenizer.decode(span) for span in supervised_spans(sample.labels)]
    expected = [f"{a}{template.stop_str}" for a in ANSWERS]
    # vicuna's answer piece begins with the space the model writes after "ASSISTANT:"
    assert [s.lstrip(" ") for s in spans] == expected
    assert len(sample.input_ids) == len(sample.labels)
    assert sample.input_ids.count(IMAGE_TOKEN_INDEX) == 1


def test_plain_template_supervises_only_the_caption(tokenizer):
    turns = [{"from": "human", "value": "<image>\nignored prompt"}, {"from": "gpt", "value": "A red circle."}]
    sample = tokenize_pieces(conversation_pieces(turns, get_conv_template("plain")), tokenizer)
    assert [tokenizer.decode(s) for s in supervised_spans(sample.labels)] == ["A red circle.\n"]
    assert IMAGE_TOKEN_INDEX in sample.input_ids
    assert "ignored" not in tokenizer.decode([i for i in sample.input_ids if i >= 0])


def test_inputs_are_the_concatenated_prompt(tokenizer):
    """Training inputs equal the inference prompt plus the answer (no hidden re-tokenization)."""
    template = get_conv_template("chatml")
    sample = tokenize_pieces(conversation_pieces(TURNS[:2], template), tokenizer)
    text = tokenizer.decode([i for i in sample.input_ids if i >= 0])
    assert text.endswith("<|im_start|>assistant\nIt is red.<|im_end|>\n")


def test_image_sentinel_is_never_a_label(tokenizer):
    sample = tokenize_pieces(conversation_pieces(TURNS, get_conv_template("qwen_2")), tokenizer)
    at_image = [lab for i, lab in zip(sample.input_ids, sample.labels) if i == IMAGE_TOKEN_INDEX]
    assert at_image == [IGNORE_INDEX]


def test_truncation_can_remove_all_supervision(tokenizer):
    sample = tokenize_pieces(conversation_pieces(TURNS, get_conv_template("qwen_2")), tokenizer, max_length=5)
    assert sample.num_supervised == 0


@pytest.mark.parametrize(
    "turns, reason",
    [
        ([{"from": "human", "value": "hi"}], "no 'gpt' turn"),
        ([{"from": "robot", "value": "hi"}, {"from": "gpt", "value": "x"}], "unknown 'from'"),
        ([{"from": "human"}, {"from": "gpt", "value": "x"}], "no string 'value'"),
    ],
)
def test_malformed_turns_are_rejected_with_a_reason(turns, reason):
    with pytest.raises(BadSample, match=reason):
        conversation_pieces(turns, get_conv_template("v1"))


def test_unknown_template_names_the_flag():
    with pytest.raises(ValueError, match="--version"):
        get_conv_template("nope")
