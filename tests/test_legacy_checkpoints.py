"""Checkpoints written by earlier versions keep loading: `tests/fixtures/legacy_parrot_moe/` was saved by
the code at commit 8858ac3 (see its make_fixture.py), before the projector contract changed."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from llava.model import LlavaConfig, LlavaForCausalLM
from llava.model.multimodal_projector import ROUTING_METRIC, build_vision_projector
from llava.model.projector_io import load_projector_weights

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_parrot_moe"


def test_legacy_parrot_moe_checkpoint_gives_the_logits_it_was_saved_with():
    expected = load_file(FIXTURE / "expected.safetensors")
    model = LlavaForCausalLM.from_pretrained(FIXTURE / "checkpoint", dtype=torch.float32).eval()
    with torch.no_grad():
        out = model(
            input_ids=expected["input_ids"], attention_mask=expected["attention_mask"], images=expected["images"]
        )
    torch.testing.assert_close(out.logits, expected["logits"], rtol=0, atol=1e-5)
    torch.testing.assert_close(out.projector_metrics[ROUTING_METRIC], expected["routing"], rtol=0, atol=1e-6)


def test_legacy_stage1_projector_file_loads_into_parrot_moe():
    config = LlavaConfig.from_pretrained(FIXTURE / "checkpoint")
    projector = build_vision_projector(config)
    load_projector_weights(projector, str(FIXTURE / "mm_projector.bin"))
    saved = torch.load(FIXTURE / "mm_projector.bin", weights_only=True)
    state = projector.state_dict()
    assert sorted("model.mm_projector." + k for k in state) == sorted(saved)
    for key, tensor in saved.items():
        torch.testing.assert_close(state[key.removeprefix("model.mm_projector.")], tensor, rtol=0, atol=0)
