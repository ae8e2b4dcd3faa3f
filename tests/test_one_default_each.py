"""A default decided in two places must not differ: each is read from, or checked against, its owner."""

import dataclasses
import inspect

from llava.data.dataset import DataConfig
from llava.model.multimodal_encoder.vision_tower import VisionTower
from llava.train.arguments import TrainingArguments


def field_default(cls, name):
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def test_the_data_budget_default_is_trainings():
    assert field_default(DataConfig, "model_max_length") == field_default(TrainingArguments, "model_max_length")


def test_the_vision_layer_comes_from_the_config_only():
    assert inspect.signature(VisionTower).parameters["select_layer"].default is inspect.Parameter.empty
