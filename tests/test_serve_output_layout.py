"""`OutputProjection`: inside `installed()` the output layer reads a column-major copy of its weight
(CPU, float32); the logits stay those of the model's own weight up to rounding, the copy follows
changes of the weight, gradients take the usual path, and the model itself is left as it was."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llava.serve.output_layout import OutputProjection

IDS = torch.tensor([[5, 17, 99, 3], [8, 8, 400, 1]])


def tiny_llama(tied: bool = True) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied)
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("tied", [True, False])
def test_logits_through_the_copy_match_and_the_model_is_unchanged(tied, tmp_path):
    model = tiny_llama(tied)
    head = model.get_output_embeddings()
    with torch.no_grad():
        before = model(input_ids=IDS).logits
    projection = OutputProjection.for_llm(model)
    assert projection is OutputProjection.for_llm(model)  # one per head, shared by every engine
    with torch.no_grad(), projection.installed():
        assert "forward" in vars(head)
        after = model(input_ids=IDS).logits
    assert projection.weight().t().is_contiguous() and torch.equal(projection.weight(), head.weight)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert "forward" not in vars(head) and head.weight.is_contiguous()
    assert (model.get_input_embeddings().weight is head.weight) == tied
    model.save_pretrained(tmp_path)  # the model's own weight was never re-stored


def test_the_copy_follows_an_in_place_update_of_the_weight():
    model = tiny_llama()
    projection = OutputProjection.for_llm(model)
    with torch.no_grad(), projection.installed():
        model(input_ids=IDS)
        model.get_output_embeddings().weight.mul_(2.0)
        changed = model(input_ids=IDS).logits
        reference = torch.nn.functional.linear(model.model(input_ids=IDS).last_hidden_state, model.lm_head.weight)
    torch.testing.assert_close(changed, reference, rtol=1e-5, atol=1e-5)


def test_with_gradients_the_head_takes_its_usual_path():
    model = tiny_llama()
    with OutputProjection.for_llm(model).installed():
        model(input_ids=IDS).logits.sum().backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0


def test_other_dtypes_and_scaled_logits_get_no_projection():
    assert OutputProjection.for_llm(tiny_llama().to(torch.bfloat16)) is None
    capped = tiny_llama()
    capped.config.final_logit_softcapping = 30.0
    assert OutputProjection.for_llm(capped) is None
