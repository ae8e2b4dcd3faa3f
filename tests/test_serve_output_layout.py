"""`column_major_output_weight`: the output layer's weight is re-stored transposed on the CPU (same
values, same Parameter, ties kept) and the logits stay those of the row-major weight up to rounding."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llava.serve.output_layout import column_major_output_weight


def tiny_llama(tied: bool) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("tied", [True, False])
def test_the_weight_is_stored_transposed_with_the_same_values_and_logits(tied):
    model = tiny_llama(tied)
    ids = torch.tensor([[5, 17, 99, 3], [8, 8, 400, 1]])
    head = model.get_output_embeddings()
    before, values = model(input_ids=ids).logits, head.weight.detach().clone()
    param = head.weight
    assert not param.t().is_contiguous()

    assert column_major_output_weight(model)

    assert head.weight is param and param.t().is_contiguous() and param.shape == values.shape
    assert torch.equal(param, values)
    assert (model.get_input_embeddings().weight is param) == tied
    torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=1e-5, atol=1e-5)
    assert column_major_output_weight(model)  # a second call keeps the layout


def test_other_dtypes_are_left_alone():
    model = tiny_llama(tied=False).to(torch.bfloat16)
    assert not column_major_output_weight(model)
    assert model.get_output_embeddings().weight.is_contiguous()
