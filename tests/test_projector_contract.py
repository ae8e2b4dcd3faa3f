"""The projector contract, exercised by a plugin that is neither built-in nor parrot_moe: a projector
that pools the patch grid 2x2 (so one image costs a quarter of the patches), reports a per-image
metric and an aux loss, has its own flag and its own trainer callback. Everything in the core that
counts visual tokens, adds losses, logs metrics or controls stages must go through the contract."""

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import build_tiny_llava
from PIL import Image
from training_helpers import common_flags

from llava.constants import IMAGE_TOKEN_INDEX
from llava.conversation import get_conv_template
from llava.data.dataset import DataConfig, LazySupervisedDataset
from llava.model.multimodal_projector import (
    Projector,
    ProjectorOutput,
    build_vision_projector,
    get_projector_spec,
    register_projector,
)
from llava.serve.engine import ChatEngine
from llava.serve.inputs import BadInputError
from llava.train.projector_metrics import ProjectorMetricsCallback
from llava.train.train import train


@dataclass
class PoolingFlags:
    pooling_aux_weight: float = field(default=0.5, metadata={"help": "weight of the test aux loss"})


class PoolingProjector(Projector):
    """2x2 average pooling of the patch grid, then a Linear; reports each image's mean activation."""

    reported_metrics = ("mean_activation",)
    stages: list = []

    def __init__(self, config):
        super().__init__()
        self.aux_weight = float(getattr(config, "pooling_aux_weight", 0.5))
        self.proj = nn.Linear(config.mm_hidden_size, config.hidden_size)

    def num_output_tokens(self, num_patches: int) -> int:
        return num_patches // 4

    def set_training_stage(self, stage: int, config: object) -> None:
        PoolingProjector.stages.append(stage)

    def forward(self, image_features, text_embeds=None, text_mask=None) -> ProjectorOutput:
        images, patches, width = image_features.shape
        side = int(patches**0.5)
        grid = image_features.transpose(1, 2).reshape(images, width, side, side)
        pooled = F.avg_pool2d(grid, 2).flatten(2).transpose(1, 2)
        tokens = self.proj(pooled)
        metric = tokens.detach().mean(dim=(1, 2))
        return ProjectorOutput(tokens, self.aux_weight * tokens.square().mean(), {"mean_activation": metric})


class RecordingMetrics(ProjectorMetricsCallback):
    instances: list = []

    def __init__(self):
        self.seen: list[tuple[list, list]] = []
        self.logged = 0
        RecordingMetrics.instances.append(self)

    def on_projector_metrics(self, metrics, langs):
        self.seen.append((metrics["mean_activation"].tolist(), list(langs)))

    def pop_logs(self):
        images = sum(len(langs) for _, langs in self.seen[self.logged :])
        self.logged = len(self.seen)
        return {"pooling/images": float(images)}


register_projector("test_pooling", PoolingProjector, arguments=PoolingFlags, callbacks=lambda: [RecordingMetrics()])


def test_a_factory_that_does_not_return_a_projector_is_refused():
    register_projector("test_not_a_projector", lambda config: nn.Linear(2, 2), overwrite=True)
    with pytest.raises(TypeError, match="must subclass llava.model.multimodal_projector.Projector"):
        build_vision_projector(SimpleNamespace(mm_projector_type="test_not_a_projector", mm_hidden_size=2, hidden_size=2))


def test_registering_another_factory_under_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_projector("test_pooling", lambda config: PoolingProjector(config))


def test_the_model_asks_the_projector_how_many_positions_an_image_takes(tiny_assets):
    model, tokenizer, processor = build_tiny_llava(tiny_assets, mm_projector_type="test_pooling")
    assert model.vision_tower.num_patches == 16 and model.num_image_tokens == 4
    ids = torch.tensor([[5, IMAGE_TOKEN_INDEX, 6, 7]])
    with torch.no_grad():
        out = model(input_ids=ids, images=torch.randn(1, 3, 32, 32))
    assert out.logits.shape[1] == 3 + 4
    assert out.projector_metrics["mean_activation"].shape == (1,)


def test_aux_loss_is_added_to_the_lm_loss_and_reported(tiny_assets):
    model, _, _ = build_tiny_llava(tiny_assets, mm_projector_type="test_pooling")
    ids = torch.tensor([[5, IMAGE_TOKEN_INDEX, 6, 7]])
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        with_aux = model(input_ids=ids, images=images, labels=ids.clamp(min=0))
        model.mm_projector.aux_weight = 0.0
        without = model(input_ids=ids, images=images, labels=ids.clamp(min=0))
    assert with_aux.aux_loss is not None and with_aux.aux_loss > 0
    torch.testing.assert_close(with_aux.loss - without.loss, with_aux.aux_loss)


def test_dataset_budget_counts_the_projectors_tokens_not_the_patches(tiny_assets, tiny_data):
    model, tokenizer, processor = build_tiny_llava(tiny_assets, mm_projector_type="test_pooling")
    template = get_conv_template("qwen_2")

    def first_item(num_image_tokens: int, max_length: int) -> int:
        config = DataConfig(template, str(tiny_data["images"]), processor, model_max_length=max_length,
                            num_image_tokens=num_image_tokens)
        return len(LazySupervisedDataset(str(tiny_data["instructions"]), tokenizer, config)[0]["input_ids"])

    full = first_item(model.num_image_tokens, 4096)
    # Room for the whole text plus 4 pooled tokens, not for 16 patches: only the pooled count fits.
    fits = full - 1 + model.num_image_tokens
    assert first_item(model.num_image_tokens, fits) == full
    assert first_item(16, fits) < full


def test_serving_context_check_counts_the_projectors_tokens(tiny_assets):
    model, tokenizer, processor = build_tiny_llava(tiny_assets, mm_projector_type="test_pooling")
    probe = ChatEngine(tokenizer, model.eval(), processor, context_len=10_000, name="pooling")
    image = Image.new("RGB", (32, 32), "red")
    prompt_tokens = probe.prepare("Hi", image=image).prompt_tokens
    text_tokens = probe.prepare("Hi").prompt_tokens
    assert prompt_tokens - text_tokens == 4 + 1  # 4 visual tokens, plus the newline after <image>
    tight = ChatEngine(tokenizer, model.eval(), processor, context_len=prompt_tokens + 1, name="pooling")
    assert tight.prepare("Hi", image=image).room_for_answer == 1
    with pytest.raises(BadInputError, match="4 of them for the image"):
        ChatEngine(tokenizer, model.eval(), processor, context_len=prompt_tokens, name="pooling").prepare(
            "Hi", image=image
        )


def test_training_parses_plugin_flags_calls_the_stage_hook_and_feeds_its_callback(tiny_assets, tiny_data, tmp_path):
    flags = common_flags(tiny_assets, tiny_data, tmp_path, stage=1)
    at = flags.index("--mm_projector_type")
    flags[at + 1] = "test_pooling"
    PoolingProjector.stages.clear()
    RecordingMetrics.instances.clear()
    trainer = train(flags + ["--pooling_aux_weight", "0.25"])
    assert trainer.model.config.pooling_aux_weight == 0.25 and trainer.model.mm_projector.aux_weight == 0.25
    assert PoolingProjector.stages == [1]
    [callback] = RecordingMetrics.instances
    assert [langs for _, langs in callback.seen] == [[None] * 4] * 2  # captions carry no `lang`
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and all(entry["pooling/images"] == 4.0 for entry in logs)  # batch of 4 images a step
    assert all("aux_loss" in entry and entry["aux_loss"] > 0 for entry in logs)
    assert get_projector_spec("test_pooling").arguments is PoolingFlags
