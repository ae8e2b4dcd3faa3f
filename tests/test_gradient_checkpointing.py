"""Gradient checkpointing with the multimodal model: gradients still reach what trains.

The pitfall: under reentrant checkpointing a decoder layer whose inputs do not require grad (a
frozen LLM's text embeddings, e.g. LoRA on a text-only batch) passes no gradient back, which is why
upstream LLaVA patches `inputs_embeds.requires_grad`. train.py defaults to non-reentrant
checkpointing, which has no such requirement; these tests pin that gradients arrive.
"""

from types import SimpleNamespace

import torch
from conftest import build_tiny_llava
from distributed_utils import train_flags
from transformers import TrainerCallback

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from llava.model.projector_io import read_projector_file
from llava.train.lora import apply_lora
from llava.train.model_setup import configure_trainable
from llava.train.train import train

NON_REENTRANT = {"use_reentrant": False}


def stage_args(stage: int):
    model_args = SimpleNamespace(tune_mm_mlp_adapter=stage == 1, freeze_backbone=False, unfreeze_mm_vision_tower=False)
    training_args = SimpleNamespace(
        freeze_mm_mlp_adapter=False, lora_r=4, lora_alpha=8, lora_dropout=0.0, lora_bias="none", bits=16,
        gradient_checkpointing=True,
    )
    return model_args, training_args


def count_calls(layer: torch.nn.Module) -> dict[str, int]:
    """Forward calls of each submodule of `layer` (they run inside the checkpointed forward)."""
    calls = dict.fromkeys((name for name, _ in layer.named_children()), 0)
    for name, module in layer.named_children():
        module.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    return calls


def multimodal_batch(tokenizer, image_size: int) -> dict:
    text = tokenizer("Describe the picture. A red square.", return_tensors="pt").input_ids[0]
    input_ids = torch.cat([torch.tensor([IMAGE_TOKEN_INDEX]), text])[None].repeat(2, 1)
    labels = input_ids.clone()
    labels[:, :4] = IGNORE_INDEX
    torch.manual_seed(0)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": torch.ones_like(input_ids),
            "images": torch.randn(2, 3, image_size, image_size)}


def test_stage1_projector_gets_gradients_through_checkpointed_frozen_llm(tiny_assets):
    model, tokenizer, _ = build_tiny_llava(tiny_assets, llm="llama")
    configure_trainable(model, *stage_args(1))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=NON_REENTRANT)
    model.train()
    layer_calls = count_calls(model.language_model.model.layers[0])
    loss = model(**multimodal_batch(tokenizer, model.vision_tower.config.image_size)).loss
    assert max(layer_calls.values()) == 1
    loss.backward()
    assert max(layer_calls.values()) == 2  # recomputed in backward: checkpointing is really on
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.mm_projector.parameters())
    assert all(p.grad is None for p in model.language_model.parameters())
    assert all(p.grad is None for p in model.vision_tower.parameters())


def test_lora_adapters_get_gradients_on_text_only_batches_with_checkpointing(tiny_assets):
    model, tokenizer, _ = build_tiny_llava(tiny_assets, llm="llama")
    model_args, training_args = stage_args(2)
    configure_trainable(model, model_args, training_args)
    model = apply_lora(model, training_args)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=NON_REENTRANT)
    model.train()
    ids = tokenizer("Say hello. Hello!", return_tensors="pt").input_ids
    assert not model.get_input_embeddings().weight.requires_grad
    model(input_ids=ids, labels=ids).loss.backward()
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    lora_a = [p for n, p in model.named_parameters() if "lora_A" in n]
    # lora_B starts at zero, so lora_A's gradient is zero on the first step; lora_B's is not.
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    assert all(p.grad is not None for p in lora_a)


def test_training_with_gradient_checkpointing_updates_the_stage1_projector(tiny_assets, tiny_data, tmp_path):
    initial = {}

    class RecordInitialProjector(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            initial.update({k: v.clone() for k, v in model.mm_projector.state_dict().items()})

    flags = train_flags(tiny_assets, tiny_data, tmp_path, stage=1, llm="llama",
                        extra=["--gradient_checkpointing", "True", "--max_steps", "1", "--save_strategy", "no"])
    trainer = train(flags, callbacks=[RecordInitialProjector()])
    assert trainer.args.gradient_checkpointing_kwargs == NON_REENTRANT
    assert trainer.model.language_model.is_gradient_checkpointing
    trained = read_projector_file(str(tmp_path / "mm_projector.bin"))
    assert all(not torch.equal(trained[k], initial[k]) for k in initial)
