"""One set of sampling defaults: the CLI, the API and the gradio demo all start from GENERATION_DEFAULTS."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, fields

import pytest

from llava.generation_defaults import GENERATION_DEFAULTS
from llava.serve import api, cli
from llava.serve.request import SamplingParams
from playground.demo import app as demo


@pytest.mark.parametrize("module", [cli, api, demo], ids=["cli", "api", "demo"])
def test_each_entry_point_reads_the_one_defaults_object(module):
    assert module.GENERATION_DEFAULTS is GENERATION_DEFAULTS
    args = module.parse_args(["--model-path", "some/checkpoint"])
    for field in fields(GENERATION_DEFAULTS):
        assert getattr(args, field.name) == getattr(GENERATION_DEFAULTS, field.name), field.name


def test_sampling_params_without_settings_are_the_defaults():
    params = SamplingParams()
    assert (params.max_new_tokens, params.temperature, params.top_p) == (
        GENERATION_DEFAULTS.max_new_tokens, GENERATION_DEFAULTS.temperature, GENERATION_DEFAULTS.top_p)


def test_the_api_keeps_its_temperature_and_the_defaults_cannot_be_changed_in_place():
    assert GENERATION_DEFAULTS.temperature == 0.2
    with pytest.raises(FrozenInstanceError):
        GENERATION_DEFAULTS.temperature = 1.0  # type: ignore[misc]
